"""Journald-friendly logging: `<N>` priority prefixes and no timestamp under JOURNAL_STREAM,
timestamps elsewhere, log_level honoured, JSON lines, credentials masked in every line."""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.config import PLATFORM_CLASSES
from edge.runtime.logs import setup_logging, stream_is_journal, syslog_priority

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _journal_env(stream) -> dict:
    status = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}


def _emit(tmp_path: Path, fmt: str, journal: bool, level: str = "debug") -> str:
    path = tmp_path / "log.txt"
    with open(path, "w") as stream:
        setup_logging(level, fmt, environ=_journal_env(stream) if journal else {}, stream=stream)
        log = logging.getLogger("edge.test")
        log.debug("debug line")
        log.info("connected to %s", "rtsp://admin:S3cret@10.0.0.5/stream1")
        log.warning("warning line")
        log.error("error line")
    setup_logging("info", stream=sys.stderr)
    return path.read_text()


def test_journal_stream_gives_priority_prefixes_and_no_timestamp(tmp_path: Path) -> None:
    lines = _emit(tmp_path, "text", journal=True).splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>"]
    assert not any(TIMESTAMP.search(line) for line in lines)
    assert lines[1] == "<6>edge.test: connected to rtsp://admin:***@10.0.0.5/stream1"


def test_outside_the_journal_lines_carry_a_timestamp_and_level(tmp_path: Path) -> None:
    lines = _emit(tmp_path, "text", journal=False).splitlines()
    assert len(lines) == 4 and all(TIMESTAMP.match(line) for line in lines)
    assert " ERROR edge.test: error line" in lines[3] and not lines[3].startswith("<")
    assert "S3cret" not in "".join(lines)


def test_a_journal_stream_naming_another_file_is_not_the_journal(tmp_path: Path) -> None:
    with open(tmp_path / "a", "w") as first, open(tmp_path / "b", "w") as second:
        assert stream_is_journal(_journal_env(first), first)
        assert not stream_is_journal(_journal_env(first), second)
        assert not stream_is_journal({"JOURNAL_STREAM": "garbage"}, first)


def test_json_lines(tmp_path: Path) -> None:
    plain = [json.loads(line) for line in _emit(tmp_path, "json", journal=False).splitlines()]
    assert [entry["level"] for entry in plain] == ["debug", "info", "warning", "error"]
    assert all("ts" in entry for entry in plain) and plain[1]["message"].endswith("admin:***@10.0.0.5/stream1")
    journal = _emit(tmp_path, "json", journal=True).splitlines()
    assert journal[3].startswith("<3>")
    entry = json.loads(journal[3][3:])
    assert entry["priority"] == 3 and "ts" not in entry


def test_level_filters(tmp_path: Path) -> None:
    lines = _emit(tmp_path, "text", journal=True, level="warning").splitlines()
    assert [line[:3] for line in lines] == ["<4>", "<3>"]
    with pytest.raises(ValueError, match="log level 'loud'"):
        setup_logging("loud")


def test_syslog_priorities() -> None:
    assert [syslog_priority(level) for level in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]


def _run_with_level(tmp_path: Path, level: str) -> str:
    """`run` on a config whose only tier cannot run here (TensorRT): it logs the dropped tier at
    info, then refuses to start (exit 2) before measuring anything."""
    trt_only = [{"model": "ssdlite-mobilenetv2-pedestrian", "engine": "tensorrt", "precision": "fp16"}]
    config = {
        "log_level": level,
        "state_dir": str(tmp_path / "state"),
        "cameras": [{"id": "cam", "source": "rtsp://admin:S3cret@127.0.0.1:9/stream"}],
        "policy": {"tiers": {name: trt_only for name in PLATFORM_CLASSES}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / f"stderr-{level}.txt"
    with open(out, "w") as stream:
        env = dict(os.environ, **_journal_env(stream))
        done = subprocess.run(
            [sys.executable, "-m", "edge.commands.cli", "run", "-c", str(path)], stderr=stream, env=env, timeout=120
        )
    text = out.read_text()
    assert done.returncode == 2, text
    assert "no tier of" in text and "S3cret" not in text
    return text


@pytest.mark.slow
def test_run_honours_the_configured_log_level_under_the_journal(tmp_path: Path) -> None:
    assert "<6>edge.runtime.appliance: tier " in _run_with_level(tmp_path, "info")
    assert "<6>" not in _run_with_level(tmp_path, "error")
