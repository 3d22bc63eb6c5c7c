"""The config schema: the documented default validates; bad input gives one line naming the key path."""

import subprocess
import sys
from pathlib import Path

import pytest

from edge.commands.cli import main
from edge.config import Config, load_config, parse_config, read_secret
from edge.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_documented_default_validates() -> None:
    config = load_config(ROOT / "config.yaml")
    assert config.cameras[0].lines[0].id == "door"
    assert config.counts.window_s == 10


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"camras": []}, "camras: unknown key"),
        ({"detector": {"max_batch": "lots"}}, "detector.max_batch: Input should be a valid integer"),
        (
            {"cameras": [{"id": "a", "source": "x", "lines": [{"id": "l", "points": [[0, 0]]}]}]},
            "cameras[0].lines[0].points: expected 2 points",
        ),
        (
            {
                "cameras": [
                    {"id": "a", "source": "x", "zones": [{"id": "z", "polygon": [[0, 0], [2, 0], [0, 1]]}]}
                ]
            },
            "cameras[0].zones[0].polygon: point (2.0, 0.0) outside 0..1",
        ),
        ({"cameras": [{"id": "a", "source": "x"}, {"id": "a", "source": "y"}]}, "duplicate camera id 'a'"),
        ({"spool": {"full_policy": "explode"}}, "spool.full_policy"),
        ({"mqtt": {"prefix": "va/#"}}, "mqtt.prefix: 'va/#': expected one topic level"),
        ({"mqtt": {"prefix": "site/va"}}, "mqtt.prefix: 'site/va': expected one topic level"),
        ({"mqtt": {"prefix": "$SYS"}}, "mqtt.prefix: '$SYS'"),
        ({"mqtt": {"homeassistant": {"prefix": "ha/+"}}}, "mqtt.homeassistant.prefix: 'ha/+': expected a topic prefix"),
        ({"mqtt": {"homeassistant": {"prefix": "ha//x"}}}, "mqtt.homeassistant.prefix"),
        ({"device_id": "d" * 65}, "device_id: 'ddd"),
        ({"device_id": ".hidden"}, "not starting with '.'"),
        ({"cameras": [{"id": "a+b", "source": "x"}]}, "cameras[0].id: 'a+b': expected 1-64 characters"),
        (
            {"cameras": [{"id": "a", "source": "x", "zones": [{"id": "q'", "polygon": [[0, 0], [1, 0], [1, 1]]}]}]},
            "cameras[0].zones[0].id",
        ),
        (
            {"cameras": [{"id": "a", "source": "x", "lines": [{"id": "l", "points": [[0, 0], [1, 1]]}] * 2}]},
            "cameras[0]: duplicate line id 'l'",
        ),
    ],
)
def test_bad_config_names_the_key_path(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw, "site.yaml")
    message = str(excinfo.value)
    assert message.startswith("site.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_ids_and_prefixes_that_fit_topics_are_accepted() -> None:
    mqtt = {"prefix": "va-2", "homeassistant": {"prefix": "home/ha"}}
    config = parse_config({"device_id": "site.edge-01", "mqtt": mqtt})
    assert (config.device_id, config.mqtt.prefix) == ("site.edge-01", "va-2")
    assert config.mqtt.homeassistant.prefix == "home/ha"


def test_every_field_is_described() -> None:
    def walk(model: type) -> None:
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            assert field.description, f"{model.__name__}.{name} has no description"
            annotation = field.annotation
            for candidate in getattr(annotation, "__args__", ()) + (annotation,):
                if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                    walk(candidate)

    walk(Config)


def test_check_config_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check-config", "-c", str(ROOT / "config.yaml")]) == 0
    assert "device_id: edge-01" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - id: cam\n    source: x\n    target_fps: -3\n")
    assert main(["check-config", "-c", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"video-analysis: error: {bad}: cameras[0].target_fps: Input should be greater than 0"
    assert main(["check-config", "-c", str(tmp_path / "missing.yaml")]) == 2
    (tmp_path / "broken.yaml").write_text("cameras: [\n")
    assert main(["check-config", "-c", str(tmp_path / "broken.yaml")]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_console_script_reports_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: {nms_iou: 3}\n")
    result = subprocess.run(
        [sys.executable, "-m", "edge.commands.cli", "check-config", "-c", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_secret_from_file_and_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    assert read_secret(tmp_path / "pw") == "s3cret"
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "mqtt-password").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert read_secret(Path("mqtt-password")) == "from-systemd"
    with pytest.raises(ConfigError, match="cannot read secret"):
        read_secret(tmp_path / "nope")
