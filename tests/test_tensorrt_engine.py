"""The TensorRT engine against the stand-in of the TensorRT/pycuda Python API (tests/trt_standin):
cache keys and invalidation, calibrator batches and table reuse, precision fallback, rebuild of a
corrupt engine, input/output binding for batch 1 and max batch, DLA flags, TRT 8 and 10 APIs."""

import importlib
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.core.errors import ModelError
from edge.detection.engines import CalibrationSource, EngineOptions, detect
from edge.detection.engines import tensorrt as trt_engine
from edge.detection.engines.onnxruntime import ort_tensorrt_provider_options
from edge.detection.factory import compose, create_detector
from edge.detection.int8.sets import builtin_frames, write_set
from edge.detection.manifest import get_model

STANDIN = Path(__file__).parent / "trt_standin"
MODEL = "ssdlite-mobilenetv2-pedestrian"


@pytest.fixture
def standin(monkeypatch):
    """The stand-in `tensorrt` and `pycuda` on sys.path, fresh for each test."""
    monkeypatch.syspath_prepend(str(STANDIN))
    for name in [m for m in sys.modules if m == "tensorrt" or m.startswith("pycuda")]:
        monkeypatch.delitem(sys.modules, name)
    trt = importlib.import_module("tensorrt")
    cuda = importlib.import_module("pycuda.driver")
    trt.configure("10.3.0")
    monkeypatch.setattr(cuda, "DEVICE_NAME", "Orin (stand-in)")
    monkeypatch.setattr(cuda, "COMPUTE_CAPABILITY", (8, 7))
    yield trt_engine.TensorRTModules(trt=trt, cuda=cuda)
    for name in [m for m in sys.modules if m == "tensorrt" or m.startswith("pycuda")]:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def model():
    return get_model(MODEL)


@pytest.fixture(scope="module")
def frames():
    return list(builtin_frames(8))


@pytest.fixture
def calibration(tmp_path, frames):
    calibration_set = write_set(tmp_path / "calibration", "site", frames, "test")
    return CalibrationSource(
        calibration_set.frames, calibration_set.directory / "trt-test.cache", batch_size=2
    )


def options(tmp_path, **overrides):
    values = dict(precision="int8", input_size=(300, 300), max_batch=4, cache_dir=str(tmp_path / "cache"))
    values.update(overrides)
    return EngineOptions(**values)


def trt_detector(model, engine_options, calibration, modules):
    """The model's family on a TensorRT engine opened with the stand-in modules."""
    return compose(model, engine_options, lambda request: trt_engine.TensorRTEngine(request, modules), calibration)


def engines_in(tmp_path):
    return sorted(p.name for p in (tmp_path / "cache" / "engines").glob("*.engine"))


# --- pure logic ----------------------------------------------------------------------------------


def make_key(**overrides):
    values = dict(
        model_name="m",
        model_sha256="a" * 64,
        tensorrt_version="10.3.0",
        device_name="Orin",
        compute_capability=(8, 7),
        precision="int8",
        input_size=(300, 300),
        max_batch=4,
        dla_core=-1,
    )
    values.update(overrides)
    return trt_engine.EngineKey(**values)


@pytest.mark.parametrize(
    "change",
    [
        {"model_sha256": "b" * 64},
        {"tensorrt_version": "8.6.2"},
        {"device_name": "Xavier"},
        {"compute_capability": (7, 2)},
        {"precision": "fp16"},
        {"input_size": (256, 256)},
        {"max_batch": 1},
        {"dla_core": 0},
    ],
)
def test_every_key_field_changes_the_engine_file(change):
    assert make_key(**change).filename != make_key().filename


def test_engines_differing_only_in_version_share_a_stem_and_the_old_one_is_dropped(tmp_path):
    cache = trt_engine.EngineCache(tmp_path)
    old, new = make_key(tensorrt_version="8.5.2"), make_key(tensorrt_version="8.6.2")
    assert old.stem == new.stem
    cache.store(old, b"old plan")
    cache.store(make_key(precision="fp16"), b"other precision")
    cache.store(new, b"new plan")
    assert cache.read(old) is None
    assert cache.read(new) == b"new plan"
    assert cache.read(make_key(precision="fp16")) == b"other precision"


def test_precision_plan_falls_back_in_order():
    assert trt_engine.plan_precisions("int8", True, True).order == ("int8", "fp16", "fp32")
    no_int8 = trt_engine.plan_precisions("int8", False, True)
    assert no_int8.order == ("fp16", "fp32")
    assert "INT8" in no_int8.skipped["int8"]
    assert trt_engine.plan_precisions("int8", False, False).order == ("fp32",)
    assert trt_engine.plan_precisions("fp16", True, False).order == ("fp32",)
    assert trt_engine.plan_precisions("fp32", True, True).order == ("fp32",)
    with pytest.raises(ModelError):
        trt_engine.plan_precisions("int4", True, True)


def test_profile_shapes_follow_the_input_layout():
    assert trt_engine.profile_shapes((-1, -1, -1, 3), (320, 240), 4) == (
        (1, 240, 320, 3),
        (4, 240, 320, 3),
        (4, 240, 320, 3),
    )
    assert trt_engine.profile_shapes((-1, 3, 640, 640), (640, 640), 2)[2] == (2, 3, 640, 640)
    with pytest.raises(ModelError, match="does not allow"):
        trt_engine.profile_shapes((-1, 3, 640, 640), (320, 320), 1)
    with pytest.raises(ModelError, match="batch fixed"):
        trt_engine.profile_shapes((1, 3, 640, 640), (640, 640), 4)


def test_ort_tensorrt_provider_options_enable_int8_and_the_engine_cache(tmp_path):
    settings = ort_tensorrt_provider_options(EngineOptions(precision="int8", dla_core=0), tmp_path)
    assert settings["trt_int8_enable"] is True and settings["trt_fp16_enable"] is True
    assert settings["trt_engine_cache_enable"] is True and settings["trt_engine_cache_path"] == str(tmp_path)
    assert settings["trt_dla_enable"] is True and settings["trt_dla_core"] == 0
    fp32 = ort_tensorrt_provider_options(EngineOptions(precision="fp32"), tmp_path)
    assert fp32["trt_int8_enable"] is False and "trt_dla_enable" not in fp32


# --- against the stand-in -----------------------------------------------------------------------


def assert_same_detections(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-3)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-4)


def test_int8_build_calibrates_caches_and_decodes_like_onnxruntime(
    standin, tmp_path, model, calibration, frames
):
    detector = trt_detector(model, options(tmp_path), calibration, standin)
    assert detector.precision == "int8" and detector.engine.loaded.built
    assert engines_in(tmp_path) == [detector.artifact.name]
    plan = standin.trt.read_plan(detector.artifact.read_bytes())
    assert plan["int8"] and plan["fp16"] and not plan["gpu_fallback"]
    assert plan["profile"]["images"] == [[1, 300, 300, 3], [4, 300, 300, 3], [4, 300, 300, 3]]
    # 8 frames in batches of 2 -> 4 get_batch calls with data, then the table is written.
    assert standin.trt.PLATFORM.calibration_batches == 4
    assert calibration.table_path.read_text().startswith("TRT-1003-EntropyCalibration2")

    reference = create_detector("onnxruntime", model, EngineOptions(precision="fp32", max_batch=4))
    images = [f.image for f in frames]
    for batch in (images[:1], images[:4]):
        assert_same_detections(detect(detector, batch), detect(reference, batch))
    assert sum(len(d) for d in detect(detector, images[:4])) > 0
    detector.close()


def test_outputs_are_bound_for_batch_one_and_max_batch(standin, tmp_path, model, frames):
    detector = trt_detector(model, options(tmp_path, precision="fp32"), None, standin)
    runner = detector.engine.runner
    anchors = len(detector.family.anchors)
    shapes = {b.name: b.max_shape for b in runner.bindings}
    assert shapes == {
        "images": (4, 300, 300, 3),
        "box_encodings": (4, anchors, 4),
        "class_logits": (4, anchors, 2),
    }
    for batch in (1, 4):
        tensor = detector.preprocess([f.image for f in frames[:batch]]).tensor
        outputs = runner.run(tensor)
        assert [o.shape for o in outputs] == [(batch, anchors, 4), (batch, anchors, 2)]
    with pytest.raises(ValueError):
        detector.preprocess([f.image for f in frames[:5]])


def test_second_load_uses_the_cached_engine_and_the_calibration_table(standin, tmp_path, model, calibration):
    first = trt_detector(model, options(tmp_path), calibration, standin)
    builds, batches = standin.trt.PLATFORM.builds, standin.trt.PLATFORM.calibration_batches
    second = trt_detector(model, options(tmp_path), calibration, standin)
    assert not second.engine.loaded.built and second.artifact == first.artifact
    assert standin.trt.PLATFORM.builds == builds
    # Without the engine, a rebuild reads the calibration table and asks for no batch.
    first.artifact.unlink()
    third = trt_detector(model, options(tmp_path), calibration, standin)
    assert third.engine.loaded.built and standin.trt.PLATFORM.builds == builds + 1
    assert standin.trt.PLATFORM.calibration_batches == batches


def test_a_tensorrt_upgrade_rebuilds_instead_of_loading_the_old_engine(standin, tmp_path, model):
    old = trt_detector(model, options(tmp_path, precision="fp16"), None, standin)
    standin.trt.configure("10.4.1")
    new = trt_detector(model, options(tmp_path, precision="fp16"), None, standin)
    assert new.engine.loaded.built and new.artifact != old.artifact
    assert engines_in(tmp_path) == [new.artifact.name]
    assert standin.trt.read_plan(new.artifact.read_bytes())["version"] == "10.4.1"


def test_another_gpu_rebuilds(standin, tmp_path, model, monkeypatch):
    first = trt_detector(model, options(tmp_path, precision="fp32"), None, standin)
    monkeypatch.setattr(standin.cuda, "COMPUTE_CAPABILITY", (7, 2))
    monkeypatch.setattr(standin.cuda, "DEVICE_NAME", "Xavier (stand-in)")
    second = trt_detector(model, options(tmp_path, precision="fp32"), None, standin)
    assert second.engine.loaded.built and second.artifact != first.artifact


@pytest.mark.parametrize("damage", [b"garbage", None])
def test_a_corrupt_or_incompatible_engine_file_is_rebuilt(standin, tmp_path, model, caplog, damage):
    first = trt_detector(model, options(tmp_path, precision="fp16"), None, standin)
    path = first.artifact
    if damage is None:  # a plan from another TensorRT version under this key's name
        standin.trt.configure("8.6.1")
        other = trt_detector(model, options(tmp_path, precision="fp16"), None, standin)
        damage = other.artifact.read_bytes()
        standin.trt.configure("10.3.0")
    path.write_bytes(damage)
    builds = standin.trt.PLATFORM.builds
    with caplog.at_level(logging.WARNING):
        again = trt_detector(model, options(tmp_path, precision="fp16"), None, standin)
    assert again.engine.loaded.built and standin.trt.PLATFORM.builds == builds + 1
    assert "corrupt or incompatible; rebuilding" in caplog.text
    assert standin.trt.read_plan(path.read_bytes())["version"] == "10.3.0"


def test_no_fast_int8_falls_back_to_fp16_then_fp32(standin, tmp_path, model, calibration):
    standin.trt.configure("10.3.0", fast_int8=False)
    detector = trt_detector(model, options(tmp_path), calibration, standin)
    assert detector.precision == "fp16" and "no fast INT8" in detector.fallback_reasons["int8"]
    standin.trt.configure("10.3.0", fast_int8=False, fast_fp16=False)
    detector = trt_detector(model, options(tmp_path), calibration, standin)
    assert detector.precision == "fp32"
    assert not standin.trt.read_plan(detector.artifact.read_bytes())["fp16"]


def test_int8_without_calibration_data_falls_back_to_fp16(standin, tmp_path, model):
    detector = trt_detector(model, options(tmp_path), None, standin)
    assert detector.precision == "fp16"
    assert "calibrator" in detector.fallback_reasons["int8"]


def test_dla_sets_device_type_core_and_gpu_fallback(standin, tmp_path, model, calibration):
    standin.trt.configure("10.3.0", dla_cores=2)
    detector = trt_detector(model, options(tmp_path, dla_core=1), calibration, standin)
    plan = standin.trt.read_plan(detector.artifact.read_bytes())
    assert plan["device_type"] == int(standin.trt.DeviceType.DLA) and plan["dla_core"] == 1
    assert plan["gpu_fallback"] and plan["int8"]
    assert "-dla1-" in detector.artifact.name


def test_dla_on_a_board_without_dla_ends_on_the_gpu_in_fp32(standin, tmp_path, model, calibration):
    detector = trt_detector(model, options(tmp_path, dla_core=0), calibration, standin)
    assert detector.precision == "fp32" and "-gpu-" in detector.artifact.name
    assert "DLA core 0" in detector.fallback_reasons["int8"]


@pytest.mark.parametrize("version", ["8.6.1", "8.4.3"])
def test_tensorrt_8_network_flags_and_binding_api(standin, tmp_path, model, frames, version):
    standin.trt.configure(version)
    detector = trt_detector(model, options(tmp_path, precision="fp16"), None, standin)
    # 8.5+ has the named-tensor API; 8.4 (JetPack 5.0) only execute_async_v2 with bindings.
    assert detector.engine.runner.tensor_api == (version == "8.6.1")
    reference = create_detector("onnxruntime", model, EngineOptions(precision="fp32", max_batch=4))
    images = [f.image for f in frames[:3]]
    assert_same_detections(detect(detector, images), detect(reference, images))


def test_registry_loads_the_tensorrt_engine(standin, tmp_path, model, monkeypatch):
    monkeypatch.setattr(trt_engine, "import_tensorrt", lambda: standin)
    detector = create_detector("tensorrt", model, options(tmp_path, precision="fp32", max_batch=1))
    assert isinstance(detector.engine, trt_engine.TensorRTEngine) and detector.max_batch == 1


def test_without_bindings_or_execution_provider_the_error_says_so(tmp_path, model, monkeypatch):
    def missing():
        raise ModelError("engine tensorrt: Python bindings missing")

    monkeypatch.setattr(trt_engine, "import_tensorrt", missing)
    with pytest.raises(ModelError, match="execution provider"):
        create_detector("tensorrt", model, options(tmp_path))


@pytest.mark.slow
def test_the_int8_guard_hands_calibration_to_tensorrt_through_the_registry(standin, tmp_path, model, monkeypatch):
    from edge.config import Config, TierConfig
    from edge.detection.int8.guard import load_guarded_detector
    from edge.detection.int8.sets import builtin_frames

    monkeypatch.setattr(trt_engine, "import_tensorrt", lambda: standin)
    write_set(tmp_path / "calibration", "scenes", list(builtin_frames(20)), "test: scenes")
    calibration = {"dir": str(tmp_path / "calibration"), "set_name": "scenes"}
    config = Config(state_dir=tmp_path / "state", calibration=calibration)
    tier = TierConfig(model=MODEL, precision="int8", engine="tensorrt", input=300)
    detector, decision = load_guarded_detector(config, tier, model)
    assert decision.engine == "tensorrt" and decision.chosen == "int8" and decision.accepted
    assert isinstance(detector.engine, trt_engine.TensorRTEngine) and detector.precision == "int8"
    assert decision.model_path == str(detector.artifact) and decision.model_path.endswith(".engine")
    assert standin.trt.PLATFORM.calibration_batches > 0
    assert len(list((tmp_path / "calibration" / "scenes").glob("tensorrt-*.cache"))) == 1
    detector.close()


def test_tensorrt_refuses_an_input_that_follows_the_frame(standin, tmp_path, model):
    with pytest.raises(ModelError, match="builds for one input shape; keep_aspect and coarse_input"):
        trt_detector(model, options(tmp_path, precision="fp32", keep_aspect=True), None, standin)
    with pytest.raises(ModelError, match="builds for one input shape"):
        trt_detector(model, options(tmp_path, precision="fp32", coarse_input=300, input_size=(576, 576)), None, standin)


def test_tensorrt_drops_the_phantom_layers_too(standin, tmp_path, model):
    """At 256 the last predictors are degenerate (the phantom near-full-frame box); the SSD family
    masks them whatever engine runs the graph."""
    square_256 = options(tmp_path, precision="fp32", input_size=(256, 256), max_batch=1)
    detector = trt_detector(model, square_256, None, standin)
    found = detect(detector, [np.zeros((576, 768, 3), np.uint8)])[0]
    heights = found.boxes[:, 3] - found.boxes[:, 1]
    assert not np.any(heights > 0.5 * 576)
    detector.close()
