"""How many real-time cameras this device sustains, for `video-analysis bench` and
`benchmarks/streams.py`: N copies of one clip (and of its phase copies, `phase_copies`) played
at its native rate as N cameras through the real appliance (readers, the inference lanes,
tracking, analytics; no MQTT), one tier pinned (by default the tier the daemon starts from on
this site: `site_default_tier`) or (`--adaptive`) the device's whole tier table with the
controller free to step, each N in a fresh process so that its peak RSS is its own.

A configuration is sustained when every camera is covered at the target rate (analysed fps x
the held tier's frame-skip) with < 1 % unintended drops (due frames replaced before a lane
took them, or too late to convert) and, under `--adaptive`, no tier change while measuring;
frames skipped on purpose by the pacing are not drops.

    python -m edge.commands.bench_streams --clip CLIP --cameras N [--detect-clip SUB] [--tier I|default | --adaptive]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import psutil

from edge.config import Config, parse_config
from edge.device.hardware import probe
from edge.device.tiers import tiers_for_platform
from edge.runtime.appliance import build_appliance, choose_tiers

MAX_DROP_PERCENT = 1.0
MIN_TARGET_SHARE = 0.97  # analysed fps per camera ≥ 97 % of the target (clock jitter)


@dataclass(frozen=True)
class StreamsResult:
    cameras: int
    sub_stream: bool
    tier: str
    seconds: float
    target_fps: float
    analysed_fps_total: float
    analysed_fps_per_camera: float
    drop_percent: float
    cpu_percent: float  # of one core
    peak_rss_mb: float
    stages_ms: Dict[str, Dict[str, float]]
    # The largest child process's peak (the first start's INT8 quantisation runs in one; it ran
    # beside the appliance, so the two peaks add up at most).
    child_peak_rss_mb: float = 0.0
    frame_skip: int = 1  # of the tier held at the end
    adaptive: bool = False  # the whole tier table, the controller free to step
    tier_changes: int = 0  # while measuring (after the warm-up)
    # Time this machine's virtual CPUs waited for the host while measuring, % of all cores (0 on
    # bare metal): CPU the device did not get, whatever the appliance did.
    steal_percent: float = 0.0

    @property
    def covered_fps_per_camera(self) -> float:
        return self.analysed_fps_per_camera * self.frame_skip

    @property
    def sustained(self) -> bool:
        return (
            self.drop_percent < MAX_DROP_PERCENT
            and self.covered_fps_per_camera >= MIN_TARGET_SHARE * self.target_fps
            and self.tier_changes == 0
        )


SITE_DEFAULT = "default"  # `--tier default`: the tier the daemon starts from on this site


def streams_config(
    clip: Path,
    cameras: int,
    state_dir: Path,
    detect_clip: Optional[Path] = None,
    tier: Optional[int] = 0,
    target_fps: float = 15.0,
) -> Config:
    """N cameras on one clip with only `tier` of this device's table, so the controller holds it;
    with `tier` None, the whole table (the controller adapts as in service). The cameras take
    the clip's phase copies in turn when there are some (`phase_copies`)."""
    clips = phase_copies(clip)
    detect_clips = phase_copies(detect_clip) if detect_clip is not None else []
    base = Config()
    platform, tiers = tiers_for_platform(base.policy, probe().platform)
    camera_list: List[Dict[str, Any]] = []
    for index in range(cameras):
        camera: Dict[str, Any] = {
            "id": f"cam{index + 1}",
            "source": str(clips[index % len(clips)]),
            "target_fps": target_fps,
            "realtime": True,
            "loop": True,
            "lines": [{"id": "door", "points": [[0.5, 0.2], [0.5, 0.95]]}],
        }
        if detect_clips:
            camera["detect_source"] = str(detect_clips[index % len(detect_clips)])
        camera_list.append(camera)
    return parse_config(
        {
            "state_dir": str(state_dir),
            "cameras": camera_list,
            "policy": {"tiers": {platform: [t.model_dump() for t in (tiers if tier is None else [tiers[tier]])]}},
        }
    )


def phase_copies(clip: Path) -> List[Path]:
    """The clip and the copies `benchmarks/clips.py --phases K` wrote beside it
    (`<stem>-phase<k><suffix>`: the same video with its keyframes shifted), so that N cameras do
    not all reach a keyframe at the same instant, which real cameras never do."""
    copies = sorted(clip.parent.glob(f"{clip.stem}-phase*{clip.suffix}"), key=lambda path: path.name)
    return [clip, *copies]


def site_default_tier(clip: Path, state_dir: Path, detect_clip: Optional[Path] = None) -> int:
    """The index in this device's table of the tier its daemon would start from on this site:
    the best runnable tier once the tiers that disagree with the best one, or that a cheaper
    equivalent detector makes pointless, are dropped (judged on `<state_dir>/calibration`'s
    frames when there are some: `video-analysis calibrate`)."""
    config = streams_config(clip, 1, state_dir, detect_clip, None)
    selection, _ = choose_tiers(config, probe())
    return selection.runnable[0].index


def measure_streams(config: Config, seconds: float, warmup_s: float = 4.0) -> StreamsResult:
    """Run the appliance for warm-up + `seconds`; the figures cover `seconds` only."""
    appliance = build_appliance(config, publish=False)
    pipeline = appliance.pipeline
    appliance.start()
    try:
        _tick_for(appliance.tick, warmup_s)
        changes_before = len(appliance.tier_history)
        before = {s.camera_id: s for s in pipeline.stats()}
        cpu0, steal0, wall0 = _cpu_s(), steal_s(), time.monotonic()
        pipeline.timer.reset(size=100_000)
        _tick_for(appliance.tick, seconds)
        after = {s.camera_id: s for s in pipeline.stats()}
        cpu, steal, wall = _cpu_s() - cpu0, steal_s() - steal0, time.monotonic() - wall0
        stages = pipeline.timer.summary_ms()
        changes = len(appliance.tier_history) - changes_before
    finally:
        appliance.stop()
    if pipeline.error is not None:
        raise pipeline.error
    processed = sum(after[c].processed - before[c].processed for c in after)
    dropped = sum(after[c].dropped - before[c].dropped for c in after)
    target = config.cameras[0].target_fps
    return StreamsResult(
        cameras=len(after),
        sub_stream=config.cameras[0].detect_source is not None,
        tier=appliance.parts.controller.tier.name,
        seconds=round(wall, 1),
        target_fps=target,
        analysed_fps_total=round(processed / wall, 1),
        analysed_fps_per_camera=round(processed / wall / len(after), 2),
        drop_percent=round(100.0 * dropped / max(processed + dropped, 1), 2),
        cpu_percent=round(100.0 * cpu / wall, 1),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        stages_ms=stages,
        child_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1),
        frame_skip=appliance.parts.controller.tier.frame_skip,
        adaptive=len(appliance.parts.controller.tiers) > 1,
        tier_changes=changes,
        steal_percent=round(100.0 * steal / wall / (os.cpu_count() or 1), 1),
    )


def _tick_for(tick: Callable[[], object], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick()
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def steal_s() -> float:
    """Seconds, summed over this machine's CPUs, its virtual CPUs have waited for the host."""
    return float(getattr(psutil.cpu_times(), "steal", 0.0))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_isolated(
    clip: Path,
    cameras: int,
    seconds: float,
    state_dir: Path,
    detect_clip: Optional[Path] = None,
    tier: Union[int, str, None] = SITE_DEFAULT,
) -> StreamsResult:
    """`measure_streams` in a fresh process (its own peak RSS); `tier` an index of the table,
    SITE_DEFAULT, or None: adaptive."""
    args = [sys.executable, "-m", "edge.commands.bench_streams", "--clip", str(clip), "--cameras", str(cameras)]
    args += ["--seconds", str(seconds), "--state-dir", str(state_dir)]
    args += ["--adaptive"] if tier is None else ["--tier", str(tier)]
    if detect_clip is not None:
        args += ["--detect-clip", str(detect_clip)]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return StreamsResult(**json.loads(out.stdout.strip().splitlines()[-1]))


def sustained_streams(
    measure: Callable[[int], StreamsResult],
    start: int,
    most: int,
    progress: Callable[[str], None],
) -> Tuple[int, List[StreamsResult]]:
    """The most cameras `measure` sustains: up from `start` while sustained, down while not."""
    results: Dict[int, StreamsResult] = {}

    def run(n: int) -> bool:
        if n not in results:
            progress(f"  {n} camera(s)...")
            results[n] = measure(n)
            r = results[n]
            progress(
                f"  {n} camera(s): {r.analysed_fps_per_camera} fps each, {r.drop_percent} % drops, "
                f"{r.cpu_percent} % CPU, {r.peak_rss_mb} MB: {'sustained' if r.sustained else 'not sustained'}"
            )
        return results[n].sustained

    n = max(1, min(start, most))
    if run(n):
        while n < most and run(n + 1):
            n += 1
    else:
        while n > 1 and not run(n - 1):
            n -= 1
    best = max((k for k, r in results.items() if r.sustained), default=0)
    return best, [results[k] for k in sorted(results)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--detect-clip", type=Path)
    parser.add_argument("--cameras", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=15.0)
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--tier",
        default=SITE_DEFAULT,
        help="index in this device's tier table, or 'default' (the tier the daemon starts from on this site), pinned",
    )
    choice.add_argument("--adaptive", action="store_true", help="the whole table, the controller adapting")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()
    tier: Optional[int] = None
    if not args.adaptive:
        tier = (
            site_default_tier(args.clip, args.state_dir, args.detect_clip)
            if args.tier == SITE_DEFAULT
            else int(args.tier)
        )
    config = streams_config(args.clip, args.cameras, args.state_dir, args.detect_clip, tier)
    print(json.dumps(asdict(measure_streams(config, args.seconds))))


if __name__ == "__main__":
    main()
