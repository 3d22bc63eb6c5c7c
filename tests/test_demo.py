"""`video-analysis demo` end to end: a real private mosquitto, the aggregator's ingest on
SQLite, the daemon on generated scenes played in real time."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # integration: more than a few seconds


def test_demo_runs_the_whole_system(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    for _ in range(2):  # a second run in the same folder reports that run alone
        result = subprocess.run(
            [sys.executable, "-m", "edge.commands.cli", "demo", "--seconds", "12", "--cameras", "2", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        assert "summary" in result.stdout
        summary = json.loads((out / "summary.json").read_text())
        assert summary["stored_messages"] > 0
        for camera in summary["cameras"].values():
            # Everything counted on the device reached the aggregator, once.
            assert camera["stored_by_aggregator"] == camera["counted"]
            assert Path(camera["heatmap_png"]).is_file()
        assert "spool drained" in result.stdout
