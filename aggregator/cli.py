"""`video-analysis-aggregator`: the server side (ingest, storage, HTTP API, dashboard).

Commands: `run -c CONFIG` (the service, in the foreground) and `check-config -c CONFIG`
(validate and print the effective configuration). Exit codes as the edge's: 0 ok, 2 usage or
configuration error, 1 anything unexpected; errors are one line, a traceback only with --debug.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from aggregator.config import ConfigError, effective, load_config

log = logging.getLogger("aggregator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="video-analysis-aggregator", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run the server in the foreground"), ("check-config", "validate the configuration")):
        command = sub.add_parser(name, help=text)
        command.add_argument("-c", "--config", type=Path, help="YAML configuration file (defaults if omitted)")
        command.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser


def _run(config_path: Path | None) -> int:
    from aggregator.server import Server

    server = Server(load_config(config_path))
    signal.signal(signal.SIGTERM, lambda *_: server.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: server.stop_event.set())
    server.start()
    try:
        server.run_until_stopped()
    finally:
        server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "check-config":
            print(json.dumps(effective(load_config(args.config)), indent=2))
            return 0
        return _run(args.config)
    except ConfigError as exc:
        print(f"video-analysis-aggregator: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            raise
        print(f"video-analysis-aggregator: unexpected error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
