"""A camera without frames is "source down": detected from the pipeline's counters, and never read
as overload by the tier policy (fake clocks)."""

from benchmarks.policy_sim import SimClock
from contract.state import DeviceState, build_device_state, parse_device_state
from edge.runtime.pipeline import CameraStats
from edge.runtime.source_health import SourceWatch
from tests.test_policy import TIERS, controller


def stats(camera: str, processed: int, connected: bool = True) -> CameraStats:
    return CameraStats(camera, processed, 0, 0, 0, connected, 5.0, 5.0)


def test_a_camera_without_new_frames_is_down_and_comes_back():
    clock = SimClock()
    watch = SourceWatch(clock, down_after_s=5.0)
    for second in range(5):
        clock.now = float(second)
        assert watch.update([stats("a", 10 * second), stats("b", 0)]) == []
    clock.now = 5.0
    assert watch.update([stats("a", 50), stats("b", 0)]) == ["b"]
    clock.now = 6.0
    assert watch.update([stats("a", 60), stats("b", 3)]) == []


def test_a_disconnected_source_is_down_at_once():
    watch = SourceWatch(SimClock(), down_after_s=5.0)
    assert watch.update([stats("a", 0, connected=False)]) == ["a"]


def test_a_dead_camera_never_steps_the_tier_down():
    """Two cameras of 5 fps each; one dies. Without the active target the controller would see
    5 of 10 fps and step down within `down_after_s`; with it, the remaining camera holds its 5."""
    clock = SimClock()
    ctl = controller([30.0, 14.0], target=10.0, clock=clock)
    assert ctl.level == 0
    frames = 0
    for _ in range(60):
        clock.now += 1.0
        frames += 5  # only the live camera's frames
        change = ctl.update(frames, busy_s=frames / 30.0, active_target_fps=5.0)
        assert change is None
    assert ctl.tier == TIERS[0]


def test_with_every_source_down_there_is_no_step_down():
    clock = SimClock()
    ctl = controller([30.0, 14.0], target=10.0, clock=clock)
    for _ in range(60):
        clock.now += 1.0
        assert ctl.update(0, busy_s=0.0, active_target_fps=0.0) is None


def test_the_same_starvation_without_the_active_target_is_overload():
    """The control case: the policy itself still steps down on a real shortfall."""
    clock = SimClock()
    ctl = controller([30.0, 14.0], target=10.0, clock=clock)
    frames, changes = 0, []
    for _ in range(60):
        clock.now += 1.0
        frames += 5
        change = ctl.update(frames, busy_s=frames / 30.0)
        if change is not None:
            changes.append(change)
    assert changes and changes[0].kind == "down"


def test_device_state_carries_the_cameras_down():
    payload = build_device_state(DeviceState("dev", 1.0, 0, None, ["a", "b"], sources_down=["b"]))
    assert parse_device_state(payload).sources_down == ["b"]
