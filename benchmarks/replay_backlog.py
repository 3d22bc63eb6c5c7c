"""Replay a backlog spooled during a broker outage: time and memory of the edge side.

1. With no broker listening, the publisher spools N messages (80 % counts, 20 % heatmap tiles).
2. mosquitto starts on that port, with the aggregator's ingest (acking) in a separate process.
3. Timed: from the broker start until the spool is empty, i.e. every message acknowledged
   end to end (including the publisher's reconnect back-off, reported apart). This process's
   RSS is sampled every 20 ms during the replay.

Usage: python benchmarks/replay_backlog.py [--messages 10000] [--out benchmarks/results]
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aggregator.sqlite_store import SqliteStore  # noqa: E402
from edge.delivery.publisher import Publisher  # noqa: E402
from edge.delivery.spool import Spool  # noqa: E402
from tests.mqtt_fixtures import Mosquitto, counts_body, heatmap_body, make_config  # noqa: E402

INGEST_CHILD = """
import sys, time
from aggregator.ingest import Ingest
from aggregator.sqlite_store import SqliteStore
ingest = Ingest(SqliteStore(sys.argv[1]), "127.0.0.1", int(sys.argv[2]))
ingest.start()
sys.stdin.read()
ingest.stop()
"""


class RssSampler:
    def __init__(self, period_s: float = 0.02) -> None:
        self.samples: List[int] = []
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period_s,))

    def _run(self, period_s: float) -> None:
        while not self._stop.is_set():
            self.samples.append(self._process.memory_info().rss)
            time.sleep(period_s)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--max-inflight", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="replay-"))
    broker = Mosquitto(workdir=work / "broker")
    config = make_config(
        work, broker.port, max_inflight=args.max_inflight, spool={"max_mb": 512.0}, telemetry_interval_s=5.0
    )
    spool = Spool.from_config(config)
    publisher = Publisher(config, spool, "bench-boot")
    publisher.start()

    spool_started = time.perf_counter()
    for i in range(args.messages):
        if i % 5 == 4:
            publisher.submit("heatmap", "cam1", (60.0 * i, 60.0 * i + 60), heatmap_body(seed=i))
        else:
            publisher.submit("counts", "cam1", (10.0 * i, 10.0 * i + 10), counts_body(frames=i))
    spool_s = time.perf_counter() - spool_started
    backlog = spool.stats()
    print(f"spooled {backlog.depth} messages ({backlog.bytes / 1e6:.1f} MB) in {spool_s:.1f} s", flush=True)

    db = work / "aggregator.sqlite"
    with RssSampler() as rss:
        replay_started = time.perf_counter()
        broker.start()
        ingest = subprocess.Popen(
            [sys.executable, "-c", INGEST_CHILD, str(db), str(broker.port)], cwd=REPO, stdin=subprocess.PIPE
        )
        while not publisher.stats().connected and time.perf_counter() - replay_started < 60:
            time.sleep(0.005)
        connected_s = time.perf_counter() - replay_started
        drained = publisher.wait_drained(120)
        replay_s = time.perf_counter() - replay_started
    stats = publisher.stats()
    publisher.stop()
    ingest.communicate(b"", timeout=30)
    broker.stop()
    stored = SqliteStore(db).seqs("edge-t")

    samples = rss.samples
    mib = 1024 * 1024
    result = {
        "benchmark": "replay_backlog",
        "machine": {
            "cpus": psutil.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "messages": args.messages,
        "backlog_mb": round(backlog.bytes / 1e6, 2),
        "max_inflight_puback": args.max_inflight,
        "max_unacked_end_to_end": args.max_inflight * 10,
        "drained": drained,
        "replay_s": round(replay_s, 2),
        "reconnect_s": round(connected_s, 2),
        "messages_per_s": round(args.messages / replay_s, 1),
        "messages_per_s_once_connected": round(args.messages / (replay_s - connected_s), 1),
        "spooling_s": round(spool_s, 2),
        "stored_at_aggregator": len(stored),
        "stored_exactly_once": stored == list(range(1, args.messages + 1)),
        "resent": stats.resent,
        "rss_mib": {
            "start": round(samples[0] / mib, 1),
            "middle": round(samples[len(samples) // 2] / mib, 1),
            "end": round(samples[-1] / mib, 1),
            "peak": round(max(samples) / mib, 1),
            "median": round(statistics.median(samples) / mib, 1),
            "samples": len(samples),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replay_backlog.json").write_text(json.dumps(result, indent=2) + "\n")
    r = result["rss_mib"]
    cpus = result["machine"]["cpus"]
    (args.out / "replay_backlog.md").write_text(
        "# Backlog replay after a broker outage\n\n"
        f"`python benchmarks/replay_backlog.py --messages {args.messages}` on {cpus} CPUs, "
        "local mosquitto 2.0.11, aggregator ingest (acking, SQLite) in a separate process.\n\n"
        "| messages | backlog | replay (broker start → spool empty) | of which reconnecting "
        "| rate once connected | at aggregator, exactly once |\n"
        "|---|---|---|---|---|---|\n"
        f"| {args.messages} | {result['backlog_mb']} MB | {result['replay_s']} s "
        f"| {result['reconnect_s']} s | {result['messages_per_s_once_connected']} msg/s "
        f"| {result['stored_at_aggregator']}, {result['stored_exactly_once']} |\n\n"
        "Edge process RSS during the replay (MiB), sampled every 20 ms:\n\n"
        "| start | middle | end | peak |\n|---|---|---|---|\n"
        f"| {r['start']} | {r['middle']} | {r['end']} | {r['peak']} |\n\n"
        f"In flight: at most {args.max_inflight} awaiting PUBACK and {args.max_inflight * 10} awaiting the "
        "aggregator's ack; the spool is read in pages of that size, never whole.\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
