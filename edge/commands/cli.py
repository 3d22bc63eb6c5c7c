"""`video-analysis` command line: argument parsing, one function per subcommand, and the
mapping of errors to exit codes (DESIGN.md): 0 ok, 2 usage/config, 3 model/engine,
4 source, 1 anything unexpected. Errors are one line on stderr, with URL credentials masked;
tracebacks only with --debug. Logging is set up here (edge.runtime.logs: journald-aware); `run`
then applies the configuration's log_level and log_format.
"""

import argparse
import logging
import sys
from typing import Callable, Dict, List, Optional

from edge import __version__
from edge.config import DEFAULT_CONFIG_PATH, mask_urls
from edge.core.errors import VideoAnalysisError
from edge.runtime.logs import setup_logging

log = logging.getLogger("video-analysis")

Command = Callable[[argparse.Namespace], int]
COMMANDS: Dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def decorator(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return decorator


@command("check-config")
def cmd_check_config(args: argparse.Namespace) -> int:
    from edge.commands.check_config import run_check_config

    return run_check_config(args)


@command("detect")
def cmd_detect(args: argparse.Namespace) -> int:
    from edge.commands.detect import run_detect

    return run_detect(args)


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from edge.commands.demo import run_demo

    return run_demo(args)


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    from edge.commands.run import run_run

    return run_run(args)


@command("probe")
def cmd_probe(args: argparse.Namespace) -> int:
    from edge.commands.probe import probe_command

    return probe_command(args)


@command("bench")
def cmd_bench(args: argparse.Namespace) -> int:
    from edge.commands.bench import run_bench

    return run_bench(args)


@command("calibrate")
def cmd_calibrate(args: argparse.Namespace) -> int:
    from edge.commands.calibrate import calibrate_command

    return calibrate_command(args)


@command("evaluate")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from edge.commands.evaluate import run_evaluate

    return run_evaluate(args)


@command("build-engine")
def cmd_build_engine(args: argparse.Namespace) -> int:
    from edge.commands.calibrate import build_engine_command

    return build_engine_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="video-analysis", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("-c", "--config", default=str(DEFAULT_CONFIG_PATH), help="config file (%(default)s)")
        return p

    with_config(sub.add_parser("run", help="run the daemon in the foreground"))
    check = with_config(
        sub.add_parser(
            "check-config",
            help="validate the configuration and what `run` needs (models, secrets); print it, secrets masked",
        )
    )
    check.add_argument(
        "-q", "--quiet", action="store_true", help="print one line instead of the effective configuration"
    )

    demo = sub.add_parser("demo", help="everything on one machine on a generated sample scene")
    demo.add_argument(
        "--seconds", type=float, default=24.0, help="seconds to run; the scenes loop (%(default)s)"
    )
    demo.add_argument("--out", default="demo-output", help="output directory (%(default)s)")
    demo.add_argument("--cameras", type=int, default=2, help="number of simulated cameras (%(default)s)")

    detect = with_config(sub.add_parser("detect", help="one-shot detection on an image or a video"))
    detect.add_argument("path", help="image or video file")
    detect.add_argument("--json", action="store_true", help="one JSON object per frame")
    detect.add_argument(
        "--tier", type=int, default=None, help="policy tier index to use (default: best runnable)"
    )

    probe = with_config(sub.add_parser("probe", help="the hardware profile and the tiers it selects"))
    probe.add_argument("--json", action="store_true", help="machine-readable output")

    bench = with_config(sub.add_parser("bench", help="on-device latency/throughput benchmark"))
    bench.add_argument("--json", dest="json_out", help="write results as JSON")
    bench.add_argument("--markdown", help="write results as a Markdown table")
    bench.add_argument("--plot", help="write a PNG plot")
    bench.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (%(default)s)")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved rounds per tier (%(default)s)")
    for size in ("360", "720", "1080"):
        bench.add_argument(f"--clip-{size}", help=f"a {size}p recording to measure on (default: synthetic scene)")
    bench.add_argument("--no-streams", action="store_true", help="skip the streams-per-device search")

    calibrate = with_config(
        sub.add_parser("calibrate", help="collect calibration frames and quantise to INT8")
    )
    calibrate.add_argument(
        "--from", dest="source", help="folder of images or a video (default: cameras/synthetic)"
    )
    calibrate.add_argument(
        "--name", default=None, help="calibration set name (default: derived from the source)"
    )
    calibrate.add_argument("--frames", type=int, default=200, help="frames to collect (%(default)s)")

    evaluate = with_config(sub.add_parser("evaluate", help="accuracy on a video with MOT ground truth"))
    evaluate.add_argument("video", help="video file")
    evaluate.add_argument("--gt", required=True, help="MOT-format ground truth (frame,id,left,top,w,h,flag,...)")
    evaluate.add_argument(
        "--line", action="append", default=[], help="counting line ID:x1,y1,x2,y2 (normalised); repeatable; "
        "default: the first camera's lines"
    )
    evaluate.add_argument("--platform", default="x86-cpu", help="platform class of the tiers (%(default)s)")
    evaluate.add_argument("--tier", type=int, default=None, help="tier index (default: the best, 0)")
    evaluate.add_argument("--frames", type=int, default=None, help="evaluate the first N frames only")
    evaluate.add_argument("--score-threshold", type=float, default=None, help="override detector.score_threshold")
    evaluate.add_argument("--json", dest="json_out", help="write the results as JSON")
    evaluate.add_argument("--out", help="directory for pictures (sampled detections, per-line bars)")

    build = with_config(
        sub.add_parser("build-engine", help="build and cache the engines of the runnable tiers")
    )
    build.add_argument("--all", action="store_true", help="every tier, not only the best runnable one")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("debug" if args.debug else "info")
    try:
        return COMMANDS[args.command](args)
    except VideoAnalysisError as exc:
        if args.debug:
            raise
        print(f"video-analysis: error: {mask_urls(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # anything unexpected: one line unless --debug
        if args.debug:
            raise
        if isinstance(exc, ModuleNotFoundError) and exc.name == "cv2":
            # OpenCV is an extra: a Jetson uses JetPack's own build (with GStreamer) instead.
            print(
                "video-analysis: error: OpenCV is not installed: pip install 'video-analysis[opencv]' "
                "(on a Jetson, a venv with --system-site-packages uses JetPack's OpenCV)",
                file=sys.stderr,
            )
            return 1
        print(
            f"video-analysis: unexpected error: {type(exc).__name__}: {mask_urls(str(exc))} (rerun with --debug)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
