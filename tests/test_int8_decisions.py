"""The accuracy guard's decision cache: a decision is replayed while its key holds, so a restart
does not load the FP32 model again; any change of key compares again; a bad file is a miss."""

import dataclasses
import logging

import pytest

from edge.config import Config, TierConfig
from edge.core.accuracy import PrecisionDecision
from edge.detection.int8 import guard
from edge.detection.int8.decisions import DecisionCache, GuardKey
from edge.detection.int8.quantize import QuantizeKey, QuantizeResult, QuantizeSettings
from edge.detection.manifest import get_model

MODEL = "ssdlite-mobilenetv2-pedestrian"
INT8_TIER = TierConfig(model=MODEL, precision="int8", engine="onnxruntime", input=300)

KEY = GuardKey(
    device="dev-a",
    software="0.1.0",
    engine="onnxruntime",
    model=MODEL,
    fp32_sha256="f" * 64,
    int8_sha256="8" * 64,
    calibration_set="c" * 64,
    input_size=(300, 300),
    keep_aspect=True,
    coarse_input=0,
    detector_threshold=0.1,
    operating_threshold=0.3,
    nms_iou=0.45,
    dla_core=-1,
    agreement_floor=0.95,
    max_recall_drop=0.05,
    holdout_fraction=0.2,
)
DECISION = PrecisionDecision(
    requested="int8",
    chosen="int8",
    engine="onnxruntime",
    accepted=True,
    reason="agreement above the floor",
    floor=0.95,
    agreement_map50=0.98,
    heldout_frames=13,
    reference_boxes=40,
    calibration_set="builtin",
    model_path="/state/cache/quantized/m.onnx",
)


def test_a_decision_is_found_under_its_own_key_only(tmp_path):
    cache = DecisionCache(tmp_path)
    assert cache.get(KEY) is None
    cache.put(KEY, DECISION)
    assert cache.get(KEY) == DECISION
    assert DecisionCache(tmp_path).get(KEY) == DECISION  # kept across processes
    for change in (
        {"device": "dev-b"},
        {"int8_sha256": "9" * 64},
        {"input_size": (576, 576)},
        {"agreement_floor": 0.9},
    ):
        assert cache.get(dataclasses.replace(KEY, **change)) is None, change


def test_an_unreadable_or_foreign_file_is_a_miss(tmp_path, caplog):
    cache = DecisionCache(tmp_path)
    cache.put(KEY, DECISION)
    (path,) = tmp_path.glob("*.json")
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert cache.get(KEY) is None
    assert "unreadable" in caplog.text
    path.write_text('{"key": {"device": "dev-a"}, "decision": {}}')
    assert cache.get(KEY) is None


def test_a_cache_that_cannot_be_written_costs_nothing_but_the_cache(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING):
        DecisionCache(blocker / "decisions").put(KEY, DECISION)
    assert "not cached" in caplog.text


@pytest.fixture
def guarded(tmp_path, monkeypatch):
    """The guard on the shipped INT8 file (quantising is another test's job) with every detector
    it builds recorded by precision."""
    model = get_model(MODEL)
    shipped = QuantizeResult(model.file("int8"), QuantizeKey("", "", "", (300, 300), QuantizeSettings()), True, 0.0)
    monkeypatch.setattr(guard, "quantize_for", lambda *args, **kwargs: shipped)
    built = []
    create = guard.create_detector

    def recording(engine, spec, options, *args):
        built.append(options.precision)
        return create(engine, spec, options, *args)

    monkeypatch.setattr(guard, "create_detector", recording)
    config = Config(state_dir=tmp_path / "state", calibration={"dir": str(tmp_path / "calibration")})

    def load(device):
        built.clear()
        detector, decision = guard.load_guarded_detector(config, INT8_TIER, model, device=device)
        detector.close()
        return decision, list(built), detector.precision

    return load


def test_the_guard_compares_once_per_key_and_replays_its_decision(guarded):
    decision, built, precision = guarded("dev-a")
    assert decision.accepted and precision == "int8" and built == ["int8", "fp32"]
    replayed, built, precision = guarded("dev-a")
    assert replayed == decision and precision == "int8" and built == ["int8"]  # no FP32 model loaded
    _, built, _ = guarded("dev-b")
    assert built == ["int8", "fp32"]
    _, built, _ = guarded(None)  # no device, no cache: always compared
    assert built == ["int8", "fp32"]


def test_a_refused_decision_is_replayed_as_its_fallback(guarded, monkeypatch):
    refusing = [True]
    judge = guard.judge
    monkeypatch.setattr(guard, "judge", lambda *args: "refused for the test" if refusing[0] else judge(*args))
    decision, _, precision = guarded("dev-a")
    assert not decision.accepted and decision.chosen == precision == "fp32"
    refusing[0] = False  # a new comparison would now accept INT8; the replay does not compare
    replayed, built, precision = guarded("dev-a")
    assert replayed == decision and precision == "fp32" and built == ["int8", "fp32"]
    _, _, precision = guarded("dev-b")
    assert precision == "int8"
