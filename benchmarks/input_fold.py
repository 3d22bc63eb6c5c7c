"""The INT8 model with its input normalisation folded into the first convolution against the same
model without the fold (edge/detection/int8/input_fold.py): ms per frame on one intra-op thread
(one lane), interleaved rounds on the same decoded frames, and how far their outputs differ.

    .venv/bin/python benchmarks/input_fold.py --model Q.onnx --clip /tmp/va-clips/plaza-720p.mp4 \\
        --markdown benchmarks/results/input_fold.md

Q.onnx: a quantised model from before the fold (e.g. `quantize_model(..., QuantizeSettings(
fold_input=False))`, or a cache file of an earlier version); the folded copy is made here.
"""

import argparse
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import onnx
import onnxruntime as ort

from edge.commands.bench_streams import steal_s
from edge.detection.engines.onnxruntime import session_options
from edge.detection.families.ssd import preprocess_ssd
from edge.detection.int8.input_fold import fold_input_normalisation
from edge.runtime.sources import read_all_frames


def per_frame_ms(session: ort.InferenceSession, tensors: List[np.ndarray]) -> float:
    started = time.perf_counter()
    for tensor in tensors:
        session.run(None, {"images": tensor})
    return (time.perf_counter() - started) / len(tensors) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--size", default="533x300", help="input WxH")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    tensors = [preprocess_ssd([frame], (width, height)) for frame in read_all_frames(str(args.clip), limit=args.frames)]
    model = onnx.load(str(args.model))
    if not fold_input_normalisation(model):
        raise SystemExit(f"{args.model}: no input chain to fold")
    with tempfile.TemporaryDirectory() as tmp:
        folded_path = Path(tmp) / "folded.onnx"
        onnx.save(model, str(folded_path))
        sessions = {
            name: ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
            for name, path in (("chain", args.model), ("folded", folded_path))
        }
        differences = []
        for tensor in tensors[:10]:
            chain, folded = (sessions[name].run(None, {"images": tensor}) for name in ("chain", "folded"))
            differences.append(max(float(np.abs(a - b).max()) for a, b in zip(chain, folded)))
        for session in sessions.values():
            per_frame_ms(session, tensors[:5])
        rounds: List[Dict[str, float]] = []
        for number in range(args.rounds):
            steal = steal_s()
            started = time.monotonic()
            row = {name: per_frame_ms(session, tensors) for name, session in sessions.items()}
            row["steal %"] = 100 * (steal_s() - steal) / (time.monotonic() - started) / 2
            rounds.append(row)
            print(f"round {number + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    lines = [
        "# INT8 input normalisation folded into the first convolution",
        "",
        f"`benchmarks/input_fold.py`, model `{args.model.name}`, input {width}x{height}, {len(tensors)} frames of "
        f"`{args.clip.name}`, one intra-op thread, {args.rounds} interleaved rounds. Largest output "
        f"difference over 10 frames: {max(differences):.3f} (raw box encodings and logits).",
        "",
        "| round | with the chain, ms/frame | folded, ms/frame | folded / chain | steal % |",
        "|---|---|---|---|---|",
    ]
    for number, row in enumerate(rounds, 1):
        ratio = row["folded"] / row["chain"]
        lines.append(f"| {number} | {row['chain']:.2f} | {row['folded']:.2f} | {ratio:.3f} | {row['steal %']:.1f} |")
    median = float(np.median([row["folded"] / row["chain"] for row in rounds]))
    lines += ["", f"Median folded / chain: {median:.3f}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
