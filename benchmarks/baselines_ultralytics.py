"""Ultralytics `track()` on one clip as fast as it goes: the peer users pick, for
`benchmarks/baselines.py`. Runs in its own optional environment, never the product's:

    python3 -m venv /tmp/va-baselines-venv
    /tmp/va-baselines-venv/bin/pip install torch==2.13.0+cpu ultralytics lap   # torch CPU from the local index
    /tmp/va-baselines-venv/bin/python benchmarks/baselines_ultralytics.py --clip C --model yolov8n.yaml --imgsz 320

The model is built from its yaml (random weights: nothing can be downloaded here). Its speed is
the trained model's except for NMS, whose work depends on how many boxes pass the confidence
threshold: the number per frame is printed beside the speed so the two can be compared.

The PyPI torchvision wheel is a CUDA build whose C++ ops do not load against the CPU torch, so
its `torchvision::nms` is registered here first with a vectorised torch implementation (the
schemas torchvision registers fakes for at import: nms, qnms).
"""

import argparse
import json
import time

import torch

_lib = torch.library.Library("torchvision", "DEF")
_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS: the IoU matrix once, then one pass over the boxes in score order."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    lt = torch.max(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    iou = inter / (area[:, None] + area[None, :] - inter + 1e-9)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long)]


_lib.impl("nms", _nms, "CPU")


def main() -> None:
    from ultralytics import YOLO

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", required=True)
    parser.add_argument("--model", default="yolov8n.yaml")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = YOLO(args.model)
    boxes = 0
    count = 0
    started = 0.0
    for result in model.track(source=args.clip, imgsz=args.imgsz, stream=True, verbose=False, persist=True):
        count += 1
        if count == 10:  # warm-up done
            started, boxes = time.perf_counter(), 0
        boxes += len(result.boxes)
        if count >= args.frames + 10:
            break
    measured = count - 10
    print(json.dumps({
        "model": args.model, "imgsz": args.imgsz, "frames": measured,
        "fps": measured / (time.perf_counter() - started), "boxes_per_frame": boxes / max(measured, 1),
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
