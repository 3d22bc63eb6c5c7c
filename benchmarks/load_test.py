"""Real load test of the adaptive policy (issue 5).

The daemon's appliance runs on one file source played in real time at a target its best tier
meets on an idle machine. After `--quiet` seconds a second process starts two busy-looping
workers for `--load` seconds; the controller must step down and hold >= 90 % of the target,
then step back up once the load is gone. Writes the FPS/tier timeline as JSON and a plot.

    .venv/bin/python benchmarks/load_test.py --out benchmarks/results/load_test
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List

from edge.config import parse_config
from edge.devkit.synthetic import standard_scenes, write_scene
from edge.runtime.appliance import build_appliance

BUSY = (
    "import multiprocessing as m\ndef spin():\n    while True: pass\nif __name__ == '__main__':\n"
    "    ps = [m.Process(target=spin) for _ in range(2)]\n    [p.start() for p in ps]\n    [p.join() for p in ps]\n"
)


def run(
    quiet_s: float, load_s: float, after_s: float, target_fps: float, up_after_s: float, cameras: int
) -> Dict[str, Any]:
    scene = replace(standard_scenes(fps=target_fps)[1], name="load-scene")
    with tempfile.TemporaryDirectory() as tmp:
        video = write_scene(scene, Path(tmp))
        config = parse_config(
            {
                "state_dir": str(Path(tmp) / "state"),
                "cameras": [
                    {
                        "id": f"cam{n}",
                        "source": str(video),
                        "target_fps": target_fps,
                        "loop": True,
                        "lines": [{"id": "door", "points": [[0.5, 0.35], [0.5, 1.0]]}],
                    }
                    for n in range(cameras)
                ],
                "policy": {"up_after_s": up_after_s},
            }
        )
        appliance = build_appliance(config, publish=False)
        appliance.start()
        timeline: List[Dict[str, Any]] = []
        started = time.monotonic()
        load = None
        load_on = load_off = None
        try:
            while True:
                time.sleep(1.0)
                now = time.monotonic() - started
                if load is None and now >= quiet_s and load_on is None:
                    # Its own process group, so stopping it stops the two workers too.
                    load = subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True)
                    load_on = now
                if load is not None and now >= quiet_s + load_s:
                    os.killpg(load.pid, signal.SIGTERM)
                    load.wait()
                    load = None
                    load_off = now
                change = appliance.tick()
                stats = appliance.pipeline.stats()
                status = appliance.parts.controller.status()
                covered = round(sum(s.covered_fps for s in stats), 1)
                timeline.append(
                    {
                        "t": round(now, 1),
                        "covered_fps": covered,
                        "processed_fps": round(sum(s.fps for s in stats), 1),
                        "level": status.level,
                        "tier": status.tier.name,
                        "load": load is not None,
                        "change": str(change) if change else None,
                    }
                )
                print(
                    f"{now:6.1f}s level {status.level} covered {covered:6.1f} fps "
                    f"{'LOAD' if load else '    '} {change or ''}",
                    flush=True,
                )
                if now >= quiet_s + load_s + after_s:
                    break
        finally:
            if load is not None:
                os.killpg(load.pid, signal.SIGTERM)
                load.wait()
            appliance.stop()
    return {
        "target_fps": target_fps * cameras,
        "cameras": cameras,
        "load_on_s": load_on,
        "load_off_s": load_off,
        "up_after_s": up_after_s,
        "tiers": [t.name for t in appliance.parts.selection.runnable],
        "timeline": timeline,
    }


def verdict(result: Dict[str, Any]) -> Dict[str, Any]:
    timeline, target = result["timeline"], result["target_fps"]
    on, off = result["load_on_s"], result["load_off_s"]
    under_load = [p for p in timeline if on + 10 <= p["t"] <= off]
    start_level = timeline[0]["level"]
    stepped_down = any(p["level"] > start_level for p in timeline if on <= p["t"] <= off)
    held = sorted(p["covered_fps"] for p in under_load)
    median_under_load = held[len(held) // 2] if held else 0.0
    back_up = [p["t"] - off for p in timeline if p["t"] > off and p["level"] == start_level]
    return {
        "stepped_down_under_load": stepped_down,
        "median_covered_fps_under_load_after_10s": median_under_load,
        "recovered_fraction_of_target": round(median_under_load / target, 3),
        "start_level": start_level,
        "seconds_back_to_start_tier_after_load": round(back_up[0], 1) if back_up else None,
    }


def plot(result: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p["t"] for p in result["timeline"]]
    fig, (ax_fps, ax_tier) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5), height_ratios=[3, 1.4])
    ax_fps.plot(t, [p["covered_fps"] for p in result["timeline"]], label="covered fps (analysed × frame-skip)")
    ax_fps.axhline(result["target_fps"], color="grey", ls="--", label="target")
    ax_fps.axhline(result["target_fps"] * 0.9, color="grey", ls=":", label="90 % of target")
    for ax in (ax_fps, ax_tier):
        ax.axvspan(result["load_on_s"], result["load_off_s"], color="red", alpha=0.1)
    ax_fps.text(
        result["load_on_s"] + 1, 0.05, "2 busy-loop workers", color="red", transform=ax_fps.get_xaxis_transform()
    )
    ax_fps.set_ylabel("fps")
    ax_fps.legend(loc="lower right", fontsize=8)
    ax_tier.step(t, [p["level"] for p in result["timeline"]], where="post")
    ax_tier.set_yticks(
        range(len(result["tiers"])),
        [n.split("@", 1)[-1].replace("onnxruntime/", "") for n in result["tiers"]],
        fontsize=7,
    )
    ax_tier.invert_yaxis()
    ax_tier.set_xlabel("seconds")
    ax_tier.set_ylabel("tier")
    fig.suptitle(f"Adaptive policy under a real CPU load: {result['cameras']} cameras, x86-cpu, 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--quiet", type=float, default=20)
    parser.add_argument("--load", type=float, default=45)
    parser.add_argument("--after", type=float, default=45)
    parser.add_argument("--target", type=float, default=120, help="per camera")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--up-after", type=float, default=20)
    parser.add_argument("--out", default="benchmarks/results/load_test")
    args = parser.parse_args()
    result = run(args.quiet, args.load, args.after, args.target, args.up_after, args.cameras)
    result["verdict"] = verdict(result)
    print(json.dumps(result["verdict"], indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
