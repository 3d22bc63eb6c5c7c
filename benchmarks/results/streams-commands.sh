#!/bin/bash
# The streams and baselines figures in this folder, one run after another on a quiet machine.
# Needs `benchmarks/clips.py --out /tmp/va-clips --phases 6` and the Ultralytics venv (README here);
# writes the result files into $OUT, for benchmarks/streams_report.py.
set -eux
cd "$(dirname "$0")/../.."
P=.venv/bin/python
O=${OUT:-/tmp/va-bench-out}
C=/tmp/va-clips
mkdir -p "$O"
$P benchmarks/streams.py --clip $C/plaza-720p.mp4 --cameras 1 --seconds 8 --site-frames --state-dir /tmp/va-site-state
$P benchmarks/streams.py --clip $C/plaza-720p.mp4 --cameras 1 3 4 5 6 8 12 --rounds 2 --seconds 12 --state-dir /tmp/va-site-state --json "$O/pinned720.json"
$P benchmarks/streams.py --clip $C/plaza-720p.mp4 --cameras 1 4 5 6 8 12 --rounds 2 --seconds 15 --adaptive --state-dir /tmp/va-site-state --json "$O/adaptive720.json"
$P benchmarks/streams.py --clip $C/plaza-720p.mp4 --detect-clip $C/plaza-360p.mp4 --cameras 1 --seconds 8 --site-frames --state-dir /tmp/va-sub-state
$P benchmarks/streams.py --clip $C/plaza-720p.mp4 --detect-clip $C/plaza-360p.mp4 --cameras 1 6 8 10 12 --rounds 2 --seconds 15 --adaptive --state-dir /tmp/va-sub-state --json "$O/sub360.json"
rm -rf /tmp/va-first-state
$P benchmarks/streams.py --clip $C/plaza-720p.mp4 --cameras 4 --seconds 10 --adaptive --site-frames --state-dir /tmp/va-first-state --json "$O/first.json"
rm -rf /tmp/va-nosite-state
$P benchmarks/streams.py --clip $C/plaza-720p.mp4 --cameras 1 --seconds 8 --adaptive --state-dir /tmp/va-nosite-state
$P benchmarks/streams.py --clip $C/plaza-720p.mp4 --cameras 1 4 --seconds 15 --adaptive --state-dir /tmp/va-nosite-state --json "$O/nosite.json"
$P benchmarks/baselines.py --clip $C/plaza-720p.mp4 --tier 4 --rounds 3 --seconds 6 --ultralytics-python /tmp/va-baselines-venv/bin/python --state-dir /tmp/va-site-state --json "$O/baselines-300.json" --markdown "$O/baselines-300.md"
