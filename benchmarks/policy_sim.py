"""Simulated load test of the adaptive controller (edge/policy.py) on a latency model.

The model: each tier has a capacity in processed frames per second at load factor 1; a load
factor scales it (0.5 = another process takes half the device); every tick the capacity gets
seeded uniform noise (±noise). The source is paced: at most target / frame_skip frames per
second arrive, so a tier with spare capacity processes exactly that many. The controller sees
only the cumulative processed frames and busy seconds, as the pipeline would give it.

Run: .venv/bin/python benchmarks/policy_sim.py  → benchmarks/results/policy_sim.{json,png,md}
The tests (tests/test_policy.py) use `simulate` from here, so the plot shows what they assert.
"""

import argparse
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from edge.config import PolicyConfig, TierConfig
from edge.core.policy import AdaptiveController, TierChange
from edge.device.tiers import tier_from_config

RESULTS = Path(__file__).resolve().parent / "results"

# The default CPU tiers, with capacities in the ratio measured for the SSD model's input sizes
# (cost grows with input area): 300 → 14, 256 → 19, 192 → 33 frames/s at load factor 1.
SSD = "ssdlite-mobilenetv2-pedestrian"
CPU_TIERS = (
    TierConfig(model=SSD, input=300, frame_skip=1),
    TierConfig(model=SSD, input=300, frame_skip=2),
    TierConfig(model=SSD, input=256, frame_skip=2),
    TierConfig(model=SSD, input=192, frame_skip=3),
)
CPU_CAPACITIES = (14.0, 14.0, 19.0, 33.0)


@dataclass(frozen=True)
class TracePoint:
    time: float
    effective_fps: float  # processed fps x frame_skip over the last second
    level: int
    load_factor: float


@dataclass
class SimulationResult:
    trace: List[TracePoint]
    changes: List[TierChange]
    config: dict = field(default_factory=dict)

    def changes_after(self, start: float) -> List[TierChange]:
        return [change for change in self.changes if change.time > start and change.kind != "start"]


class SimClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(
    duration_s: float,
    load: Callable[[float], float],
    target_fps: float = 10.0,
    tiers: Sequence[TierConfig] = CPU_TIERS,
    true_capacities: Sequence[float] = CPU_CAPACITIES,
    predicted_capacities: Optional[Sequence[float]] = None,
    noise: float = 0.0,
    seed: int = 0,
    policy: Optional[PolicyConfig] = None,
    tick_s: float = 0.1,
    update_every_s: float = 1.0,
    temperature: Callable[[float], Optional[float]] = lambda t: None,
) -> SimulationResult:
    """Run the controller against the latency model for `duration_s` simulated seconds."""
    policy = policy or PolicyConfig()
    rng = random.Random(seed)
    clock = SimClock()
    runnable = [tier_from_config(index, tier) for index, tier in enumerate(tiers)]
    predicted = list(predicted_capacities or true_capacities)
    controller = AdaptiveController(runnable, predicted, target_fps, policy, clock)
    frames = 0.0
    busy = 0.0
    second_frames = 0.0
    next_update = update_every_s
    trace: List[TracePoint] = []
    steps = int(round(duration_s / tick_s))
    for step in range(1, steps + 1):
        clock.now = step * tick_s
        level = controller.level
        tier = controller.tier
        capacity = true_capacities[level] * load(clock.now) * (1 + rng.uniform(-noise, noise))
        arriving = target_fps / tier.frame_skip * tick_s
        processed = min(arriving, capacity * tick_s)
        frames += processed
        busy += processed / capacity
        second_frames += processed
        if clock.now + 1e-9 >= next_update:
            trace.append(
                TracePoint(
                    clock.now, second_frames / update_every_s * tier.frame_skip, level, load(clock.now)
                )
            )
            second_frames = 0.0
            controller.update(int(frames), busy, temperature_c=temperature(clock.now))
            next_update += update_every_s
    return SimulationResult(trace, controller.history, {"policy": policy.model_dump(exclude={"tiers"})})


def step_load(on_at: float, off_at: float, factor: float = 0.5) -> Callable[[float], float]:
    return lambda t: factor if on_at <= t < off_at else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "policy_sim")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    load_on, load_off, duration = 60.0, 180.0, 300.0
    result = simulate(duration, step_load(load_on, load_off), noise=0.2, seed=args.seed)
    down = next(change for change in result.changes_after(load_on))
    up_back = next(change for change in result.changes_after(load_off) if change.to_tier.index == 0)
    summary = {
        "scenario": f"target 10 fps, default CPU tiers, load factor 0.5 from {load_on:.0f} s "
        f"to {load_off:.0f} s, ±20 % capacity noise",
        "step_down_after_load_s": round(down.time - load_on, 1),
        "back_to_best_after_unload_s": round(up_back.time - load_off, 1),
        "changes": [change.to_dict() for change in result.changes],
        "trace": [asdict(point) for point in result.trace],
        **result.config,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    lines = [
        "# Adaptive policy, simulated load step",
        "",
        f"Scenario: {summary['scenario']}. Command: `.venv/bin/python benchmarks/policy_sim.py`.",
        "",
        "| event | seconds |",
        "|---|---|",
        f"| step down after the load starts | {summary['step_down_after_load_s']} |",
        f"| back at the best tier after the load stops | {summary['back_to_best_after_unload_s']} |",
        "",
        "| time s | change | reason |",
        "|---|---|---|",
    ]
    lines += [f"| {c.time:.0f} | {c.kind}: → {c.to_tier.name} | {c.reason} |" for c in result.changes]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(result, load_on, load_off, args.out.with_suffix(".png"))
    print("\n".join(lines))


def plot(result: SimulationResult, load_on: float, load_off: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [point.time for point in result.trace]
    fig, (fps_axis, tier_axis) = plt.subplots(2, 1, sharex=True, figsize=(9, 5), height_ratios=[2, 1])
    fps_axis.plot(times, [point.effective_fps for point in result.trace], lw=1, label="effective fps (1 s)")
    fps_axis.axhline(10.0, color="k", ls="--", lw=0.8, label="target")
    fps_axis.axhline(9.0, color="grey", ls=":", lw=0.8, label="target x (1 - margin)")
    fps_axis.set_ylabel("fps")
    fps_axis.legend(loc="lower left", fontsize=8)
    tier_axis.step(times, [point.level for point in result.trace], where="post", color="tab:red")
    tier_axis.set_ylabel("tier (0 = best)")
    tier_axis.invert_yaxis()
    tier_axis.set_xlabel("time (s)")
    for axis in (fps_axis, tier_axis):
        axis.axvspan(load_on, load_off, color="orange", alpha=0.15, label="load on")
    fps_axis.set_title("Simulated load step (load factor 0.5) with ±20 % noise")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
