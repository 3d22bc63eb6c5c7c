"""Where the time goes: a py-spy raw (collapsed stacks) profile of `benchmarks/streams.py --one`
summed into the pipeline's stages by the innermost Python function each sample is in.

    py-spy record --native -r 50 -f raw -o prof.txt -- python benchmarks/streams.py --one --clip C --cameras 4
    python benchmarks/profile_summary.py prof.txt
"""

import argparse
import collections
from pathlib import Path
from typing import Dict, List, Tuple

# First match wins, searched from the innermost frame outwards: (stage, substring of a frame).
RULES: List[Tuple[str, str]] = [
    ("decode: grab (H.264 to YUV)", "grab"),
    ("decode: read (grab + BGR conversion)", "read (edge/runtime/sources.py"),
    ("decode: retrieve (BGR conversion)", "retrieve"),
    ("preprocess (resize + RGB)", "preprocess"),
    ("inference (ONNX Runtime)", "infer"),
    ("postprocess (decode + NMS)", "postprocess"),
    ("tracking + analytics", "update (edge/runtime/analysis.py"),
    ("window close / publish", "poll (edge/runtime/analysis.py"),
    ("controller tick / telemetry", "tick (edge/runtime/lifecycle.py"),
    ("start-up (model load, quantisation)", "build_appliance"),
]


def summarise(path: Path) -> Dict[str, int]:
    totals: Dict[str, int] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        stage = "other (Python glue, waits)"
        for frame in reversed(frames):
            matched = next((name for name, key in RULES if key in frame), None)
            if matched:
                stage = matched
                break
        totals[stage] += int(count)
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", type=Path, nargs="+")
    args = parser.parse_args()
    for path in args.profiles:
        totals = summarise(path)
        total = sum(totals.values())
        print(f"\n{path.name}: {total} samples")
        for stage, count in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"  {100.0 * count / total:5.1f} %  {stage}")


if __name__ == "__main__":
    main()
