"""Calibration for engines that build INT8 themselves (the registry's `calibrates_int8`):
which frames they calibrate on and where each keeps its table."""

from pathlib import Path

from edge.detection.engines.base import CalibrationSource, EngineOptions
from edge.detection.int8.sets import ensure_builtin_set, list_sets, load_set
from edge.detection.manifest import ModelSpec

DEFAULT_HOLDOUT = 0.2


def calibration_table_path(
    engine: str, set_dir: Path, model: ModelSpec, options: EngineOptions, set_hash: str
) -> Path:
    """One table per engine, model file, input size and calibration set, kept in the set."""
    width, height = options.input_size
    sha = model.files["fp32"].sha256[:12]
    return set_dir / f"{engine}-{model.name}-{sha}-{width}x{height}-{set_hash[:12]}.cache"


def default_calibration(engine: str, model: ModelSpec, options: EngineOptions) -> CalibrationSource:
    """Calibration from the newest set under the cache dir's calibration/ (else the built-in set,
    copied there), for INT8 loads that come without the accuracy guard."""
    root = Path(options.cache_dir or ".") / "calibration"
    sets = list_sets(root)
    chosen = load_set(sets[0]) if sets else ensure_builtin_set(root)
    frames, _ = chosen.split(DEFAULT_HOLDOUT)
    return CalibrationSource(
        frames, calibration_table_path(engine, chosen.directory, model, options, chosen.content_hash())
    )
