"""Tier selection per device, config-time validation of input sizes, the measurement cache."""

from dataclasses import replace
from pathlib import Path

import pytest

from edge.config import PLATFORM_CLASSES, Config, PolicyConfig, parse_config
from edge.core.errors import ConfigError
from edge.core.tiers import Tier
from edge.detection.manifest import ModelSpec
from edge.device.hardware import HardwareProfile
from edge.device.tiers import (
    MeasurementCache,
    fit_warning,
    measure_tier,
    predict_capacities,
    select_tiers,
    size_variant,
    validate_tiers,
)

SSD = "ssdlite-mobilenetv2-pedestrian"


def spec(name: str, family: str = "ssd", inputs=(576, 320, 300, 256, 224)) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=family,
        classes=("person",),
        input_size=(300, 300),
        files={},
        supported_inputs=tuple(inputs),
    )


MANIFEST = {SSD: spec(SSD)}
WITH_YOLO = {
    SSD: spec(SSD),
    "yolov8s": spec("yolov8s", "yolo", (640, 416)),
    "yolov8n": spec("yolov8n", "yolo", (640, 416, 320)),
}


def profile(platform: str, **changes) -> HardwareProfile:
    base = HardwareProfile(
        platform=platform,
        model="test",
        arch="aarch64",
        cpu_model="test",
        cpu_cores=4,
        avx2=False,
        avx512_vnni=False,
        avx_vnni=False,
        neon=True,
        dotprod=True,
        memory_total_mb=8000,
        memory_available_mb=6000,
        onnxruntime_version="1.18.0",
        onnxruntime_providers=("CPUExecutionProvider",),
    )
    return replace(base, **changes)


def test_every_platform_class_has_defaults_that_validate():
    policy = PolicyConfig()
    assert set(policy.tiers) == set(PLATFORM_CLASSES)
    validate_tiers(Config.model_validate({}), WITH_YOLO)


def test_cpu_machine_keeps_the_onnxruntime_tiers():
    selection = select_tiers(PolicyConfig(), profile("x86-cpu", arch="x86_64"), MANIFEST)
    assert [(t.input, t.frame_skip) for t in selection.runnable] == [
        (576, 1), (576, 2), (576, 3), (576, 4), (300, 1), (300, 2), (224, 1), (224, 2)
    ]
    assert selection.dropped == ()


def test_orin_without_yolo_or_tensorrt_falls_back_to_onnxruntime_with_reasons():
    selection = select_tiers(PolicyConfig(), profile("jetson-agx-orin"), MANIFEST)
    assert {t.engine for t in selection.runnable} == {"onnxruntime"}
    reasons = {d.name: d.reason for d in selection.dropped}
    assert reasons["yolov8s@640 tensorrt/int8 skip1"] == "model 'yolov8s' is not in the model manifest"


def test_orin_with_tensorrt_and_yolo_runs_the_gpu_tiers_first():
    orin = profile("jetson-agx-orin", tensorrt_version="8.6.2", pycuda=True, dla_cores=2)
    selection = select_tiers(PolicyConfig(), orin, WITH_YOLO)
    assert selection.runnable[0].name == "yolov8s@640 tensorrt/int8 skip1"
    assert selection.dropped == ()


def test_tensorrt_reasons():
    no_gpu = select_tiers(PolicyConfig(), profile("x86-nvidia", arch="x86_64"), WITH_YOLO)
    assert no_gpu.dropped[0].reason == "tensorrt needs an NVIDIA GPU (none found)"
    no_trt = select_tiers(PolicyConfig(), profile("jetson-orin-nano"), WITH_YOLO)
    assert no_trt.dropped[0].reason == "tensorrt needs the tensorrt Python package (not importable)"


def test_dla_tier_dropped_without_dla_cores():
    config = parse_config(
        {
            "policy": {
                "tiers": {
                    "jetson-orin-nano": [
                        {"model": "yolov8n", "engine": "tensorrt", "input": 640, "dla": True},
                        {"model": SSD, "input": 300},
                    ]
                }
            }
        }
    )
    nano = profile("jetson-orin-nano", tensorrt_version="8.6.2", pycuda=True, dla_cores=0)
    selection = select_tiers(config.policy, nano, WITH_YOLO)
    assert selection.dropped[0].reason == "dla requested but this device has no DLA core"
    assert [t.model for t in selection.runnable] == [SSD]


def test_validate_tiers_names_the_key_path():
    config = parse_config(
        {
            "policy": {
                "tiers": {
                    "x86-cpu": [
                        {"model": SSD, "input": 300},
                        {"model": SSD, "input": 256},
                        {"model": SSD, "input": 250},
                    ]
                }
            }
        }
    )
    with pytest.raises(
        ConfigError, match=r"^config.yaml: policy\.tiers\.x86-cpu\[2\]\.input: .*cannot take 250"
    ):
        validate_tiers(config, MANIFEST, source="config.yaml")


def test_models_missing_from_the_manifest_are_not_a_config_error():
    config = parse_config({"policy": {"tiers": {"x86-cpu": [{"model": "yolov8s", "input": 999}]}}})
    validate_tiers(config, MANIFEST)


def test_unknown_platform_class_and_dla_on_onnxruntime_are_refused():
    with pytest.raises(ConfigError, match="unknown platform class 'jetson-thor'"):
        parse_config({"policy": {"tiers": {"jetson-thor": [{"model": SSD}]}}})
    with pytest.raises(ConfigError, match="dla needs engine tensorrt"):
        parse_config({"policy": {"tiers": {"x86-cpu": [{"model": SSD, "dla": True}]}}})


def test_check_config_cli_refuses_bad_input(tmp_path, capsys):
    from edge.commands.cli import main

    path = tmp_path / "config.yaml"
    path.write_text(f"policy:\n  tiers:\n    rpi-5:\n      - {{model: {SSD}, input: 250}}\n")
    assert main(["check-config", "-c", str(path)]) == 2
    assert "policy.tiers.rpi-5[0].input" in capsys.readouterr().err


def test_platform_without_an_entry_borrows_a_fallback():
    config = parse_config({"policy": {"tiers": {"x86-cpu": [{"model": SSD, "input": 300}]}}})
    selection = select_tiers(config.policy, profile("x86-nvidia", arch="x86_64"), MANIFEST)
    assert selection.platform == "x86-cpu" and len(selection.runnable) == 1


def test_measurement_cache_measures_once_per_device(tmp_path: Path):
    tiers = [
        Tier(0, SSD, "int8", "onnxruntime", 300, 1),
        Tier(1, SSD, "int8", "onnxruntime", 300, 2),
        Tier(2, SSD, "int8", "onnxruntime", 256, 2),
    ]
    measured = []

    def measure(tier: Tier) -> float:
        measured.append(tier.index)
        return {300: 14.0, 256: 19.0}[tier.input]

    cache = MeasurementCache(tmp_path / "state" / "tiers.json")
    assert predict_capacities(tiers, measure, cache, "device-a") == [14.0, 14.0, 19.0]
    # 300 skip1 and 300 skip2 are each measured: a reader decodes the skipped frames too.
    assert measured == [0, 1, 2]
    assert predict_capacities(
        tiers, measure, MeasurementCache(tmp_path / "state" / "tiers.json"), "device-a"
    ) == [14.0, 14.0, 19.0]
    assert measured == [0, 1, 2]  # a restart measures nothing
    predict_capacities(tiers[:1], measure, cache, "device-b")
    assert measured == [0, 1, 2, 0]


def test_corrupt_cache_measures_again(tmp_path: Path):
    path = tmp_path / "tiers.json"
    path.write_text("{not json")
    tier = Tier(0, SSD, "int8", "onnxruntime", 300, 1)
    assert predict_capacities([tier], lambda t: 9.0, MeasurementCache(path), "x") == [9.0]
    assert MeasurementCache(path).get("x", tier) == 9.0


def test_measurements_at_another_resolution_are_measured_anew(tmp_path: Path):
    tier = Tier(0, SSD, "int8", "onnxruntime", 300, 1)
    cache = MeasurementCache(tmp_path / "tiers.json")
    assert predict_capacities([tier], lambda t: 60.0, cache, "x", size_variant((640, 360))) == [60.0]
    assert predict_capacities([tier], lambda t: 40.0, cache, "x", size_variant((1280, 720))) == [40.0]
    assert cache.get("x", tier, size_variant((640, 360))) == 60.0
    assert cache.get("x", tier, size_variant((1280, 720))) == 40.0
    assert size_variant((1280, 720), lanes=2) != size_variant((1280, 720))  # measured on the lanes anew


def test_a_warning_when_the_cameras_cannot_fit_at_any_tier():
    tiers = [Tier(0, SSD, "int8", "onnxruntime", 300, 1), Tier(1, SSD, "int8", "onnxruntime", 224, 3)]
    assert fit_warning(tiers, [50.0, 40.0], 120.0, 8) is None  # 224 skip3 covers 120
    warning = fit_warning(tiers, [50.0, 30.0], 180.0, 12)
    assert warning is not None and "\n" not in warning
    assert "12 camera(s) need 180 fps" in warning and "covers about 90 fps" in warning


def test_measure_tier_decodes_frames_at_the_cameras_resolution(tmp_path: Path):
    config = parse_config({"state_dir": str(tmp_path)})
    tier = Tier(0, SSD, "fp32", "onnxruntime", 224, 1)
    small = measure_tier(config, tier, (320, 180), frames=3)
    assert small > 0


def test_measure_tier_decodes_the_skipped_frames_too_on_each_lane(tmp_path: Path, monkeypatch):
    """At frame-skip 3 a reader decodes three frames per analysed one; the measurement does too,
    on each of its lanes, each lane with its own clip reader."""
    import edge.device.tiers as tiers_module

    config = parse_config({"state_dir": str(tmp_path)})
    calls = {"grab": 0, "retrieve": 0, "detect": 0, "captures": 0}
    open_clip = tiers_module._open_clip

    class Counting:
        def __init__(self, capture):
            self._capture = capture
            calls["captures"] += 1

        def grab(self):
            calls["grab"] += 1
            return self._capture.grab()

        def retrieve_picture(self):
            calls["retrieve"] += 1
            return self._capture.retrieve_picture()

        def release(self):
            self._capture.release()

    real_detect = tiers_module.detect

    def counting_detect(detector, frames):
        calls["detect"] += 1
        return real_detect(detector, frames)

    monkeypatch.setattr(tiers_module, "_open_clip", lambda video, threads: Counting(open_clip(video, threads)))
    monkeypatch.setattr(tiers_module, "detect", counting_detect)
    tier = Tier(0, SSD, "int8", "onnxruntime", 224, 3)
    assert measure_tier(config, tier, (320, 180), frames=4, lanes=2) > 0
    assert calls["captures"] == 2
    measured = calls["detect"] - 2  # less one warm-up detection per lane
    assert measured == 4
    # Three frames decoded per analysed one (the two skipped frames are never converted).
    assert calls["grab"] == 2 + 3 * measured
    assert calls["retrieve"] == 2 + measured
