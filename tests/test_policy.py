"""The adaptive controller on a simulated clock and a latency model (benchmarks/policy_sim.py)."""

import pytest

from benchmarks.policy_sim import CPU_TIERS, SimClock, simulate, step_load
from edge.config import PolicyConfig, TierConfig
from edge.core.policy import AdaptiveController
from edge.device.tiers import tier_from_config

SSD = "ssdlite-mobilenetv2-pedestrian"
TIERS = [tier_from_config(index, tier) for index, tier in enumerate(CPU_TIERS)]


def controller(predicted, target=10.0, policy=None, clock=None):
    return AdaptiveController(
        TIERS[: len(predicted)], predicted, target, policy or PolicyConfig(), clock or SimClock()
    )


def test_starts_at_the_best_tier_predicted_to_hold_the_target():
    assert controller([14.0, 14.0, 19.0, 33.0]).level == 0
    # 300/skip1 predicts 8 < 10; 300/skip2 covers 16.
    started = controller([8.0, 8.0, 19.0, 33.0])
    assert started.level == 1
    assert started.start_change.kind == "start" and started.history == [started.start_change]
    # Nothing reaches the target: the cheapest tier.
    assert controller([1.0, 1.0, 1.0, 1.0]).level == 3


def test_a_tier_that_only_just_holds_the_target_is_passed_over_at_start():
    # 300/skip1 predicts 11: it holds 10 but not 10 x 1.2 headroom; 300/skip2 covers 22.
    started = controller([11.0, 11.0, 19.0, 33.0])
    assert started.level == 1 and "headroom" in started.start_change.reason
    # No tier has the headroom: the best that holds the target, as before.
    assert controller([10.5, 5.2, 2.0, 2.0]).level == 0
    assert controller([11.0, 11.0], policy=PolicyConfig(headroom=1.0)).level == 0


def test_effective_fps_counts_frame_skip():
    clock = SimClock()
    ctl = controller([8.0, 8.0, 19.0, 33.0], clock=clock)
    assert ctl.tier.frame_skip == 2
    frames = 0
    for second in range(1, 6):
        clock.now = float(second)
        frames += 5  # 5 analysed frames/s x skip 2 = 10 covered
        assert ctl.update(frames, busy_s=frames / 8.0) is None
    assert ctl.status().effective_fps == pytest.approx(10.0)
    assert ctl.status().load_factor == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_converges_within_5_s_of_a_load_step_that_halves_capacity(seed):
    result = simulate(120.0, step_load(30.0, 200.0), noise=0.2, seed=seed)
    first = result.changes_after(30.0)[0]
    assert first.kind == "down" and first.time - 30.0 <= 5.0
    # The tier it went to holds the target: no further step down while the load lasts.
    assert [change.kind for change in result.changes_after(30.0)] == ["down"]
    after = [p.effective_fps for p in result.trace if p.time > first.time + 3.0]
    assert min(after) >= 0.9 * 10.0 * 0.8  # within the ±20 % noise of the target


@pytest.mark.parametrize("seed", range(5))
def test_returns_to_the_best_tier_within_60_s_after_the_load_goes_away(seed):
    result = simulate(240.0, step_load(30.0, 120.0), noise=0.2, seed=seed)
    back = [change for change in result.changes_after(120.0) if change.to_tier.index == 0]
    assert back and back[0].kind == "up" and back[0].time - 120.0 <= 60.0
    assert result.trace[-1].level == 0


@pytest.mark.parametrize("seed", range(8))
def test_at_most_one_step_per_up_after_s_on_a_noisy_signal(seed):
    policy = PolicyConfig()

    # Capacity sitting near the boundary of the best tier, loads coming and going, ±20 % noise.
    def load(t: float) -> float:
        return 0.6 if (t // 90) % 2 else 0.95

    result = simulate(900.0, load, noise=0.2, seed=seed, policy=policy)
    times = [change.time for change in result.changes if change.kind != "start"]
    assert times, "the scenario must make the controller move"
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap >= policy.up_after_s for gap in gaps), gaps


def test_failed_step_ups_back_off_exponentially():
    # The best tier is predicted 30 fps but really does 7: every step up to it fails.
    policy = PolicyConfig(backoff_max_s=300.0)
    result = simulate(
        1500.0,
        lambda t: 1.0,
        true_capacities=(7.0, 14.0, 19.0, 33.0),
        predicted_capacities=(30.0, 14.0, 19.0, 33.0),
        policy=policy,
    )
    ups = [change.time for change in result.changes if change.kind == "up" and change.to_tier.index == 0]
    downs = [change.time for change in result.changes if change.kind == "down"]
    assert len(ups) >= 4 and len(downs) >= len(ups)
    gaps = [b - a for a, b in zip(ups, ups[1:])]
    # Each failure doubles the wait (40, 80, 160, then capped at 300), plus the few seconds it
    # takes to see the failure.
    for gap, backoff in zip(gaps, (40.0, 80.0, 160.0, 300.0, 300.0)):
        assert backoff <= gap <= backoff + 10.0, gaps


def test_backoff_doubles_and_is_capped_and_cleared_by_a_step_up_that_holds():
    clock = SimClock()
    policy = PolicyConfig(backoff_max_s=100.0, up_after_s=10.0, up_grace_s=15.0)
    ctl = controller([30.0, 14.0], policy=policy, clock=clock)
    frames = 0.0
    seen = []

    def run(seconds: int, capacity_of_best: float) -> None:
        nonlocal frames
        for _ in range(seconds):
            clock.now += 1.0
            capacity = capacity_of_best if ctl.level == 0 else 14.0
            processed = min(10.0 / ctl.tier.frame_skip, capacity)
            frames += processed
            busy_total[0] += processed / capacity
            change = ctl.update(int(frames), busy_total[0])
            if change is not None and change.kind == "down":
                seen.append(ctl.backoff_s(0))

    busy_total = [0.0]
    run(400, capacity_of_best=7.0)
    assert seen[0] == 0.0  # the first step down is from the start tier, not a failed step up
    assert seen[1:5] == [20.0, 40.0, 80.0, 100.0]
    # The best tier becomes fast: the next step up holds and clears the back-off.
    run(300, capacity_of_best=30.0)
    assert ctl.level == 0 and ctl.backoff_s(0) == 0.0


def _feed(ctl, clock, seconds, capacity, temperature=None, memory=None, state=None):
    state = state if state is not None else {"frames": 0.0, "busy": 0.0}
    changes = []
    for _ in range(seconds):
        clock.now += 1.0
        processed = min(10.0 / ctl.tier.frame_skip, capacity[ctl.level])
        state["frames"] += processed
        state["busy"] += processed / capacity[ctl.level]
        change = ctl.update(
            int(state["frames"]), state["busy"], temperature_c=temperature, memory_percent=memory
        )
        if change is not None:
            changes.append(change)
    return changes


def test_temperature_steps_down_and_blocks_step_ups_until_it_cools():
    clock = SimClock()
    capacity = [14.0, 14.0, 19.0, 33.0]
    ctl = controller(capacity, clock=clock)
    state = {"frames": 0.0, "busy": 0.0}
    _feed(ctl, clock, 5, capacity, state=state)
    hot = _feed(ctl, clock, 3, capacity, temperature=90.0, state=state)
    assert [c.kind for c in hot] == ["temperature", "temperature"]  # again after down_after_s
    assert "90.0 C >= 85.0 C" in hot[0].reason
    assert ctl.level == 2
    # Under the threshold but inside the hysteresis: no step up, however much headroom.
    assert _feed(ctl, clock, 60, capacity, temperature=82.0, state=state) == []
    cooled = _feed(ctl, clock, 60, capacity, temperature=60.0, state=state)
    assert [c.kind for c in cooled] == ["up", "up"] and ctl.level == 0


def test_memory_pressure_steps_down():
    clock = SimClock()
    capacity = [14.0, 14.0, 19.0, 33.0]
    ctl = controller(capacity, clock=clock)
    changes = _feed(ctl, clock, 2, capacity, memory=95.0)
    assert [c.kind for c in changes] == ["memory"] and "95% >= 90%" in changes[0].reason
    assert changes[0].to_dict()["from_index"] == 0 and changes[0].to_dict()["to_index"] == 1


def test_no_step_down_below_the_cheapest_tier():
    clock = SimClock()
    capacity = [1.0, 1.0]
    ctl = controller(capacity, clock=clock)
    assert ctl.level == 1
    assert _feed(ctl, clock, 30, capacity, temperature=99.0) == []


def test_one_tier_table_and_bad_arguments():
    with pytest.raises(ValueError):
        AdaptiveController([], [], 10.0, PolicyConfig(), SimClock())
    with pytest.raises(ValueError):
        AdaptiveController(TIERS[:2], [1.0], 10.0, PolicyConfig(), SimClock())
    single = [tier_from_config(0, TierConfig(model=SSD, input=300))]
    ctl = AdaptiveController(single, [5.0], 10.0, PolicyConfig(), SimClock())
    assert ctl.level == 0 and "no tier predicted" in ctl.start_change.reason
