"""Markdown table and plot of `benchmarks/streams.py` result files (several runs, sub-streams and
resolutions side by side).

    python benchmarks/streams_report.py --label 720p a.json b.json --label "720p + 360p sub-stream" c.json \\
        --label 1080p d.json --json benchmarks/results/streams.json --markdown ... --plot ...
"""

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List


def to_markdown(groups: Dict[str, List[Dict[str, Any]]]) -> str:
    lines = [
        "# Streams per device: real-time H.264 cameras at 15 FPS each",
        "",
        "Each row one run in its own process (`benchmarks/streams.py`): the site's default tier pinned (the "
        "tier the daemon starts from, given the site's frames), or (adaptive) the site's whole tier table with "
        "the controller free to step; `tier` is the tier held at the end, "
        "`covered` = analysed fps per camera x its frame-skip (frames skipped on purpose are not drops); "
        "changes = tier changes while measuring (after a 4 s warm-up); drops = due frames lost (replaced "
        "before the worker took them, late while it was busy, or skipped undecoded to the next keyframe after "
        "three were lost in a row) as a share of the due frames; CPU in % of "
        "one core (the machine has 2); peak RSS of the process, and of its largest child (the first start's "
        "INT8 quantisation) when there was one; latency p99 from the frame decoded (and from the reader starting "
        "to decode it) to its counts updated; load = the load average before the run; steal = time the VM's "
        "CPUs waited for the host during the run, in % of both cores (CPU the machine did not have).",
        "",
        "| streams | cameras | tier | total analysed fps | covered fps per camera | changes | drops % | CPU % | "
        "peak RSS MB | decoded→counts p99 ms (read→counts) | load | steal % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, runs in groups.items():
        for r in runs:
            p99 = r["stages_ms"].get("read_to_counts", {}).get("p99", "")
            decoded = r["stages_ms"].get("decoded_to_counts", {}).get("p99")
            p99 = f"{decoded} ({p99})" if decoded is not None else f"({p99})"
            skip = r.get("frame_skip", 1)
            tier = r["tier"].split("@", 1)[-1].replace(" onnxruntime/", " ")
            covered = round(r["analysed_fps_per_camera"] * skip, 2)
            rss = f"{r['peak_rss_mb']}" + (f" (child {r['child_peak_rss_mb']})" if r.get("child_peak_rss_mb") else "")
            lines.append(
                f"| {label} | {r['cameras']} | {tier} | {r['analysed_fps_total']} | {covered} | "
                f"{r.get('tier_changes', 0)} | {r['drop_percent']} | {r['cpu_percent']} | {rss} | {p99} | "
                f"{r['load_before']} | {r.get('steal_percent', '')} |"
            )
    return "\n".join(lines) + "\n"


def plot(groups: Dict[str, List[Dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, runs in groups.items():
        runs = sorted(runs, key=lambda r: (r["cameras"], r["load_before"]))
        left.plot([r["cameras"] for r in runs], [r["analysed_fps_total"] for r in runs], "o-", label=label)
        right.plot([r["cameras"] for r in runs], [r["drop_percent"] for r in runs], "o-", label=label)
    left.set_xlabel("cameras at 15 FPS")
    left.set_ylabel("total analysed FPS")
    right.set_xlabel("cameras at 15 FPS")
    right.set_ylabel("unintended drops %")
    right.axhline(1.0, color="grey", linestyle=":")
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", action="append", nargs="+", required=True, metavar=("LABEL", "FILE"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for label, *files in args.label:
        groups[label] = [run for name in files for run in json.loads(Path(name).read_text())]
    if args.json:
        args.json.write_text(json.dumps(groups, indent=1))
    markdown = to_markdown(groups)
    if args.markdown:
        args.markdown.write_text(markdown)
    if args.plot:
        plot(groups, args.plot)
    print(markdown)


if __name__ == "__main__":
    main()
