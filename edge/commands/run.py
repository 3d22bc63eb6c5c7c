"""`video-analysis run`: the daemon in the foreground (systemd's ExecStart)."""

import argparse
from pathlib import Path

from edge.config import load_config
from edge.runtime.service import run_daemon


def run_run(args: argparse.Namespace) -> int:
    path = Path(args.config)
    return run_daemon(load_config(path), path)
