"""Real-scene accuracy: `video-analysis evaluate` on PETS 2009 S2.L1 for every tier of the
x86-cpu and Raspberry Pi classes (run here on the CPU), plus the landed defaults for reference.

The video (OpenCV's `vtest.avi` from Debian's opencv-doc) and the MOT ground truth of frames
1-400 are read from outside the repository (CC BY-NC-SA; /work/shared/eval/pets09-s2l1/README.md
says how to get them); only the scores are committed. Lines are the four development lines of
that README. Writes real_scene.{md,json} and real_scene_lines.png, real_scene_detections.png.

    .venv/bin/python benchmarks/real_scene.py --video /work/data/vtest.avi \\
        --gt /work/shared/eval/pets09-s2l1/gt-frames-0001-0400.txt [--frames 400] [--out benchmarks/results]
"""

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge.commands.evaluate import (  # noqa: E402
    SAMPLED_FRAMES,
    Evaluation,
    SampledFrame,
    draw_samples,
    evaluate,
    open_video,
    parse_line,
    plot_lines,
    video_frames,
)
from edge.config import Config, TierConfig  # noqa: E402
from edge.detection.factory import load_tier_detector  # noqa: E402
from edge.devkit.mot import read_mot  # noqa: E402

LINES = ("x40:0.4,0.3,0.4,0.8", "x60:0.6,0.3,0.6,0.85", "x80:0.8,0.3,0.8,0.85", "y60:0.1,0.6,0.95,0.6")
PLATFORMS = ("x86-cpu", "rpi-5", "rpi-4")
COLUMNS = (
    "recall@0.5",
    "precision@0.5",
    "recall@0.3",
    "mae_detections",
    "mae_tracks",
    "mota",
    "idf1",
    "id_switches",
    "track_ids",
    "crossings",
    "invented",
    "fps",
)


def runs(config: Config) -> List[Tuple[str, Config, TierConfig]]:
    """(label, config, tier) of every distinct tier of PLATFORMS, then other detection options
    and the landed defaults, for comparison."""
    names: Dict[Tuple[object, ...], List[str]] = {}
    tiers: Dict[Tuple[object, ...], TierConfig] = {}
    for name in PLATFORMS:
        for index, tier in enumerate(config.policy.tiers[name]):
            key = (tier.model, tier.precision, tier.engine, tier.input, tier.frame_skip)
            names.setdefault(key, []).append(f"{name}[{index}]")
            tiers[key] = tier
    out = [
        (" = ".join(labels) + f" {tiers[key].input} skip{tiers[key].frame_skip}", config, tiers[key])
        for key, labels in names.items()
    ]
    ssd = "ssdlite-mobilenetv2-pedestrian"

    def variant(label: str, tier: TierConfig, **detector: object) -> Tuple[str, Config, TierConfig]:
        return (label, config.model_copy(update={"detector": config.detector.model_copy(update=detector)}), tier)

    out += [
        variant("option: 576 fp32", TierConfig(model=ssd, precision="fp32", input=576)),
        variant("option: 576 no coarse pass", TierConfig(model=ssd, input=576), coarse_input=0),
        variant("option: 480", TierConfig(model=ssd, input=480)),
        variant("option: 416", TierConfig(model=ssd, input=416)),
        variant("option: 300 aspect kept", TierConfig(model=ssd, input=300)),
        variant(
            "landed defaults: 300x300 squashed, threshold 0.4",
            TierConfig(model=ssd, input=300),
            keep_aspect=False,
            coarse_input=0,
            score_threshold=0.4,
        ),
    ]
    return out


def markdown(results: List[Evaluation], command: str) -> str:
    lines = [
        "# Real-scene accuracy: PETS 2009 S2.L1, frames 1-400",
        "",
        f"`{command}` on {platform.processor() or platform.machine()}, shared CPU (fps are indicative).",
        "Four development lines, 58 true crossings. Detection at the detector threshold; "
        "`mae_tracks` is the counted (confirmed) tracks per frame. Crossings: counted that are real / true.",
        "",
        "| tier | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for result in results:
        summary = result.summary()
        lines.append(f"| {result.tier} | " + " | ".join(str(summary[c]) for c in COLUMNS) + " |")
    best = results[0]
    lines += ["", f"Per line, {best.tier}:", "", "| line | dir | true | counted |", "|---|---|---|---|"]
    lines += [f"| {s.line} | {s.direction} | {s.true} | {s.counted} |" for s in best.lines]
    lines += ["", "Occupancy per 10 s window (mean people; unique ids):", ""]
    lines += ["| window | true mean | counted mean | true unique | counted unique |", "|---|---|---|---|---|"]
    lines += [
        f"| {w.start_s:.0f} s | {w.true_mean:.2f} | {w.counted_mean:.2f} | {w.true_unique} | {w.counted_unique} |"
        for w in best.windows
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", default="/work/data/vtest.avi")
    parser.add_argument("--gt", default="/work/shared/eval/pets09-s2l1/gt-frames-0001-0400.txt")
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    truth = read_mot(Path(args.gt))
    lines = [parse_line(text) for text in LINES]
    out = Path(args.out)
    results: List[Evaluation] = []
    samples: List[SampledFrame] = []
    for number, (label, config, tier) in enumerate(runs(Config.model_validate({}))):
        capture, fps, size = open_video(Path(args.video))
        detector = load_tier_detector(config, tier, max_batch=1)
        try:
            result = evaluate(
                video_frames(capture, args.frames),
                fps,
                size,
                truth,
                lines,
                config,
                detector,
                label,
                tier.frame_skip,
                Path(args.video).name,
                samples if number == 0 else None,
                max(1, args.frames // SAMPLED_FRAMES),
            )
        finally:
            detector.close()
        print(json.dumps(result.summary()), flush=True)
        results.append(result)
    command = "python benchmarks/real_scene.py --frames " + str(args.frames)
    (out / "real_scene.md").write_text(markdown(results, command), encoding="utf-8")
    (out / "real_scene.json").write_text(
        json.dumps({"command": command, "results": [r.to_json() for r in results]}, indent=1) + "\n",
        encoding="utf-8",
    )
    plot_lines(results[0], out / "real_scene_lines.png")
    picture = draw_samples(samples[:SAMPLED_FRAMES], truth)
    cv2.imwrite(str(out / "real_scene_detections.png"), cv2.resize(picture, None, fx=0.5, fy=0.5))
    return 0


if __name__ == "__main__":
    sys.exit(main())
