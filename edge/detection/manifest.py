"""The model manifest (manifest.json): which models exist, their files and checksums.

The runtime never downloads anything: a model is a set of committed files whose sha256 the
manifest records, verified before loading (a mismatch is a corrupt model, exit code 3). The
shipped models are package data (edge/assets/models/); config `models_dir` points elsewhere.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from edge.assets import asset_dir
from edge.core.errors import ModelError

DEFAULT_MODELS_DIR = asset_dir("models")


@dataclass(frozen=True)
class ModelFile:
    path: Path
    sha256: str


@dataclass(frozen=True)
class ModelSpec:
    """One model of the manifest."""

    name: str
    family: str  # "ssd" (anchor decode) or "yolo" (YOLOv8/YOLO11 head)
    classes: Tuple[str, ...]
    input_size: Tuple[int, int]  # native (width, height)
    files: Dict[str, ModelFile]  # by role: "fp32", "int8", "anchors", ...
    supported_inputs: Tuple[int, ...] = ()  # square input sizes the model can take
    extras: Dict[str, object] = field(default_factory=dict)  # family-specific facts

    def file(self, role: str) -> Path:
        """The verified path of one of the model's files."""
        if role not in self.files:
            raise ModelError(f"model {self.name}: no {role!r} file in the manifest")
        entry = self.files[role]
        verify_sha256(entry.path, entry.sha256)
        return entry.path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    if not path.is_file():
        raise ModelError(f"{path}: model file missing")
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(f"{path}: model file corrupt (sha256 {actual[:12]}…, expected {expected[:12]}…)")


def load_manifest(models_dir: Path = DEFAULT_MODELS_DIR) -> Dict[str, ModelSpec]:
    manifest_path = models_dir / "manifest.json"
    try:
        raw = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{manifest_path}: model manifest missing") from None
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{manifest_path}: model manifest corrupt ({exc.msg} at line {exc.lineno})"
        ) from None
    specs = {}
    for name, entry in raw.get("models", {}).items():
        files = {
            role: ModelFile(models_dir / item["path"], item["sha256"])
            for role, item in entry["files"].items()
        }
        specs[name] = ModelSpec(
            name=name,
            family=entry["family"],
            classes=tuple(entry["classes"]),
            input_size=(int(entry["input"]["width"]), int(entry["input"]["height"])),
            files=files,
            supported_inputs=tuple(entry.get("supported_inputs", [])),
            extras=dict(entry.get("extras", {})),
        )
    return specs


def get_model(name: str, models_dir: Path = DEFAULT_MODELS_DIR) -> ModelSpec:
    specs = load_manifest(models_dir)
    if name not in specs:
        known: List[str] = sorted(specs)
        raise ModelError(f"{models_dir / 'manifest.json'}: no model {name!r} (known: {', '.join(known)})")
    return specs[name]
