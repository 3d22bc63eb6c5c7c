"""Ingest throughput: messages/s stored by the aggregator into SQLite and into PostgreSQL, with one
and with two replicas on one shared subscription.

For each scenario: a local mosquitto (the deployment's queue size), the aggregator replicas as
`video-analysis-aggregator run` processes, a PostgreSQL started by initdb + pg_ctl in a temporary
directory (Debian's package) when the scenario needs it. DEVICES x PER_DEVICE valid counts
messages are published by raw MQTT clients (one per device, QoS 1) as fast as the broker takes
them while the replicas run; the clock runs from the first publish until the database holds every
message. Each scenario runs ROUNDS times; the median is reported.

    .venv/bin/python benchmarks/ingest_throughput.py [--devices 20] [--per-device 1000] [--rounds 3]

Writes benchmarks/results/ingest_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aggregator.store import open_store  # noqa: E402
from contract import build_data_payload, with_floor  # noqa: E402
from tests.mqtt_fixtures import counts_body  # noqa: E402
from tests.test_aggregator_postgres import QueueBroker, postgres_unavailable, running_postgres  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def publish_all(port: int, devices: int, per_device: int) -> None:
    """Each device on its own client and thread, QoS 1, at most 100 in flight each."""

    def run(device: int) -> None:
        name = f"bench-{device:02d}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5)
        client.max_inflight_messages_set(100)
        client.connect("127.0.0.1", port)
        client.loop_start()
        infos = []
        for seq in range(1, per_device + 1):
            window = (10.0 * seq, 10.0 * seq + 10)
            payload = build_data_payload("counts", name, "cam1", "b1", seq, window, counts_body())
            infos.append(client.publish(f"va/{name}/cam1/counts", with_floor(payload, seq), qos=1))
        for info in infos:
            info.wait_for_publish(120)
        client.disconnect()
        client.loop_stop()

    threads = [threading.Thread(target=run, args=(d,)) for d in range(devices)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def start_replica(work: Path, name: str, port: int, url: str) -> subprocess.Popen[bytes]:
    config = {
        "mqtt": {"host": "127.0.0.1", "port": port, "client_id": name, "share_group": "bench"},
        "database": {"url": url},
        "http": {"enabled": False},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(work / f"{name}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "aggregator.cli", "run", "-c", str(path)], stdout=log, stderr=log, cwd=REPO
    )


def run_scenario(work: Path, url: str, replicas: int, devices: int, per_device: int) -> float:
    """Messages/s for one round: every message stored, counted from the first publish."""
    broker = QueueBroker(workdir=work / "broker")
    broker.start()
    processes = [start_replica(work, f"agg-{i}", broker.port, url) for i in range(replicas)]
    store = open_store(url)
    try:
        # Raw clients never resend: publish only once every replica has connected (and so,
        # a moment later, subscribed).
        for i in range(replicas):
            log = work / f"agg-{i}.log"
            while f"connected to 127.0.0.1:{broker.port}" not in log.read_text():
                time.sleep(0.1)
        time.sleep(2.0)
        total = devices * per_device
        started = time.perf_counter()
        publisher = threading.Thread(target=publish_all, args=(broker.port, devices, per_device))
        publisher.start()
        deadline = started + 600
        while store.count_messages() < total:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {store.count_messages()} of {total} stored in 600 s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        publisher.join()
        return total / elapsed
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        store.close()
        broker.stop(signal.SIGKILL)


def fresh_postgres_url(base: str, name: str) -> str:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--per-device", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="va-ingest-bench-") as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            db = work / f"sqlite-{r}.sqlite"
            results.setdefault("sqlite, 1 replica", []).append(
                run_scenario(work, f"sqlite://{db}", 1, args.devices, args.per_device)
            )
            print("sqlite 1", results["sqlite, 1 replica"][-1], flush=True)
        reason = postgres_unavailable()
        if reason:
            print(f"PostgreSQL skipped: {reason}")
        else:
            with running_postgres() as pg:
                for r in range(args.rounds):
                    for replicas in (1, 2):
                        url = fresh_postgres_url(pg.url, f"bench_{replicas}_{r}")
                        key = f"postgresql, {replicas} replica{'s' if replicas > 1 else ''}"
                        results.setdefault(key, []).append(
                            run_scenario(work, url, replicas, args.devices, args.per_device)
                        )
                        print(key, results[key][-1], flush=True)
    summary = {
        "messages": args.devices * args.per_device,
        "devices": args.devices,
        "rounds": args.rounds,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}",
        "messages_per_s_median": {k: round(statistics.median(v), 1) for k, v in results.items()},
        "messages_per_s_rounds": {k: [round(x, 1) for x in v] for k, v in results.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest_throughput.json").write_text(json.dumps(summary, indent=1) + "\n")
    rows = "\n".join(
        f"| {k} | {summary['messages_per_s_median'][k]} | {', '.join(map(str, v))} |"
        for k, v in summary["messages_per_s_rounds"].items()
    )
    (RESULTS / "ingest_throughput.md").write_text(
        "# Aggregator ingest throughput\n\n"
        f"{summary['messages']} counts messages from {summary['devices']} devices published at once over QoS 1 "
        "to a local mosquitto 2.0.11 (max_queued_messages 20000); aggregator replicas as separate processes "
        f"on one shared subscription; clock from first publish to all stored. {summary['machine']}; "
        "the machine is shared, so rounds vary.\n\n"
        "| store | messages/s (median) | rounds |\n|---|---|---|\n" + rows + "\n\n"
        "On 2 cores shared by the broker, the publishing clients, PostgreSQL and the replicas, a second "
        "replica has no spare CPU to use: here it buys availability (see the scale test), not throughput.\n\n"
        "Command: `.venv/bin/python benchmarks/ingest_throughput.py`\n"
    )
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
