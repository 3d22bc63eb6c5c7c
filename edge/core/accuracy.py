"""How far an INT8 model's detections are from FP32's, and the guard that decides whether
INT8 may be used.

Agreement is VOC-style mAP@0.5 of the INT8 detections with the FP32 detections (above the score
threshold) taken as ground truth: 1.0 when INT8 finds every FP32 box at IoU >= 0.5, ranked
above its extra boxes. Recall is measured on frames with real labels (synthetic ground truth).
Pure numpy and hand-written because the metric is ~40 lines and the libraries that have it
(pycocotools, supervision, torchmetrics) are not runtime dependencies of the appliance.
"""

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from edge.core.detections import Detections

IOU_THRESHOLD = 0.5


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4), x1 y1 x2 y2."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    a = a.astype(np.float64)[:, None, :]
    b = b.astype(np.float64)[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def average_precision(
    predictions: Sequence[Detections], references: Sequence[np.ndarray], iou_threshold: float = IOU_THRESHOLD
) -> Optional[float]:
    """AP of one class: `predictions` per frame (boxes + scores), `references` per frame (K, 4).
    Greedy matching by descending score, each reference matched at most once; all-point
    interpolated precision/recall area (VOC 2010+). None when there is no reference box."""
    total = sum(len(r) for r in references)
    if total == 0:
        return None
    scores: List[float] = []
    hits: List[bool] = []
    for frame_predictions, frame_references in zip(predictions, references):
        order = np.argsort(-frame_predictions.scores, kind="stable")
        ious = iou_matrix(frame_predictions.boxes[order], frame_references)
        taken = np.zeros(len(frame_references), bool)
        for row, index in enumerate(order):
            hit = False
            if ious.shape[1]:
                candidates = np.where(taken, -1.0, ious[row])
                best = int(np.argmax(candidates))
                if candidates[best] >= iou_threshold:
                    taken[best] = True
                    hit = True
            scores.append(float(frame_predictions.scores[index]))
            hits.append(hit)
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    matched = np.asarray(hits)[order]
    true_positives = np.cumsum(matched)
    precision = true_positives / np.arange(1, len(matched) + 1)
    recall = true_positives / total
    # Precision envelope, then the area under the step curve.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.concatenate([[0.0], recall])
    return float(np.sum((recall_steps[1:] - recall_steps[:-1]) * envelope))


def agreement_map(
    candidate: Sequence[Detections], reference: Sequence[Detections], iou_threshold: float = IOU_THRESHOLD
) -> Optional[float]:
    """mAP over the classes present in `reference` of `candidate` against `reference` boxes."""
    classes = sorted({int(c) for frame in reference for c in frame.class_ids})
    values = []
    for class_id in classes:
        predictions = [frame.select(frame.class_ids == class_id) for frame in candidate]
        truths = [frame.boxes[frame.class_ids == class_id] for frame in reference]
        value = average_precision(predictions, truths, iou_threshold)
        if value is not None:
            values.append(value)
    return float(np.mean(values)) if values else None


def recall(
    detections: Sequence[Detections], labels: Sequence[np.ndarray], iou_threshold: float = IOU_THRESHOLD
) -> Optional[float]:
    """Share of labelled boxes matched one-to-one by a detection at IoU >= threshold."""
    total = sum(len(boxes) for boxes in labels)
    if total == 0:
        return None
    found = 0
    for frame, truth in zip(detections, labels):
        ious = iou_matrix(np.asarray(truth, np.float64).reshape(-1, 4), frame.boxes)
        used = np.zeros(ious.shape[1], bool)
        for row in range(ious.shape[0]):
            candidates = np.where(used, -1.0, ious[row]) if ious.shape[1] else np.zeros(0)
            if candidates.size and candidates.max() >= iou_threshold:
                used[int(np.argmax(candidates))] = True
                found += 1
    return found / total


@dataclass(frozen=True)
class AgreementReport:
    """INT8 against FP32 on the held-out frames."""

    frames: int
    reference_boxes: int  # FP32 detections used as reference
    agreement_map50: Optional[float]  # None when FP32 found nothing to compare with
    labelled_frames: int = 0
    recall_fp32: Optional[float] = None
    recall_int8: Optional[float] = None


def compare(
    int8: Sequence[Detections],
    fp32: Sequence[Detections],
    labels: Sequence[Optional[np.ndarray]] = (),
) -> AgreementReport:
    """The report for detections of the same frames by both models; `labels` per frame
    (None for unlabelled frames) gives recall."""
    labelled = [i for i, boxes in enumerate(labels) if boxes is not None]
    truth = [np.asarray(labels[i], np.float64).reshape(-1, 4) for i in labelled]
    return AgreementReport(
        frames=len(fp32),
        reference_boxes=sum(len(frame) for frame in fp32),
        agreement_map50=agreement_map(int8, fp32),
        labelled_frames=len(labelled),
        recall_fp32=recall([fp32[i] for i in labelled], truth) if labelled else None,
        recall_int8=recall([int8[i] for i in labelled], truth) if labelled else None,
    )


@dataclass(frozen=True)
class PrecisionDecision:
    """Which precision a tier runs at and why; published in telemetry as `to_dict()`."""

    requested: str
    chosen: str
    engine: str
    accepted: bool  # False when the requested precision was refused
    reason: str
    floor: float
    agreement_map50: Optional[float] = None
    recall_fp32: Optional[float] = None
    recall_int8: Optional[float] = None
    heldout_frames: int = 0
    reference_boxes: int = 0
    calibration_set: str = ""
    model_path: str = ""

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


MIN_REFERENCE_BOXES = 20  # fewer FP32 boxes than this and the agreement figure means little


def judge(report: AgreementReport, floor: float, max_recall_drop: float) -> Optional[str]:
    """None when INT8 is acceptable, else the reason it is refused."""
    if report.agreement_map50 is None:
        return "no FP32 detections on the held-out frames to compare with"
    if report.agreement_map50 < floor:
        return f"INT8 agreement mAP@0.5 {report.agreement_map50:.3f} below the floor {floor:.2f}"
    if report.recall_fp32 is not None and report.recall_int8 is not None:
        drop = report.recall_fp32 - report.recall_int8
        if drop > max_recall_drop:
            return (
                f"INT8 recall {report.recall_int8:.3f} on labelled frames is {drop:.3f} below FP32's "
                f"{report.recall_fp32:.3f} (allowed {max_recall_drop:.2f})"
            )
    return None
