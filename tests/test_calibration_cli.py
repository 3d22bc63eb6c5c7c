"""`video-analysis calibrate` and `build-engine` end to end on this machine (ONNX Runtime)."""

import cv2
import pytest
import yaml

from edge.commands.cli import main
from edge.detection.int8.sets import builtin_frames, load_set


def write_config(tmp_path, **calibration):
    path = tmp_path / "config.yaml"
    raw = {
        "state_dir": str(tmp_path / "state"),
        "calibration": {"dir": str(tmp_path / "calibration"), **calibration},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_calibrate_from_a_folder_collects_quantises_and_summarises(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for index, frame in enumerate(builtin_frames(30)):
        cv2.imwrite(str(folder / f"{index:03d}.png"), frame.image)
        cv2.imwrite(str(folder / f"{index:03d}-copy.png"), frame.image)  # duplicates are dropped
    config = write_config(tmp_path)
    assert (
        main(["calibrate", "-c", str(config), "--from", str(folder), "--name", "lobby", "--frames", "24"])
        == 0
    )
    out, err = capsys.readouterr()
    calibration_set = load_set(tmp_path / "calibration" / "lobby")
    assert 10 <= len(calibration_set.frames) <= 24
    assert len({f.origin.replace("-copy", "") for f in calibration_set.frames}) == len(calibration_set.frames)
    assert "collecting:" in err and "distinct" in err
    assert "calibration set lobby" in out and "agreement" in out
    summary = [line for line in out.splitlines() if line.startswith("ssdlite")]
    assert summary and "int8" in summary[0]
    assert list((tmp_path / "state" / "cache" / "quantized").glob("*.onnx"))


@pytest.mark.slow
def test_calibrate_from_a_video(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    frames = [frame.image for frame in builtin_frames(12)]
    for frame in frames:
        for _ in range(5):
            writer.write(cv2.resize(frame, (320, 240)))
    writer.release()
    config = write_config(tmp_path)
    assert main(["calibrate", "-c", str(config), "--from", str(video), "--frames", "8"]) == 0
    calibration_set = load_set(tmp_path / "calibration" / "clip")
    assert 4 <= len(calibration_set.frames) <= 8
    assert all("clip.mp4@" in f.origin for f in calibration_set.frames)


@pytest.mark.slow
def test_build_engine_uses_the_builtin_set_when_none_exists(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["build-engine", "-c", str(config)]) == 0
    out, _ = capsys.readouterr()
    assert (tmp_path / "calibration" / "builtin" / "manifest.json").is_file()
    assert "agreement" in out and "int8" in out


def test_calibrate_with_a_missing_source_is_a_usage_error(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["calibrate", "-c", str(config), "--from", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
