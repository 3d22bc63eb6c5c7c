"""Sub-streams, decode options and the pacing the pipeline gives its sources."""

from dataclasses import replace
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.core.errors import ConfigError
from edge.runtime.lifecycle import Appliance
from edge.runtime.pipeline import DECODED_LATENCY, LATENCY, Pipeline
from tests.runtime_fakes import FastSource, FixedDetector, fake_appliance, three_cameras


class _Counting:
    def __init__(self) -> None:
        self.updates = 0

    def update(self, frame, detections, seconds) -> None:
        self.updates += 1

    def poll(self, now, status, final=False) -> None:
        pass


def test_detect_source_is_the_stream_analysed_with_the_cameras_credentials(tmp_path: Path) -> None:
    secret = tmp_path / "cam"
    secret.write_text("viewer:s3cret\n")
    camera = parse_config(
        {
            "cameras": [
                {
                    "id": "c",
                    "source": "rtsp://cam.local/main",
                    "detect_source": "rtsp://cam.local/sub",
                    "credentials_file": str(secret),
                }
            ]
        }
    ).cameras[0]
    assert camera.source_url() == "rtsp://viewer:s3cret@cam.local/main"
    assert camera.analysed_url() == "rtsp://viewer:s3cret@cam.local/sub"
    plain = parse_config({"cameras": [{"id": "d", "source": "/data/a.mp4"}]}).cameras[0]
    assert plain.analysed_url() == "/data/a.mp4"


def test_detect_source_with_credentials_in_its_url_is_refused(tmp_path: Path) -> None:
    data = {"id": "c", "source": "rtsp://cam/main", "detect_source": "rtsp://u:p@cam/sub", "credentials_file": "x"}
    with pytest.raises(ConfigError, match="detect_source URL holds credentials too"):
        parse_config({"cameras": [data]})


def test_decode_threads_default_and_bounds() -> None:
    assert parse_config({}).decode.threads == 1
    with pytest.raises(ConfigError, match="decode.threads"):
        parse_config({"decode": {"threads": -1}})


@pytest.mark.slow
def test_the_pipeline_paces_its_sources_and_repaces_them_on_a_tier_change() -> None:
    config = parse_config({"cameras": [{"id": "a", "source": "x.mp4", "target_fps": 10.0}]})
    source = FastSource("a", fps=10.0, frames=30)
    analyser = _Counting()
    pipeline = Pipeline([(config.cameras[0], source, analyser)], FixedDetector(), frame_skip=2)
    assert source.interval_s == pytest.approx(0.2)
    pipeline.apply_tier(FixedDetector(), 3, "slower")
    assert source.interval_s == pytest.approx(0.3)
    pipeline.start()
    assert pipeline.join(timeout=30)
    pipeline.stop()
    assert analyser.updates > 0
    # Every analysed frame has its read→counts latency (the fake's frames have no read time: 0).
    summary = pipeline.timer.summary_ms()
    assert set(summary["analysis"]) == {"mean", "p50", "p95", "p99", "n"}
    assert summary["analysis"]["n"] == analyser.updates
    assert LATENCY not in summary and DECODED_LATENCY not in summary


def test_the_capacity_warning_is_in_telemetry_only_when_the_cameras_cannot_fit() -> None:
    appliance = fake_appliance(three_cameras(), [])
    assert "capacity_warning" not in appliance.telemetry().to_wire()
    warning = "3 camera(s) need 30 fps but the fastest tier (t) covers about 20 fps on this device: ..."
    crowded = Appliance(replace(appliance.parts, capacity_warning=warning), appliance.precision)
    assert crowded.telemetry().to_wire()["capacity_warning"] == warning
