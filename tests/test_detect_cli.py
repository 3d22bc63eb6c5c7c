"""`video-analysis detect`: finds the person, prints one JSON object per frame, and fails with
the documented exit codes on a missing or corrupt model and on a file that is not a video."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.commands.cli import main
from edge.detection.manifest import DEFAULT_MODELS_DIR
from edge.detection.nms import box_iou

GROUND_TRUTH = json.loads((Path(__file__).parent / "images" / "ground_truth.json").read_text())["images"]
INT8_FILE = "ssdlite_mobilenetv2_pedestrian_int8.onnx"


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    import skimage.data

    path = tmp_path_factory.mktemp("images") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def config_with_models(tmp_path: Path, models_dir: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"models_dir: {models_dir}\n")
    return config


def copy_models(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for path in DEFAULT_MODELS_DIR.iterdir():
        if path.suffix in (".json", ".onnx", ".npy"):
            shutil.copy(path, models / path.name)
    return models


def test_detect_json_finds_the_person(astronaut_png, tmp_path, capsys):
    config = config_with_models(tmp_path, DEFAULT_MODELS_DIR)
    assert main(["detect", str(astronaut_png), "--json", "-c", str(config)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["frame"] == 0
    best = max(record["detections"], key=lambda d: d["score"])
    assert best["class"] == "person" and best["score"] > 0.5
    truth = np.array(GROUND_TRUTH["astronaut"]["persons"][0]["box"], np.float32)
    assert box_iou(truth, np.array([best["box"]], np.float32))[0] >= 0.5


def test_detect_table_without_json(astronaut_png, tmp_path, capsys):
    config = config_with_models(tmp_path, DEFAULT_MODELS_DIR)
    assert main(["detect", str(astronaut_png), "-c", str(config), "--tier", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("frame 0: ") and "person" in out


def test_detect_video_prints_one_object_per_frame(tmp_path, capsys):
    import skimage.data

    video = tmp_path / "clip.avi"
    frame = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (320, 320))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 320))
    for _ in range(5):
        writer.write(frame)
    writer.release()
    config = config_with_models(tmp_path, DEFAULT_MODELS_DIR)
    assert main(["detect", str(video), "--json", "-c", str(config)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2, 3, 4]
    assert all(any(d["class"] == "person" for d in r["detections"]) for r in records)


def test_missing_model_file_exits_3(astronaut_png, tmp_path, capsys):
    models = copy_models(tmp_path)
    (models / INT8_FILE).unlink()
    assert main(["detect", str(astronaut_png), "-c", str(config_with_models(tmp_path, models))]) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and INT8_FILE in err and "missing" in err


def test_corrupt_model_file_exits_3(astronaut_png, tmp_path, capsys):
    models = copy_models(tmp_path)
    data = bytearray((models / INT8_FILE).read_bytes())
    data[1000:1100] = bytes(100)
    (models / INT8_FILE).write_bytes(bytes(data))
    assert main(["detect", str(astronaut_png), "-c", str(config_with_models(tmp_path, models))]) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "corrupt" in err


def test_text_file_named_mp4_exits_4(tmp_path, capsys):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    assert main(["detect", str(fake), "-c", str(config_with_models(tmp_path, DEFAULT_MODELS_DIR))]) == 4
    err = capsys.readouterr().err.strip()
    assert err == f"video-analysis: error: {fake}: not an image or a video that OpenCV can decode"


def test_missing_input_file_exits_4(tmp_path, capsys):
    absent = tmp_path / "absent.jpg"
    assert main(["detect", str(absent), "-c", str(config_with_models(tmp_path, DEFAULT_MODELS_DIR))]) == 4
    assert "no such file" in capsys.readouterr().err


def test_tier_out_of_range_exits_2(astronaut_png, tmp_path, capsys):
    config = config_with_models(tmp_path, DEFAULT_MODELS_DIR)
    assert main(["detect", str(astronaut_png), "-c", str(config), "--tier", "9"]) == 2
    assert "--tier 9" in capsys.readouterr().err


def test_absent_default_config_means_defaults_but_absent_named_config_exits_2(
    astronaut_png, tmp_path, capsys
):
    from edge.commands.detect import load_detect_config
    from edge.config import DEFAULT_CONFIG_PATH

    if not DEFAULT_CONFIG_PATH.exists():
        assert load_detect_config(DEFAULT_CONFIG_PATH).detector.score_threshold == 0.3
    assert main(["detect", str(astronaut_png), "-c", str(tmp_path / "absent.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
