"""Whether a tier's detections agree with the best tier's, so the policy never steps into a tier
that sees much less than the best one (pure logic; the detectors run in edge.device.agreement).

Agreement is the INT8 guard's metric (edge.core.accuracy.agreement_map) with the best runnable
tier's detections, at the operating score threshold, as the reference: mAP@0.5 of the candidate
tier's detections (ranked by score) on the device's own frames. Tiers that run the best tier's
detector (same `Tier.key`: only frame_skip differs) agree by construction and are not measured.

Per site, the cheapest equivalent detector wins (`dominated`): when a cheaper detector's
detections agree with the best tier's at or above `policy.equivalence_floor` on the site's own
frames (a calibration set captured from its cameras, never the built-in scenes), the costlier
detectors ahead of it in the table see nothing more there and only cost time, so their tiers are
dropped and the cheaper detector's first tier becomes the default. On PETS09 S2.L1 input 300
misses people 576 finds (0.77-0.84) and 576 stays the default; on a camera where people are large
in the frame 300 agrees at 1.00 and runs at a fifth of 576's cost per 720p frame.
"""

from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from edge.core.accuracy import MIN_REFERENCE_BOXES, AgreementReport
from edge.core.tiers import Tier

BEST = "best"  # the reference itself
SAME_DETECTOR = "same detector"  # runs the best tier's detector: agrees by construction
MEASURED = "measured"
CACHED = "cached"  # measured on an earlier start of this device, on the same frames
OFF = "off"  # the floor is 0: nothing measured
BUILTIN_FRAME_SET = "builtin"  # the built-in scenes' set name: not the site's own frames


@dataclass(frozen=True)
class Measurement:
    """One candidate detector against the best tier's, as measured (and cached)."""

    agreement_map50: Optional[float]  # None when the reference found nothing to compare with
    reference_boxes: int
    frames: int
    frame_set: str  # the calibration set's name ("+builtin" when the built-in scenes were added)

    @classmethod
    def from_report(cls, report: AgreementReport, frame_set: str) -> "Measurement":
        return cls(report.agreement_map50, report.reference_boxes, report.frames, frame_set)


@dataclass(frozen=True)
class TierAgreement:
    """A tier's agreement with the best tier and the verdict; shown by `probe`, logged."""

    index: int
    tier: str
    agreement_map50: Optional[float]
    basis: str  # BEST, SAME_DETECTOR, MEASURED, CACHED or OFF
    floor: float
    reference_boxes: int = 0
    frames: int = 0
    frame_set: str = ""
    reason: Optional[str] = None  # why the tier is not runnable; None when it is

    @property
    def runnable(self) -> bool:
        return self.reason is None

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


def judge_tier(measurement: Measurement, floor: float) -> Optional[str]:
    """None when the tier may run, else why not. A measurement with too few reference boxes
    cannot tell agreement from chance and keeps the tier (the caller warns)."""
    value = measurement.agreement_map50
    if value is None or measurement.reference_boxes < MIN_REFERENCE_BOXES or value >= floor:
        return None
    return (
        f"detections agree with the best tier's at mAP@0.5 {value:.3f}, below policy.agreement_floor "
        f"{floor:.2f} ({measurement.frames} frames of set {measurement.frame_set})"
    )


def needs_measuring(tiers: Sequence[Tier], floor: float) -> List[Tier]:
    """The tiers whose detector differs from the best (first) tier's, one per detector."""
    if not tiers or floor <= 0:
        return []
    best = tiers[0]
    seen = {best.key}
    wanted = []
    for tier in tiers[1:]:
        if tier.key not in seen:
            seen.add(tier.key)
            wanted.append(tier)
    return wanted


def assess(
    tiers: Sequence[Tier], measured: Mapping[str, Tuple[Measurement, bool]], floor: float
) -> List[TierAgreement]:
    """The verdict for every tier, best first; `measured` maps a `Tier.key` to its measurement
    and whether it came from the cache (every key `needs_measuring` returned must be there)."""
    verdicts = []
    best_key = tiers[0].key if tiers else ""
    for tier in tiers:
        if floor <= 0:
            verdicts.append(TierAgreement(tier.index, tier.name, None, OFF, floor))
        elif tier.key == best_key:
            basis = BEST if tier is tiers[0] else SAME_DETECTOR
            verdicts.append(TierAgreement(tier.index, tier.name, 1.0, basis, floor))
        else:
            measurement, cached = measured[tier.key]
            verdicts.append(
                TierAgreement(
                    tier.index,
                    tier.name,
                    measurement.agreement_map50,
                    CACHED if cached else MEASURED,
                    floor,
                    measurement.reference_boxes,
                    measurement.frames,
                    measurement.frame_set,
                    judge_tier(measurement, floor),
                )
            )
    return verdicts


def on_site_frames(frame_set: str) -> bool:
    """Whether a measurement's frames are all the site's own (no built-in scenes among them)."""
    return bool(frame_set) and BUILTIN_FRAME_SET not in frame_set.split("+")


def dominated(
    tiers: Sequence[Tier],
    capacities: Sequence[float],
    verdicts: Sequence[TierAgreement],
    equivalence_floor: float,
) -> Dict[int, str]:
    """By tier index, why a tier is not worth running on this site: a detector listed after it,
    measured faster (`capacities`: analysed frames/s per tier), agrees with the best tier at or
    above `equivalence_floor` on the site's own frames. Empty when the floor is 0."""
    if equivalence_floor <= 0:
        return {}
    by_index = {tier.index: (position, tier) for position, tier in enumerate(tiers)}
    capacity: Dict[str, float] = {}
    for tier, value in zip(tiers, capacities):
        capacity.setdefault(tier.key, value)
    reasons: Dict[int, str] = {}
    for verdict in verdicts:
        if (
            verdict.basis not in (MEASURED, CACHED)
            or verdict.agreement_map50 is None
            or verdict.agreement_map50 < equivalence_floor
            or verdict.reference_boxes < MIN_REFERENCE_BOXES
            or not on_site_frames(verdict.frame_set)
            or verdict.index not in by_index
        ):
            continue
        position, cheaper = by_index[verdict.index]
        for tier in tiers[:position]:
            if tier.key == cheaper.key or capacity[tier.key] >= capacity[cheaper.key] or tier.index in reasons:
                continue
            reasons[tier.index] = (
                f"a cheaper detector sees the same people on this site's frames: {cheaper.model}@{cheaper.input} "
                f"{cheaper.engine}/{cheaper.precision} agrees with the best tier at mAP@0.5 "
                f"{verdict.agreement_map50:.3f} (>= policy.equivalence_floor {equivalence_floor:.2f}, "
                f"{verdict.frames} frames of set {verdict.frame_set}) and analyses {capacity[cheaper.key]:.1f} "
                f"frames/s against {capacity[tier.key]:.1f}"
            )
    return reasons
