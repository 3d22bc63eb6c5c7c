"""Where the daemon's memory goes: RSS and peak RSS (VmRSS, VmHWM) after each stage of building
the appliance (tier measurement, calibration set, quantisation, detector loads, the INT8 check)
and every few seconds while N real-time cameras run, as `benchmarks/streams.py` runs them (one
clip, tier 0 pinned, no MQTT). An empty --state-dir is a first start.

    python benchmarks/memory_stages.py --clip /tmp/va-clips/plaza-720p.mp4 --cameras 4 --state-dir /tmp/s
"""

import argparse
import functools
import re
import time
from pathlib import Path
from typing import Any, Callable

import edge.detection.int8.guard as guard
import edge.runtime.appliance as appliance
from edge.commands.bench_streams import streams_config

STARTED = time.monotonic()


def memory() -> str:
    status = Path("/proc/self/status").read_text()

    def field(name: str) -> str:
        match = re.search(rf"{name}:\s+(\d+)", status)
        return f"{int(match.group(1)) / 1024:7.1f}" if match else "      -"

    threads = re.search(r"Threads:\s+(\d+)", status)
    return f"rss {field('VmRSS')} MB  peak {field('VmHWM')} MB  threads {threads.group(1) if threads else '-'}"


def mark(what: str) -> None:
    print(f"{time.monotonic() - STARTED:6.1f} s  {what:40s} {memory()}", flush=True)


def traced(module: Any, name: str) -> None:
    """Report memory after each call of module.name."""
    inner: Callable[..., Any] = getattr(module, name)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = inner(*args, **kwargs)
        mark(f"after {module.__name__.rsplit('.', 1)[-1]}.{name}")
        return result

    setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()
    mark("imports")
    for name in ("_controller", "load_guarded_tier_detector"):
        traced(appliance, name)
    for name in ("resolve_calibration_set", "quantize_for", "create_detector", "agreement"):
        traced(guard, name)
    config = streams_config(args.clip, args.cameras, args.state_dir)
    mark("configuration")
    running = appliance.build_appliance(config, publish=False)
    mark("built")
    running.start()
    try:
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            time.sleep(3.0)
            running.tick()
            mark(f"running, {args.cameras} camera(s)")
    finally:
        running.stop()
    mark("stopped")


if __name__ == "__main__":
    main()
