"""The accuracy guard's decisions, cached: comparing INT8 with FP32 loads the FP32 model beside the
INT8 one and runs both over the held-out frames, which took 7 s and lifted the daemon's peak RSS
by about 190 MB on every start (benchmarks/results/memory.md). The comparison is deterministic
for given inputs, so its outcome is kept under `<cache dir>/int8-decisions/`, one JSON file per
key, and replayed while nothing it depends on changes: the device, the software versions, the
model and INT8 files, the calibration set, the engine options and the guard's settings. Any
change is another key, hence a new comparison; a file that cannot be read is a miss.
"""

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Tuple

from edge.core.accuracy import PrecisionDecision
from edge.detection.atomic_file import atomic_write

log = logging.getLogger(__name__)

DIRECTORY = "int8-decisions"


@dataclass(frozen=True)
class GuardKey:
    """Everything the guard's outcome depends on."""

    device: str  # the hardware and runtime fingerprint: INT8 kernels differ per CPU and GPU
    software: str  # this package's and the engine runtime's versions
    engine: str
    model: str
    fp32_sha256: str
    int8_sha256: str  # the INT8 file or engine the candidate loaded
    calibration_set: str  # content hash of the set (its held-out frames are compared on)
    input_size: Tuple[int, int]
    keep_aspect: bool
    coarse_input: int
    detector_threshold: float
    operating_threshold: float  # FP32 boxes above it are the reference
    nms_iou: float
    dla_core: int
    agreement_floor: float
    max_recall_drop: float
    holdout_fraction: float

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


class DecisionCache:
    """Guard decisions by key under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: GuardKey) -> Path:
        return self.directory / f"{key.digest()[:32]}.json"

    def get(self, key: GuardKey) -> Optional[PrecisionDecision]:
        path = self._path(key)
        try:
            raw = json.loads(path.read_text())
            if raw.get("key") != json.loads(json.dumps(asdict(key))):
                return None
            decision = raw["decision"]
            names = {field.name for field in fields(PrecisionDecision)}
            if not isinstance(decision, dict) or set(decision) != names:
                return None
            return PrecisionDecision(**decision)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("%s: cached INT8 decision unreadable (%s); comparing again", path, exc)
            return None

    def put(self, key: GuardKey, decision: PrecisionDecision) -> None:
        """Written atomically; a failure to write costs a comparison at the next start only."""
        path = self._path(key)
        try:
            atomic_write(path, json.dumps({"key": asdict(key), "decision": decision.to_dict()}, indent=1).encode())
        except OSError as exc:
            log.warning("%s: INT8 decision not cached (%s)", path, exc)
