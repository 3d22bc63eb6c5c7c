"""Serialised TensorRT engines on disk.

Engines are valid only for the TensorRT version and GPU that built them, so they are stored
under a key of (model sha256, TensorRT version, device name, compute capability, precision,
input, max batch, DLA core): a JetPack upgrade or a different board misses the cache and
rebuilds rather than crashing. Writes are atomic (temp file + rename); storing an engine drops
the ones it supersedes.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Tuple

from edge.detection.atomic_file import atomic_write


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialised engine depends on; any change means a different engine."""

    model_name: str
    model_sha256: str
    tensorrt_version: str
    device_name: str
    compute_capability: Tuple[int, int]
    precision: str
    input_size: Tuple[int, int]  # (width, height)
    max_batch: int
    dla_core: int  # -1 = GPU

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def stem(self) -> str:
        """The part of the file name shared by engines that differ only in version or device."""
        width, height = self.input_size
        where = f"dla{self.dla_core}" if self.dla_core >= 0 else "gpu"
        return f"{self.model_name}-{self.precision}-{width}x{height}-b{self.max_batch}-{where}"

    @property
    def filename(self) -> str:
        return f"{self.stem}-{self.digest()[:16]}.engine"




class EngineCache:
    """Serialised engines under one directory, one file per EngineKey, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, key: EngineKey) -> Path:
        return self.directory / key.filename

    def read(self, key: EngineKey) -> Optional[bytes]:
        path = self.path_for(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def store(self, key: EngineKey, plan: bytes) -> Path:
        """Write the plan and its key, and drop engines this one supersedes (same model, precision,
        input, batch and DLA, built for another TensorRT version or device)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key)
        atomic_write(path, plan)
        atomic_write(path.with_suffix(".json"), json.dumps(asdict(key), indent=2).encode())
        for stale in self.directory.glob(f"{key.stem}-*.engine"):
            if stale != path:
                stale.unlink()
                stale.with_suffix(".json").unlink(missing_ok=True)
        return path

    def discard(self, key: EngineKey) -> None:
        path = self.path_for(key)
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)

