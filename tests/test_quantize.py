"""Cached ORT static quantisation and the calibration-set plumbing it relies on."""

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from edge.detection.families.ssd import preprocess_ssd
from edge.detection.int8.quantize import QuantizeSettings, quantize_cached
from edge.detection.int8.sets import (
    CandidateFrame,
    Deduplicator,
    FrameTensorReader,
    collect,
    dhash,
    hamming,
    load_set,
    split_frames,
    write_set,
)
from edge.detection.manifest import get_model

MODEL = "ssdlite-mobilenetv2-pedestrian"


def noise_frame(seed, shape=(120, 160, 3)):
    return np.random.RandomState(seed).randint(0, 255, shape, np.uint8)


def test_dhash_ignores_small_changes_and_sees_scene_changes():
    base = noise_frame(1)
    brighter = np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8)
    assert hamming(dhash(base), dhash(brighter)) <= 2
    assert hamming(dhash(base), dhash(noise_frame(2))) > 10


def test_collect_drops_duplicates_and_spreads_over_the_sequence():
    scenes = [noise_frame(seed) for seed in range(6)]
    candidates = [CandidateFrame(scenes[i // 5], f"#{i}") for i in range(30)]  # 6 scenes x 5 copies
    kept = collect(candidates, wanted=4)
    assert len(kept) == 4
    assert len({dhash(k.image) for k in kept}) == 4
    assert kept[0].origin == "#0" and kept[-1].origin == "#25"  # first and last scene
    dedupe = Deduplicator()
    assert dedupe.accept(scenes[0]) and not dedupe.accept(scenes[0].copy())


def test_set_round_trip_hash_and_holdout_split(tmp_path):
    frames = [
        CandidateFrame(noise_frame(i), f"#{i}", ((1.0, 2.0, 3.0, 4.0),) if i % 2 else None) for i in range(10)
    ]
    written = write_set(tmp_path, "site", frames, "test")
    loaded = load_set(tmp_path / "site")
    assert [f.origin for f in loaded.frames] == [f"#{i}" for i in range(10)]
    assert loaded.frames[1].labels == ((1.0, 2.0, 3.0, 4.0),) and loaded.frames[0].labels is None
    assert loaded.content_hash() == written.content_hash()
    calibrate, held = split_frames(loaded.frames, 0.2)
    assert [f.origin for f in held] == ["#4", "#9"] and len(calibrate) == 8
    changed = write_set(tmp_path, "site", frames[:9], "test")
    assert load_set(tmp_path / "site").content_hash() == changed.content_hash() != written.content_hash()


def test_reader_feeds_preprocessed_frames_then_none(tmp_path):
    written = write_set(tmp_path, "s", [CandidateFrame(noise_frame(i), str(i)) for i in range(3)], "test")
    reader = FrameTensorReader(written.frames, lambda images: preprocess_ssd(images, (300, 300)), "images")
    batches = list(reader)
    assert len(batches) == 3 and batches[0]["images"].shape == (1, 300, 300, 3)
    assert batches[0]["images"].dtype == np.uint8
    assert reader.get_next() is None
    reader.rewind()
    assert reader.get_next() is not None


def picklable_reader(frames):
    return functools.partial(FrameTensorReader, frames, functools.partial(preprocess_ssd, size=(300, 300)))


@pytest.fixture(scope="module")
def fp32_path():
    return get_model(MODEL).file("fp32")


@pytest.mark.slow
def test_quantisation_is_cached_by_model_set_and_version(tmp_path, fp32_path):
    written = write_set(
        tmp_path / "cal", "s", [CandidateFrame(noise_frame(i, (300, 300, 3)), str(i)) for i in range(4)], "t"
    )
    reader = picklable_reader(written.frames)  # quantised in a child process
    first = quantize_cached(fp32_path, MODEL, "hash-a", (300, 300), reader, tmp_path / "cache")
    assert not first.reused
    assert first.key.model_sha256 == get_model(MODEL).files["fp32"].sha256
    import onnx

    ops = {node.op_type for node in onnx.load(str(first.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops

    again = quantize_cached(fp32_path, MODEL, "hash-a", (300, 300), reader, tmp_path / "cache")
    assert again.reused and again.path == first.path and again.seconds == 0.0

    new_set = quantize_cached(fp32_path, MODEL, "hash-b", (300, 300), reader, tmp_path / "cache")
    assert not new_set.reused and new_set.path != first.path
    assert not first.path.exists()  # superseded

    per_tensor = QuantizeSettings(per_channel=False)
    assert per_tensor.tag != QuantizeSettings().tag
    assert Path(new_set.path).parent == tmp_path / "cache" / "quantized"


@pytest.mark.slow
def test_an_onnxruntime_upgrade_recalibrates(tmp_path, fp32_path, monkeypatch):
    written = write_set(
        tmp_path / "cal", "s", [CandidateFrame(noise_frame(i, (300, 300, 3)), str(i)) for i in range(2)], "t"
    )
    reader = picklable_reader(written.frames)
    before = quantize_cached(fp32_path, MODEL, "h", (300, 300), reader, tmp_path / "cache")
    monkeypatch.setattr("edge.detection.int8.quantize.onnxruntime_version", lambda: "99.0.0")
    after = quantize_cached(fp32_path, MODEL, "h", (300, 300), reader, tmp_path / "cache")
    assert not after.reused and after.key.onnxruntime_version == "99.0.0" and after.path != before.path


def reader_recording_pid(pid_file, input_name):
    """A calibration reader with no frames that writes down which process asked for it."""
    Path(pid_file).write_text(str(os.getpid()))
    return FrameTensorReader([], functools.partial(preprocess_ssd, size=(300, 300)), input_name)


def test_quantisation_runs_in_a_child_process_and_its_errors_reach_the_caller(tmp_path, fp32_path):
    from edge.detection.int8.quantize import quantize_model_in_child

    pid_file = tmp_path / "pid"
    reader = functools.partial(reader_recording_pid, str(pid_file))
    with pytest.raises(ValueError, match="No data is collected"):
        quantize_model_in_child(fp32_path, tmp_path / "int8.onnx", reader, QuantizeSettings())
    assert int(pid_file.read_text()) != os.getpid()
    assert not (tmp_path / "int8.onnx").exists()
