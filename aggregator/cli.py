"""`video-analysis-aggregator`: the server side. For now it runs the ingest: subscribe to the
devices' data, store it idempotently in SQLite and acknowledge it end to end."""

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from aggregator.ingest import Ingest
from aggregator.store import IngestStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="video-analysis-aggregator", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="localhost", help="MQTT broker host (%(default)s)")
    parser.add_argument("--port", type=int, default=1883, help="MQTT broker port (%(default)s)")
    parser.add_argument("--prefix", default="va", help="topic prefix (%(default)s)")
    parser.add_argument("--db", default="aggregator.sqlite", help="SQLite database (%(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = IngestStore(Path(args.db))
    ingest = Ingest(store, args.host, args.port, prefix=args.prefix)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ingest.start()
    stop.wait()
    ingest.stop()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
