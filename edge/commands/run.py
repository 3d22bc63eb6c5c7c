"""`video-analysis run`: the daemon in the foreground (systemd's ExecStart), logging at the
configuration's log_level and log_format (--debug overrides the level)."""

import argparse
from pathlib import Path

from edge.config import load_config
from edge.runtime.logs import setup_logging
from edge.runtime.service import run_daemon


def run_run(args: argparse.Namespace) -> int:
    path = Path(args.config)
    config = load_config(path)
    setup_logging("debug" if args.debug else config.log_level, config.log_format)
    return run_daemon(config, path)
