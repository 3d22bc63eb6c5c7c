"""The adaptive tier controller: keeps the detector on the best tier that holds the target FPS.

Pure logic: no threads, no I/O, time comes in as arguments (or from the injected clock).

What "FPS" means here. A tier analyses one frame in `frame_skip`; each analysed frame stands for
`frame_skip` source frames. The controller compares the *covered* rate,

    effective_fps = processed frames per second x frame_skip,

with the target (the camera's `target_fps`; for one detector shared by several cameras, the sum
of their targets and the sum of their processed frames). A tier that analyses 5 frames/s with
frame_skip 2 holds a 10 FPS target.

Inputs, once a second or so: the cumulative count of processed frames and the cumulative seconds
spent in detection (`busy_s`). Their changes over the last `window_s` give the processed rate and
the current capacity (frames per busy second). Capacity matters because a paced source caps the
processed rate at the target: only the capacity shows how much headroom there is. The ratio of
the current tier's capacity to its start-up measurement is the load factor (1.0 = as measured,
0.5 = something now takes half the device); the other tiers' predictions are scaled by it.

Rules (the `policy` section of the config, read through the `PolicyRules` protocol):
- down: effective FPS under target x (1 - margin) for `down_after_s` → the best worse tier
  predicted (at the current load) to hold the target, so one step covers a large load change;
- up: the next better tier predicted to hold target x headroom for `up_after_s` → one step up;
- a step down within `up_grace_s` of a step up marks that step up as failed: the controller
  returns to the tier it came from, and the failed tier is not tried again for a back-off that
  starts at 2 x up_after_s and doubles per failure up to `backoff_max_s`; a step up that holds
  for `up_grace_s` clears its back-off;
- a camera whose source is down (no frames) is not overload: the caller passes the target of the
  cameras that deliver frames (`active_target_fps`), and the step-down compares with that; with
  every source down there is nothing to measure and no step down;
- temperature at or over `temperature_c`, or memory use at or over `memory_percent`, steps down
  one tier (again every `down_after_s` while it lasts) and blocks step-ups until it is 5 °C / 5
  points under its threshold.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from edge.core.tiers import Tier

Clock = Callable[[], float]


class PolicyRules(Protocol):
    """The rule settings the controller reads (edge.config.PolicyConfig has them); a protocol so
    that core does not depend on the config schema (pydantic) above it."""

    @property
    def margin(self) -> float: ...
    @property
    def headroom(self) -> float: ...
    @property
    def window_s(self) -> float: ...
    @property
    def down_after_s(self) -> float: ...
    @property
    def up_after_s(self) -> float: ...
    @property
    def up_grace_s(self) -> float: ...
    @property
    def backoff_max_s(self) -> float: ...
    @property
    def temperature_c(self) -> float: ...
    @property
    def memory_percent(self) -> float: ...


THERMAL_HYSTERESIS_C = 5.0
MEMORY_HYSTERESIS_PERCENT = 5.0


@dataclass(frozen=True)
class TierChange:
    """One decision of the controller, for the log and telemetry."""

    time: float
    from_tier: Optional[Tier]  # None for the start
    to_tier: Tier
    kind: str  # "start", "down", "up", "temperature", "memory"
    reason: str

    def to_dict(self) -> Dict[str, object]:
        return {
            "time": self.time,
            "from": self.from_tier.name if self.from_tier else None,
            "from_index": self.from_tier.index if self.from_tier else None,
            "to": self.to_tier.name,
            "to_index": self.to_tier.index,
            "kind": self.kind,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        origin = self.from_tier.name if self.from_tier else "-"
        return f"tier {self.kind}: {origin} -> {self.to_tier.name} ({self.reason})"


@dataclass(frozen=True)
class ControllerStatus:
    """The controller's view now, for telemetry."""

    tier: Tier
    level: int  # position in the runnable tiers, 0 = best
    effective_fps: Optional[float]
    capacity_fps: Optional[float]  # processed frames per busy second, current tier
    load_factor: Optional[float]  # current capacity / measured capacity
    target_fps: float


@dataclass(frozen=True)
class _Sample:
    time: float
    frames: int
    busy_s: Optional[float]


@dataclass(frozen=True)
class _StepUp:
    time: float
    level: int  # the level stepped up to


class AdaptiveController:
    """Steps through `tiers` (runnable, best first) to hold `target_fps`.

    `predicted_fps[i]` is tier i's measured capacity in processed frames per second (without
    frame-skip), from `edge.device.tiers.predict_capacities`.
    """

    def __init__(
        self,
        tiers: Sequence[Tier],
        predicted_fps: Sequence[float],
        target_fps: float,
        config: PolicyRules,
        clock: Clock,
    ) -> None:
        if not tiers:
            raise ValueError("no runnable tiers")
        if len(predicted_fps) != len(tiers):
            raise ValueError("one prediction per tier expected")
        self.tiers = list(tiers)
        self.predicted_fps = [max(float(fps), 1e-9) for fps in predicted_fps]
        self.target_fps = float(target_fps)
        self.config = config
        self.clock = clock
        self.level = self._start_level()
        self.history: List[TierChange] = []
        self._samples: List[_Sample] = []
        self._under_since: Optional[float] = None
        self._headroom_since: Optional[float] = None
        self._last_forced: Optional[float] = None
        self._last_up: Optional[_StepUp] = None
        self._backoff_s: Dict[int, float] = {}
        self._blocked_until: Dict[int, float] = {}
        self._status: Optional[ControllerStatus] = None
        self.start_change = self._record(
            TierChange(clock(), None, self.tier, "start", self._start_reason()),
        )

    @property
    def tier(self) -> Tier:
        return self.tiers[self.level]

    def _effective_capacity(self, level: int, load: float = 1.0) -> float:
        return self.predicted_fps[level] * load * self.tiers[level].frame_skip

    def _start_level(self) -> int:
        """The best tier predicted to hold the target with the step-up's headroom (starting is a
        step up from nothing: the capacities are measured without tracking and the other
        cameras' readers, so a tier that only just fits drops frames); else the best predicted
        to hold the target; else the cheapest."""
        for needed in (self.target_fps * self.config.headroom, self.target_fps):
            for level in range(len(self.tiers)):
                if self._effective_capacity(level) >= needed:
                    return level
        return len(self.tiers) - 1

    def _start_reason(self) -> str:
        predicted = self._effective_capacity(self.level)
        with_headroom = self.target_fps * self.config.headroom
        if predicted >= with_headroom:
            return (
                f"best tier predicted to hold the target with headroom: {predicted:.1f} >= "
                f"{self.target_fps:.1f} x {self.config.headroom:g} fps"
            )
        if predicted >= self.target_fps:
            return f"best tier predicted to hold the target: {predicted:.1f} >= {self.target_fps:.1f} fps"
        return f"no tier predicted to hold {self.target_fps:.1f} fps; cheapest tier predicts {predicted:.1f}"

    def backoff_s(self, level: int) -> float:
        """The current back-off of step-ups to `level` (0 when none failed)."""
        return self._backoff_s.get(level, 0.0)

    def blocked_until(self, level: int) -> float:
        return self._blocked_until.get(level, float("-inf"))

    def status(self) -> ControllerStatus:
        if self._status is None:
            return ControllerStatus(self.tier, self.level, None, None, None, self.target_fps)
        return self._status

    def update(
        self,
        frames_done: int,
        busy_s: Optional[float] = None,
        temperature_c: Optional[float] = None,
        memory_percent: Optional[float] = None,
        now: Optional[float] = None,
        active_target_fps: Optional[float] = None,
    ) -> Optional[TierChange]:
        """Feed the cumulative processed-frame count and detection seconds; returns the change
        to apply, if any. Call about once a second. `active_target_fps`: the summed target of the
        cameras whose sources deliver frames (None: all of them)."""
        now = self.clock() if now is None else now
        self._add_sample(_Sample(now, frames_done, busy_s))
        effective, capacity = self._measure()
        load = capacity / self.predicted_fps[self.level] if capacity is not None else None
        self._status = ControllerStatus(self.tier, self.level, effective, capacity, load, self.target_fps)
        self._clear_backoff_after_grace(now)

        forced = self._forced_step(now, temperature_c, memory_percent)
        if forced is not None:
            return forced
        target = self.target_fps if active_target_fps is None else min(active_target_fps, self.target_fps)
        if target <= 0:
            self._under_since = None  # every source is down: nothing to measure
            return None
        if effective is None:
            return None
        down = self._step_down_if_under(now, effective, load, target)
        if down is not None:
            return down
        return self._step_up_if_headroom(now, load, temperature_c, memory_percent)

    def _add_sample(self, sample: _Sample) -> None:
        self._samples.append(sample)
        horizon = sample.time - self.config.window_s
        while len(self._samples) > 2 and self._samples[1].time <= horizon:
            self._samples.pop(0)

    def _measure(self) -> Tuple[Optional[float], Optional[float]]:
        """(effective fps, capacity in processed frames per busy second) over the window."""
        first, last = self._samples[0], self._samples[-1]
        span = last.time - first.time
        if span < min(1.0, self.config.window_s):
            return None, None
        frames = last.frames - first.frames
        effective = frames / span * self.tier.frame_skip
        capacity = None
        if first.busy_s is not None and last.busy_s is not None and last.busy_s > first.busy_s and frames > 0:
            capacity = frames / (last.busy_s - first.busy_s)
        return effective, capacity

    def _clear_backoff_after_grace(self, now: float) -> None:
        if self._last_up is not None and now - self._last_up.time >= self.config.up_grace_s:
            self._backoff_s.pop(self._last_up.level, None)
            self._blocked_until.pop(self._last_up.level, None)
            self._last_up = None

    def _forced_step(
        self, now: float, temperature_c: Optional[float], memory_percent: Optional[float]
    ) -> Optional[TierChange]:
        if temperature_c is not None and temperature_c >= self.config.temperature_c:
            kind, reason = (
                "temperature",
                f"temperature {temperature_c:.1f} C >= {self.config.temperature_c:.1f} C",
            )
        elif memory_percent is not None and memory_percent >= self.config.memory_percent:
            kind, reason = "memory", f"memory {memory_percent:.0f}% >= {self.config.memory_percent:.0f}%"
        else:
            return None
        if self.level == len(self.tiers) - 1:
            return None
        if self._last_forced is not None and now - self._last_forced < self.config.down_after_s:
            return None
        self._last_forced = now
        return self._change(now, self.level + 1, kind, reason)

    def _step_down_if_under(
        self, now: float, effective: float, load: Optional[float], target: float
    ) -> Optional[TierChange]:
        threshold = target * (1 - self.config.margin)
        if effective >= threshold:
            self._under_since = None
            return None
        if self._under_since is None:
            self._under_since = now
        under_for = now - self._under_since
        if under_for < self.config.down_after_s or self.level == len(self.tiers) - 1:
            return None
        observed_load = load if load is not None else effective / self._effective_capacity(self.level)
        target_level = len(self.tiers) - 1
        for level in range(self.level + 1, len(self.tiers)):
            if self._effective_capacity(level, observed_load) >= self.target_fps:
                target_level = level
                break
        if self._note_failed_step_up(now):
            # The tier stepped up to was mispredicted, so the load factor measured on it is
            # wrong too: go back to the tier that was holding the target.
            target_level = self.level + 1
        reason = (
            f"{effective:.1f} fps < {threshold:.1f} for {under_for:.1f} s (load factor {observed_load:.2f})"
        )
        return self._change(now, target_level, "down", reason)

    def _note_failed_step_up(self, now: float) -> bool:
        """Back off step-ups to the current tier when it fails within the grace period."""
        if self._last_up is None or now - self._last_up.time >= self.config.up_grace_s:
            return False
        level = self._last_up.level
        backoff = min(self.config.backoff_max_s, max(2 * self.config.up_after_s, 2 * self.backoff_s(level)))
        self._backoff_s[level] = backoff
        self._blocked_until[level] = now + backoff
        self._last_up = None
        return True

    def _step_up_if_headroom(
        self,
        now: float,
        load: Optional[float],
        temperature_c: Optional[float],
        memory_percent: Optional[float],
    ) -> Optional[TierChange]:
        hot = temperature_c is not None and temperature_c >= self.config.temperature_c - THERMAL_HYSTERESIS_C
        full = (
            memory_percent is not None
            and memory_percent >= self.config.memory_percent - MEMORY_HYSTERESIS_PERCENT
        )
        if self.level == 0 or load is None or hot or full:
            self._headroom_since = None
            return None
        better = self.level - 1
        predicted = self._effective_capacity(better, load)
        needed = self.target_fps * self.config.headroom
        if predicted < needed:
            self._headroom_since = None
            return None
        if self._headroom_since is None:
            self._headroom_since = now
        if now - self._headroom_since < self.config.up_after_s or now < self.blocked_until(better):
            return None
        name = self.tiers[better].name
        reason = f"{name} predicted {predicted:.1f} fps >= {needed:.1f} (load factor {load:.2f})"
        change = self._change(now, better, "up", reason)
        self._last_up = _StepUp(now, better)
        return change

    def _change(self, now: float, level: int, kind: str, reason: str) -> TierChange:
        change = TierChange(now, self.tier, self.tiers[level], kind, reason)
        self.level = level
        # Measurements of the old tier say nothing about the new one: start a new window.
        self._samples = self._samples[-1:]
        self._under_since = None
        self._headroom_since = None
        return self._record(change)

    def _record(self, change: TierChange) -> TierChange:
        self.history.append(change)
        return change
