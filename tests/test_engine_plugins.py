"""The engine registry as a plug-in boundary: an example engine (tests/example_engine.py, the one
docs/adding-an-engine.md shows) registered from outside runs a detection through the normal
factory and is selected by the tier logic; unknown engines are one-line config errors; the one
EngineOptions builder keeps each caller's score threshold."""

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.config import parse_config
from edge.core.errors import ConfigError
from edge.core.tiers import Tier
from edge.detection import engines
from edge.detection.engines import EngineOptions, EnginePlugin, detect
from edge.detection.factory import create_detector, engine_options, tracking_score_threshold
from edge.detection.int8.sets import builtin_frames
from edge.detection.manifest import get_model
from edge.device.tiers import select_tiers, validate_tiers
from tests import example_engine
from tests.test_tiers import MANIFEST, SSD, profile

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def registry(monkeypatch):
    """The registry with the example engine added, restored after the test."""
    monkeypatch.setattr(engines, "_PLUGINS", dict(engines._PLUGINS))
    engines.register_engine(example_engine.PLUGIN)
    return engines


def test_an_engine_registered_from_outside_detects_through_the_factory(registry):
    model = get_model(SSD)
    images = [frame.image for frame in builtin_frames(4)]
    detector = create_detector("plain-cpu", model, EngineOptions(precision="int8", max_batch=2))
    reference = create_detector("onnxruntime", model, EngineOptions(precision="fp32", max_batch=2))
    assert isinstance(detector.engine, example_engine.PlainCpuEngine)
    assert detector.precision == "fp32" and "int8" in detector.fallback_reasons
    found, expected = detect(detector, images[:2]), detect(reference, images[:2])
    assert sum(len(d) for d in expected) > 0
    for ours, theirs in zip(found, expected):
        np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=1e-3)
        np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-4)
    detector.close()
    reference.close()


def test_tier_selection_asks_the_plug_in(registry, monkeypatch):
    policy = parse_config(
        {"policy": {"tiers": {"x86-cpu": [{"model": SSD, "engine": "plain-cpu", "precision": "fp32"}]}}}
    ).policy
    selection = select_tiers(policy, profile("x86-cpu"), MANIFEST)
    assert [t.engine for t in selection.runnable] == ["plain-cpu"]
    refusing = EnginePlugin("plain-cpu", example_engine.__name__, lambda platform: "no plain CPU here")
    monkeypatch.setitem(registry._PLUGINS, "plain-cpu", refusing)
    selection = select_tiers(policy, profile("x86-cpu"), MANIFEST)
    assert not selection.runnable and selection.dropped[0].reason == "no plain CPU here"


def test_an_unknown_engine_is_a_one_line_config_error(tmp_path, capsys):
    from edge.commands.cli import main

    config = parse_config({"policy": {"tiers": {"x86-cpu": [{"model": SSD}, {"model": SSD, "engine": "openvino"}]}}})
    with pytest.raises(ConfigError, match=r"^c.yaml: policy\.tiers\.x86-cpu\[1\]\.engine: unknown engine 'openvino'"):
        validate_tiers(config, MANIFEST, source="c.yaml")
    with pytest.raises(ConfigError, match="unknown engine 'openvino'"):
        select_tiers(config.policy, profile("x86-cpu"), MANIFEST)
    path = tmp_path / "config.yaml"
    path.write_text(f"policy:\n  tiers:\n    x86-cpu:\n      - {{model: {SSD}, engine: openvino}}\n")
    assert main(["check-config", "-c", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "x86-cpu[0].engine: unknown engine 'openvino'" in error


def test_one_options_builder_keeps_each_callers_threshold():
    config = parse_config({"detector": {"score_threshold": 0.5}, "tracker": {"low_threshold": 0.2}})
    tier = Tier(0, SSD, "int8", "tensorrt", 256, 1, True)
    guard = engine_options(config, tier, 4)
    daemon = engine_options(config, tier, 4, tracking_score_threshold(config))
    assert guard.score_threshold == 0.5 and daemon.score_threshold == 0.2
    assert replace(guard, score_threshold=0.2) == daemon
    assert daemon.input_size == (256, 256) and daemon.dla_core == 0 and daemon.max_batch == 4
    assert daemon.cache_dir == str(config.state_dir / "cache")


def test_the_docs_show_the_example_engine_as_tested():
    text = (ROOT / "docs" / "adding-an-engine.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert (ROOT / "tests" / "example_engine.py").read_text() in blocks


def test_aspect_input_and_coarse_pass_run_on_any_engine(registry):
    """The aspect-preserving input and the coarse second pass belong to the SSD family, so an
    engine that knows nothing of them runs them and finds what the built-in engine finds."""
    model = get_model(SSD)
    images = [frame.image for frame in builtin_frames(2)]
    options = EngineOptions(
        precision="fp32", input_size=(480, 480), keep_aspect=True, coarse_input=300, max_batch=2
    )
    detector = create_detector("plain-cpu", model, options)
    reference = create_detector("onnxruntime", model, options)
    batch = detector.preprocess(images[:1])
    height, width = images[0].shape[:2]
    assert batch.tensor.shape[1:3] == (480, round(480 * width / height)) and len(batch.more_tensors) == 1
    found, expected = detect(detector, images), detect(reference, images)
    assert sum(len(d) for d in expected) > 0
    for ours, theirs in zip(found, expected):
        np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=1e-3)
    detector.close()
    reference.close()


def test_the_options_builder_gives_a_fixed_shape_engine_the_square_input():
    config = parse_config({"detector": {"keep_aspect": True, "coarse_input": 300}})
    ort_tier = Tier(0, SSD, "int8", "onnxruntime", 576, 1, False)
    trt_tier = Tier(1, SSD, "fp16", "tensorrt", 300, 1, False)
    follows = engine_options(config, ort_tier, 1)
    fixed = engine_options(config, trt_tier, 1)
    assert follows.keep_aspect and follows.coarse_input == 300
    assert not fixed.keep_aspect and fixed.coarse_input == 0
