"""The retained live state of one camera (`contract.state.CameraState`), built from closed counts
windows and the current occupancy. Pure: no I/O, no threads; every time is passed in.

Rules:
- **Never rewritten by an old window.** A window whose end is not after the newest one folded in
  is ignored (`fold_window` returns False), so a replay, a duplicate or a late window can never
  move the published state backwards. Only a wall-clock step (`clock_stepped`) lets the next
  window in whatever its stamp.
- **Daily totals.** `lines` are the crossings of every window that *started* on the current local
  day. The day starts at local midnight (`last_reset`, ISO 8601 with its UTC offset, computed in
  `tz`, the system's local time zone by default, so DST changes are followed). The first window or
  tick at or after the next midnight sets the totals back to 0 and moves `last_reset`; a window that
  started before `last_reset` (late, from yesterday) is not added to today's totals. A wall clock
  stepped backwards never undoes a reset: the day only moves forward.
- **Publish when it matters.** `due(now)` returns a state when its content changed since the last
  one returned (fps alone, which wavers every second, does not count), or when `heartbeat_s` has
  passed (so subscribers' `expire_after` never fires while the device runs); the heartbeat compares
  |now - last| so a clock step cannot stall it.
- **Restarts.** `restore(previous)` continues today's totals from the state the broker retained
  (same camera, same `last_reset`), so a daemon restart does not set them back to 0 mid-day.
  Until that retained state has been seen (or `hold(until)` expires, when the broker had none),
  `due` publishes nothing: a state of zeros published first would replace the retained totals
  and look like a reset to Home Assistant's `total_increasing` sensors.
"""

from dataclasses import replace
from datetime import datetime, time, tzinfo
from typing import Dict, Mapping, Optional, Sequence

from contract.state import CameraState, LastWindow, LineTotals, ZoneState
from edge.core.analytics import CountsWindow


def local_midnight(t: float, tz: Optional[tzinfo] = None) -> datetime:
    """The local midnight (aware datetime) that starts the day holding UNIX time `t`, in `tz` or,
    when None, in the system's local time zone."""
    local = datetime.fromtimestamp(t, tz) if tz is not None else datetime.fromtimestamp(t)
    midnight = datetime.combine(local.date(), time())
    # A naive datetime's astimezone() reads it as system local time, with that day's UTC offset.
    return midnight.replace(tzinfo=tz) if tz is not None else midnight.astimezone()


class CameraLiveState:
    """Live state of one camera; see the module docstring for its rules."""

    def __init__(
        self,
        device: str,
        camera: str,
        classes: Sequence[str],
        lines: Sequence[str],
        zones: Sequence[str],
        heartbeat_s: float,
        tz: Optional[tzinfo] = None,
    ) -> None:
        if heartbeat_s <= 0:
            raise ValueError("heartbeat_s must be positive")
        self.device = device
        self.camera = camera
        self.heartbeat_s = heartbeat_s
        self.tz = tz
        self._occupancy: Dict[str, int] = {name: 0 for name in classes}
        self._zones_now: Dict[str, int] = {name: 0 for name in zones}
        self._dwell: Dict[str, Optional[float]] = {name: None for name in zones}
        self._totals: Dict[str, LineTotals] = {name: LineTotals(0, 0) for name in lines}
        self._window_end = 0.0
        self._reset: Optional[datetime] = None
        self._last_window: Optional[LastWindow] = None
        self._fps = 0.0
        self._tier = ""
        self._published: Optional[CameraState] = None
        self._hold_until: Optional[float] = None

    # --- feeding ---

    def hold(self, until: float) -> None:
        """Publish nothing before `until` unless `restore` is called first (the retained state
        of the previous run is on its way)."""
        self._hold_until = until

    def restore(self, previous: CameraState, now: float) -> bool:
        """Continue from a previously published state when it is this camera's and of today.
        Returns whether it was taken; either way the hold ends. Lines no longer configured are
        dropped, new ones start at 0."""
        self._hold_until = None
        self._roll_day(now)
        assert self._reset is not None
        if (previous.device, previous.camera) != (self.device, self.camera):
            return False
        if previous.last_reset != self._reset.isoformat() or previous.window <= self._window_end:
            return False
        for name in self._totals:
            if name in previous.lines:
                self._totals[name] = previous.lines[name]
        self._window_end = previous.window
        return True

    def fold_window(self, window: CountsWindow, now: float) -> bool:
        """Fold one closed counts window in; False (and nothing changes) when it is not newer than
        the newest one already folded in."""
        start, end = window.window
        if end <= self._window_end:
            return False
        self._roll_day(max(now, start))
        assert self._reset is not None
        if start >= self._reset.timestamp():
            for name, counts in window.lines.items():
                if name in self._totals:
                    before = self._totals[name]
                    self._totals[name] = LineTotals(
                        before.count_in + counts.count_in, before.count_out + counts.count_out
                    )
        for name, zone in window.zones.items():
            if name in self._dwell:
                self._dwell[name] = zone.dwell_mean_s
        self._window_end = end
        self._last_window = LastWindow(
            window=(start, end),
            frames=window.frames,
            lines={name: LineTotals(c.count_in, c.count_out) for name, c in window.lines.items()},
            zone_entries={name: z.entered for name, z in window.zones.items()},
        )
        return True

    def clock_stepped(self) -> None:
        """The wall clock that stamps windows stepped: the next window is the newest even when it
        is stamped earlier than the last one (a backward step); today's totals stay."""
        self._window_end = 0.0

    def observe(self, occupancy: Mapping[str, int], zones_now: Mapping[str, int], fps: float, tier: str) -> None:
        """The present: people per class and per zone on the newest processed frame, the camera's
        measured fps and its tier. Names that are not configured are ignored."""
        for name, n in occupancy.items():
            if name in self._occupancy:
                self._occupancy[name] = int(n)
        for name, n in zones_now.items():
            if name in self._zones_now:
                self._zones_now[name] = int(n)
        self._fps = float(fps)
        self._tier = tier

    # --- reading ---

    def current(self, now: float) -> CameraState:
        """The state as of `now` (rolls the day over first)."""
        self._roll_day(now)
        assert self._reset is not None
        return CameraState(
            device=self.device,
            camera=self.camera,
            ts=now,
            window=self._window_end,
            last_reset=self._reset.isoformat(),
            occupancy=dict(self._occupancy),
            lines=dict(self._totals),
            zones={name: ZoneState(self._zones_now[name], self._dwell[name]) for name in self._zones_now},
            fps=round(self._fps, 2),
            tier=self._tier,
            last_window=self._last_window,
        )

    def due(self, now: float) -> Optional[CameraState]:
        """The state to publish now, or None while held, or when nothing changed and the
        heartbeat is not due."""
        if self._hold_until is not None:
            if now < self._hold_until:
                return None
            self._hold_until = None
        state = self.current(now)
        last = self._published
        unchanged = last is not None and replace(last, ts=now, fps=state.fps) == state
        if last is not None and unchanged and abs(now - last.ts) < self.heartbeat_s:
            return None
        self._published = state
        return state

    def _roll_day(self, t: float) -> None:
        midnight = local_midnight(t, self.tz)
        if self._reset is None:
            self._reset = midnight
        elif midnight.timestamp() > self._reset.timestamp():
            self._reset = midnight
            self._totals = {name: LineTotals(0, 0) for name in self._totals}
