"""Live state per camera: daily totals, reset at local midnight, never rewritten by an old window."""

from datetime import datetime, timedelta, timezone

import pytest
from zoneinfo import ZoneInfo

from contract.state import (
    CameraState,
    DeviceState,
    LineTotals,
    StateError,
    StateTopics,
    build_camera_state,
    build_device_state,
    parse_camera_state,
    parse_device_state,
    state_subscriptions,
)
from edge.core.analytics import CountsWindow, LineCounts, ObjectCounts, ZoneCounts
from edge.delivery.live_state import CameraLiveState, local_midnight

PLUS2 = timezone(timedelta(hours=2))
# 2026-03-10 23:59:30 at UTC+2
LATE_EVENING = datetime(2026, 3, 10, 23, 59, 30, tzinfo=PLUS2).timestamp()


def window(start: float, door_in: int = 0, door_out: int = 0, entered: int = 0, dwell=None, length=10.0):
    return CountsWindow(
        window=(start, start + length),
        frames=100,
        objects={"person": ObjectCounts(1, 2, 1.0, 3)},
        lines={"door": LineCounts(door_in, door_out)},
        zones={"queue": ZoneCounts(1, 2, 0.5, entered, dwell)},
    )


def live(tz=PLUS2, heartbeat_s=10.0) -> CameraLiveState:
    return CameraLiveState("edge-t", "cam1", ["person"], ["door"], ["queue"], heartbeat_s=heartbeat_s, tz=tz)


def test_totals_accumulate_and_an_old_or_repeated_window_never_rewrites_them():
    state = live()
    t0 = LATE_EVENING - 3600
    assert state.fold_window(window(t0, 2, 1), t0 + 10)
    assert state.fold_window(window(t0 + 10, 3, 0, entered=2, dwell=4.5), t0 + 20)
    # a replayed copy of the first window and a duplicate of the second: ignored
    assert not state.fold_window(window(t0, 50, 50), t0 + 21)
    assert not state.fold_window(window(t0 + 10, 50, 50), t0 + 22)
    current = state.current(t0 + 25)
    assert current.lines == {"door": LineTotals(5, 1)}
    assert current.window == t0 + 20
    assert current.zones["queue"].dwell_mean_s == 4.5
    assert current.last_window is not None and current.last_window.window == (t0 + 10, t0 + 20)
    assert current.last_window.lines["door"] == LineTotals(3, 0)
    assert current.last_window.zone_entries == {"queue": 2}


def test_totals_reset_at_local_midnight_and_last_reset_says_when():
    state = live()
    state.fold_window(window(LATE_EVENING - 30, 4, 2), LATE_EVENING)
    before = state.current(LATE_EVENING)
    assert before.last_reset == "2026-03-10T00:00:00+02:00"
    assert before.lines["door"] == LineTotals(4, 2)
    # a window from yesterday that arrives late (after midnight) is newer but not today's
    after_midnight = LATE_EVENING + 60
    assert state.fold_window(window(LATE_EVENING - 20, 7, 7, length=20.0), after_midnight)
    today = state.current(after_midnight)
    assert today.last_reset == "2026-03-11T00:00:00+02:00"
    assert today.lines["door"] == LineTotals(0, 0)
    assert state.fold_window(window(LATE_EVENING + 40, 1, 0), after_midnight + 1)  # 00:00:10
    assert state.current(after_midnight + 2).lines["door"] == LineTotals(1, 0)


def test_a_tick_after_midnight_resets_without_a_window_and_a_backward_step_does_not_undo_it():
    state = live()
    state.fold_window(window(LATE_EVENING - 30, 4, 2), LATE_EVENING)
    assert state.current(LATE_EVENING + 31).lines["door"] == LineTotals(0, 0)
    # the wall clock steps back 10 minutes, into yesterday: the day stays today
    stepped = state.current(LATE_EVENING - 600)
    assert stepped.last_reset == "2026-03-11T00:00:00+02:00"
    assert stepped.lines["door"] == LineTotals(0, 0)


def test_midnight_follows_daylight_saving_time():
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29: clocks go from 02:00 to 03:00 (UTC+1 -> UTC+2)
    noon = datetime(2026, 3, 29, 12, 0, tzinfo=berlin).timestamp()
    assert local_midnight(noon, berlin).isoformat() == "2026-03-29T00:00:00+01:00"
    next_day = datetime(2026, 3, 30, 0, 0, 1, tzinfo=berlin).timestamp()
    assert local_midnight(next_day, berlin).isoformat() == "2026-03-30T00:00:00+02:00"
    assert local_midnight(noon).tzinfo is not None  # system local time zone when none is given


def test_due_publishes_changes_once_and_a_heartbeat_when_nothing_changes():
    state = live(heartbeat_s=10.0)
    t = LATE_EVENING - 3600
    first = state.due(t)
    assert first is not None and first.occupancy == {"person": 0}
    assert state.due(t + 1) is None
    state.observe({"person": 3, "bicycle": 9}, {"queue": 2}, fps=9.876, tier="ssd-300")
    changed = state.due(t + 2)
    assert changed is not None
    assert changed.occupancy == {"person": 3}
    assert changed.zones["queue"].now == 2 and changed.zones["queue"].occupied
    assert changed.fps == 9.88 and changed.tier == "ssd-300"
    assert state.due(t + 5) is None
    state.observe({"person": 3}, {"queue": 2}, fps=9.5, tier="ssd-300")
    assert state.due(t + 6) is None  # fps alone wavers: it rides along with the next publication
    heartbeat = state.due(t + 12)
    assert heartbeat is not None and heartbeat.fps == 9.5
    # a clock stepped back far does not stall the heartbeat
    assert state.due(t - 600) is not None


def test_restore_continues_todays_totals_only_for_the_same_camera_and_day():
    before = live()
    before.fold_window(window(LATE_EVENING - 3630, 6, 3), LATE_EVENING - 3600)
    retained = parse_camera_state(build_camera_state(before.current(LATE_EVENING - 3600)))

    after = live()
    assert after.restore(retained, LATE_EVENING - 3000)
    assert after.current(LATE_EVENING - 3000).lines["door"] == LineTotals(6, 3)
    # the retained window is not counted again
    assert not after.fold_window(window(LATE_EVENING - 3630, 6, 3), LATE_EVENING - 2990)

    tomorrow = live()
    assert not tomorrow.restore(retained, LATE_EVENING + 3600)
    assert tomorrow.current(LATE_EVENING + 3600).lines["door"] == LineTotals(0, 0)
    other = CameraLiveState("edge-t", "cam2", ["person"], ["door"], ["queue"], heartbeat_s=10.0, tz=PLUS2)
    assert not other.restore(retained, LATE_EVENING - 3000)


def test_state_payloads_round_trip_and_bad_ones_name_the_field():
    state = live()
    state.fold_window(window(LATE_EVENING - 30, 1, 2, entered=1, dwell=None), LATE_EVENING)
    current = state.current(LATE_EVENING)
    assert parse_camera_state(build_camera_state(current)) == current
    empty = live().current(LATE_EVENING)
    assert empty.last_window is None and parse_camera_state(build_camera_state(empty)) == empty
    device = DeviceState("edge-t", LATE_EVENING, spool_depth=12, temperature_c=None, cameras=["cam1"])
    assert parse_device_state(build_device_state(device)) == device

    with pytest.raises(StateError, match=r"state\.lines\.door\.in: expected an integer"):
        parse_camera_state(build_camera_state(current).replace(b'"in":1', b'"in":-1', 1))
    with pytest.raises(StateError, match="unsupported state version"):
        parse_camera_state(b'{"v": 2}')
    with pytest.raises(StateError, match="not UTF-8 JSON"):
        parse_camera_state(b"\xff")

    topics = StateTopics("va", "edge-t")
    assert topics.camera_state("cam1") == "va/edge-t/cam1/state"
    assert topics.device_state == "va/edge-t/state"
    assert state_subscriptions("va") == ["va/+/state", "va/+/+/state"]
    assert isinstance(current, CameraState)


def test_nothing_is_published_while_the_previous_runs_state_may_still_arrive():
    # A state of zeros published first would replace the retained totals and look like a reset.
    t0 = LATE_EVENING - 3600
    waiting = live()
    waiting.hold(t0 + 5)
    assert waiting.due(t0 + 1) is None
    previous = live()
    previous.fold_window(window(t0 - 100, 4, 2), t0 - 90)
    assert waiting.restore(previous.current(t0 - 90), t0 + 2)
    continued = waiting.due(t0 + 2)
    assert continued is not None and continued.lines["door"] == LineTotals(4, 2)
    # No retained state on the broker: publishing starts when the hold expires.
    first_run = live()
    first_run.hold(t0 + 5)
    assert first_run.due(t0 + 4.9) is None
    state = first_run.due(t0 + 5)
    assert state is not None and state.lines["door"] == LineTotals(0, 0)
