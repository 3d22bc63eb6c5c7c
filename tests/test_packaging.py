"""The runtime finds its assets as package data, and `pip install` of the wheel gives a working
appliance: a fresh venv in a temp dir (no checkout on sys.path, no demo extra) runs
`video-analysis detect` on a photo and `video-analysis run` on a file source with a real broker."""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Dict, Iterator

import cv2
import pytest
import yaml

from edge.assets import asset_dir
from edge.detection.int8.sets import BUILTIN_SET, builtin_set, ensure_builtin_set
from edge.detection.manifest import DEFAULT_MODELS_DIR, load_manifest
from tests.mqtt_fixtures import Recorder, wait_for

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_MODULES = [
    "edge.commands.cli",
    "edge.commands.run",
    "edge.commands.detect",
    "edge.commands.calibrate",
    "edge.runtime.appliance",
    "edge.detection.int8.guard",
]


def test_models_are_package_data() -> None:
    assert DEFAULT_MODELS_DIR == asset_dir("models")
    assert DEFAULT_MODELS_DIR.is_relative_to(Path(sys.modules["edge"].__file__).parent)
    manifest = load_manifest()
    assert manifest, "no model in the packaged manifest"
    for spec in manifest.values():
        for role in spec.files:
            assert spec.file(role).is_file()  # verifies the sha256 too


def test_builtin_calibration_set_is_small_labelled_data() -> None:
    shipped = builtin_set()
    assert shipped.directory == asset_dir("calibration") / BUILTIN_SET
    assert 20 <= len(shipped.frames) <= 100
    assert sum(f.path.stat().st_size for f in shipped.frames) < 5e6
    labelled = [f for f in shipped.frames if f.labels is not None]
    assert len(labelled) >= len(shipped.frames) // 2 and any(f.labels for f in labelled)


def test_builtin_set_is_copied_with_the_same_frames(tmp_path: Path) -> None:
    messages = []
    copied = ensure_builtin_set(tmp_path, progress=messages.append)
    assert copied.directory == tmp_path / BUILTIN_SET
    assert copied.content_hash() == builtin_set().content_hash()
    assert messages and str(tmp_path) in messages[0]
    # A second call reuses the copy.
    again = ensure_builtin_set(tmp_path, progress=messages.append)
    assert again.directory == copied.directory and len(messages) == 1


def test_runtime_imports_neither_the_devkit_nor_the_demo_extra() -> None:
    code = (
        "import sys\n"
        f"for name in {RUNTIME_MODULES!r}: __import__(name)\n"
        "from edge.detection.int8.sets import builtin_frames\n"
        "assert len(list(builtin_frames(4))) == 4\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'skimage')"
        " or m.startswith('edge.devkit'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


# --- the installed wheel ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv (no system site-packages) with the wheel built from this checkout installed."""
    work = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    wheels = list((work / "dist").glob("video_analysis-*.whl"))
    assert len(wheels) == 1
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(str(work / "venv"))
    install = subprocess.run(
        # OpenCV is the `opencv` extra (a Jetson keeps JetPack's own OpenCV instead).
        [str(work / "venv" / "bin" / "pip"), "install", "-q", f"{wheels[0]}[opencv]"], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr
    yield work / "venv"


def clean_env() -> Dict[str, str]:
    """The environment without anything that would put the checkout on the path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


@pytest.mark.slow
def test_installed_package_has_no_checkout_and_no_demo_extra(installed: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.util, json, edge\n"
        "print(json.dumps({'edge': edge.__file__, 'demo': [m for m in ('matplotlib', 'skimage')"
        " if importlib.util.find_spec(m)]}))"
    )
    result = subprocess.run(
        [str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert Path(facts["edge"]).is_relative_to(installed) and facts["demo"] == []


@pytest.mark.slow
def test_installed_detect_finds_the_person_in_a_photo(installed: Path, tmp_path: Path) -> None:
    photo = next(f.path for f in builtin_set().frames if f.origin == "matplotlib:grace_hopper")
    result = subprocess.run(
        [str(installed / "bin" / "video-analysis"), "detect", str(photo), "--json"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    detections = json.loads(result.stdout.splitlines()[0])["detections"]
    assert [d["class"] for d in detections] == ["person"] and detections[0]["score"] > 0.9


def write_clip(path: Path, seconds: float, fps: int = 10) -> Path:
    """A short MP4 of a photograph of a person drifting across the frame."""
    photo = cv2.imread(str(next(f.path for f in builtin_set().frames if f.origin == "matplotlib:grace_hopper")))
    person = cv2.resize(photo, (160, 180))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    for index in range(int(seconds * fps)):
        frame = cv2.resize(photo, (640, 360)) // 4
        x = 20 + index * 10
        frame[160:340, x : x + 160] = person
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.slow
def test_installed_run_publishes_counts_and_exits_when_the_file_ends(
    installed: Path, tmp_path: Path, mosquitto_broker
) -> None:
    video = write_clip(tmp_path / "clip.mp4", seconds=4)
    config = {
        "device_id": "wheel",
        "state_dir": str(tmp_path / "state"),
        "cameras": [{"id": "cam", "source": str(video), "target_fps": 10}],
        "counts": {"window_s": 1},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto_broker.port, "acks": False},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    recorder = Recorder(mosquitto_broker, ["va/wheel/cam/counts"])
    try:
        result = subprocess.run(
            [str(installed / "bin" / "video-analysis"), "run", "-c", str(config_path)],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        counts = wait_for(lambda: recorder.on("/counts"), 10)
    finally:
        recorder.close()
    bodies = [json.loads(message.payload) for message in counts]
    assert all(body["device"] == "wheel" and body["camera"] == "cam" for body in bodies)
    assert sum(body["frames"] for body in bodies) > 0
