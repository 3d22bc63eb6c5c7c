"""`video-analysis demo`: the whole system on one machine.

A private mosquitto on a free loopback port, the aggregator's ingest on SQLite, and the
daemon (probe → adaptive tier → detection → tracking → analytics → spool → MQTT) on generated
scenes with known ground truth, played in real time as cameras. Prints tier changes and
counts as they happen, then a summary that compares the counts with the ground truth and
with what the aggregator stored, and writes a heatmap overlay PNG per camera.
"""

import argparse
import getpass
import json
import logging
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import cv2
import numpy as np

from contract import KIND_COUNTS
from edge.commands.demo_totals import WindowTotals
from edge.commands.overlay import overlay_with_geometry
from edge.config import Config, parse_config
from edge.core.errors import ConfigError
from edge.core.policy import TierChange
from edge.detection.pictures import as_bgr
from edge.devkit.synthetic import Scene, ground_truth, standard_scenes, write_scene
from edge.runtime.analysis import ClosedWindow
from edge.runtime.appliance import build_appliance
from edge.runtime.lifecycle import Appliance

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_broker(workdir: Path) -> Iterator[int]:
    """mosquitto on 127.0.0.1:<free port>, no persistence, stopped on exit."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise ConfigError("mosquitto not found: run ./setup.sh local (apt-get install mosquitto)")
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest file {workdir / 'mosquitto.log'}\n"
    )
    with open(workdir / "mosquitto.out", "wb") as output:
        process = subprocess.Popen(
            [binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise ConfigError(f"mosquitto exited at start; see {workdir / 'mosquitto.log'}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise ConfigError(f"mosquitto did not listen on port {port}") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def demo_config(scenes: List[Scene], videos: List[Path], out: Path, port: int, seconds: float) -> Config:
    cameras = []
    for index, (scene, video) in enumerate(zip(scenes, videos)):
        cameras.append(
            {
                "id": f"cam{index + 1}",
                "source": str(video),
                "target_fps": scene.fps,
                "realtime": True,
                "loop": seconds > scene.duration_s,
                "lines": [{"id": line.id, "points": [list(p) for p in line.points]} for line in scene.lines],
                "zones": [{"id": zone.id, "polygon": [list(p) for p in zone.polygon]} for zone in scene.zones],
            }
        )
    return parse_config(
        {
            "device_id": "demo-edge",
            "state_dir": str(out / "state"),
            "cameras": cameras,
            "counts": {"window_s": 5},
            "heatmap": {"window_s": 10},
            "mqtt": {"host": "127.0.0.1", "port": port, "telemetry_interval_s": 5},
        },
        "demo config",
    )


def _print_counts(closed: ClosedWindow) -> None:
    body = closed.body
    if closed.kind != KIND_COUNTS or body["frames"] == 0:
        return
    people = body["objects"].get("person", {})
    lines = " ".join(f"{name} in={c['in']} out={c['out']}" for name, c in body["lines"].items())
    zones = " ".join(f"{name} now={c['now']} entered={c['entered']}" for name, c in body["zones"].items())
    stamp = time.strftime("%H:%M:%S", time.localtime(closed.window[1]))
    print(
        f"  [{stamp}] {closed.camera}: {body['frames']} frames at {body['fps']:.1f} fps, "
        f"people now={people.get('now', 0)} max={people.get('max', 0)} | {lines} | {zones}",
        flush=True,
    )


def _print_tier(change: TierChange) -> None:
    print(f"  tier: {change}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    if not args.debug:
        logging.getLogger().setLevel(logging.WARNING)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cameras = max(1, int(args.cameras))
    all_scenes = standard_scenes()
    scenes = [all_scenes[i % len(all_scenes)] for i in range(cameras)]
    print(
        f"video-analysis demo: generating {len(set(s.name for s in scenes))} sample scene(s) in {out}",
        flush=True,
    )
    videos = {scene.name: write_scene(scene, out / "scenes") for scene in set(scenes)}

    from aggregator.server import local_server

    (out / "broker").mkdir(exist_ok=True)
    store_path = out / "aggregator.sqlite"
    for stale in out.glob(f"{store_path.name}*"):  # with its -wal/-shm files
        # This run's aggregator stores this run only: its totals are compared with this run's
        # counts (a second demo in the same folder reported twice what it counted).
        stale.unlink()
    with private_broker(out / "broker") as port, local_server(port, store_path) as server:
        print(f"  broker: mosquitto on 127.0.0.1:{port}", flush=True)
        assert server.http is not None
        print(f"  aggregator: dashboard at {server.http.url}/ (while the demo runs)", flush=True)
        config = demo_config(scenes, [videos[s.name] for s in scenes], out, port, args.seconds)
        print("  preparing INT8 for this machine (calibration and the accuracy guard; cached after the first run)")
        totals = WindowTotals()
        appliance = build_appliance(
            config,
            sinks=[_print_counts, totals],
            on_tier_change=_print_tier,
            progress=lambda message: print(f"    {message}", flush=True),
        )
        print(
            f"  device: {appliance.parts.profile.platform}, {appliance.parts.profile.cpu_cores} cores; "
            f"{len(appliance.parts.selection.runnable)} runnable tier(s); precision {appliance.precision.chosen} "
            f"({appliance.precision.reason}); running {args.seconds:.0f} s",
            flush=True,
        )
        appliance.start()
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline and appliance.pipeline.running:
            time.sleep(1.0)
            appliance.tick()
        appliance.stop_pipeline()
        assert appliance.parts.publisher is not None
        delivered = appliance.parts.publisher.wait_drained(15.0)
        telemetry = appliance.telemetry().to_wire()
        appliance.stop()
        wait_for_ingest(server)
        ingest_stats = server.ingest.stats()
        stored = server.store.messages(device=config.device_id)
        api_totals = {
            camera.id: api_get(f"{server.http.url}/api/cameras/{config.device_id}/{camera.id}/totals")
            for camera in config.cameras
        }

    summary = _summary(appliance, totals, scenes, stored, api_totals, delivered, telemetry, ingest_stats, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"  summary: {out / 'summary.json'}; aggregator database: {store_path}")
    return 0


def wait_for_ingest(server: Any, timeout_s: float = 10.0) -> None:
    """Give the aggregator a moment to store what it has received but not yet written."""
    deadline = time.monotonic() + timeout_s
    while server.ingest.health().backlog and time.monotonic() < deadline:
        time.sleep(0.1)


def api_get(url: str) -> Any:
    """One GET on the aggregator's API, decoded from JSON: the summary reads totals the way a user would."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


# A crossing counts once the foot point is past the line by counts.line_min_distance and the
# track is confirmed, a few analysed frames after the ground truth's instant: crossings closer
# than this to the end of the run are left out of the comparison.
SETTLE_S = 1.0


def played_seconds(last_index: Optional[int], fps: float) -> float:
    """Seconds of a looped scene played up to its newest analysed frame (source index, so the
    frames skipped or dropped before it count as played), less the settling time of a crossing."""
    return 0.0 if last_index is None else max(0.0, (last_index + 1) / fps - SETTLE_S)


def expected_line_counts(truth: Any, scene: Scene, played_s: float) -> Dict[str, Dict[str, int]]:
    """Ground-truth crossings in the first `played_s` seconds of a scene played in a loop."""
    counts: Dict[str, Dict[str, int]] = {line.id: {"in": 0, "out": 0} for line in scene.lines}
    passes, remainder = divmod(played_s, scene.duration_s)
    for crossing in truth.crossings:
        counts[crossing.line_id][crossing.direction] += int(passes) + (1 if crossing.t < remainder else 0)
    return counts


def _summary(
    appliance: Appliance,
    totals: WindowTotals,
    scenes: List[Scene],
    stored: List[Any],
    api_totals: Dict[str, Any],
    delivered: bool,
    telemetry: Dict[str, Any],
    ingest_stats: Any,
    out: Path,
) -> Dict[str, Any]:
    print("\nsummary")
    cameras: Dict[str, Any] = {}
    for scene, camera in zip(scenes, appliance.parts.config.cameras):
        analysis = appliance.parts.analyses[camera.id]
        last_frame = analysis.last_frame
        camera_totals = totals.camera(camera.id)
        counted = camera_totals.line_counts()
        stored_lines: Dict[str, Dict[str, int]] = api_totals[camera.id]["lines"]
        truth = ground_truth(scene)
        played_s = played_seconds(analysis.last_index, scene.fps)
        expected = expected_line_counts(truth, scene, played_s)
        heatmap_png = out / f"heatmap-{camera.id}.png"
        if last_frame is not None:
            grid = camera_totals.heatmap if camera_totals.heatmap is not None else np.zeros((1, 1))
            cv2.imwrite(str(heatmap_png), overlay_with_geometry(as_bgr(last_frame), grid, camera))
        cameras[camera.id] = {
            "scene": scene.name,
            "counted": counted,
            "stored_by_aggregator": stored_lines,
            "ground_truth": expected,
            "zone_entries": camera_totals.zone_entries,
            "heatmap_png": str(heatmap_png) if heatmap_png.exists() else None,
        }
        print(
            f"  {camera.id} ({scene.name}): counted {counted}; aggregator stored {stored_lines}; "
            f"ground truth {expected} (crossings up to {played_s:.0f} s: the last {SETTLE_S:.0f} s are still settling)"
        )
        if heatmap_png.exists():
            print(f"    heatmap: {heatmap_png}")
    print(
        f"  MQTT: {len(stored)} messages stored by the aggregator "
        f"({ingest_stats.duplicates} duplicates removed), spool {'drained' if delivered else 'NOT drained'}"
    )
    print(f"  latency ms: {json.dumps(telemetry['latency_ms'])}")
    return {"cameras": cameras, "telemetry": telemetry, "stored_messages": len(stored)}


if __name__ == "__main__":  # pragma: no cover
    from edge.commands.cli import main

    sys.exit(main(["demo"] + sys.argv[1:]))
