#!/usr/bin/env bash
# Three runs of one bench command in a row, each kept as bench/logs/NAME-{1,2,3}.log, headed as
# bench/RESULTS.md expects: the command, the run, the CPU, the UTC times, the load at the start
# and the commit (with "+ uncommitted changes" when the tree differs from it); progress bars
# stripped; /usr/bin/time's CPU share and peak memory at the end. Run it in the background, one
# set at a time, and nothing else meanwhile (the figures are the machine's):
#
#   nohup sh -c 'bench/three_runs.sh infer-zen3-2026-12-02 .venv/bin/python bench/infer.py &&
#       bench/three_runs.sh train-zen3-2026-12-02 .venv/bin/python bench/train.py --rows 500' &
#
# bench/_work/NAME.done appears when the three runs are over; a run's exit status is in its log.
set -u
if [ $# -lt 2 ]; then
    echo "usage: bench/three_runs.sh NAME COMMAND [ARGS...]" >&2
    exit 2
fi
name=$1
shift
cd "$(dirname "$0")/.." || exit 1
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
flags=$(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni|avx512_bf16|amx_bf16|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD || commit="$commit + uncommitted changes"
for i in 1 2 3; do
    log=bench/logs/$name-$i.log
    load=$(cut -d' ' -f1-3 /proc/loadavg | sed 's/ /, /g')
    start=$(date -u +%Y-%m-%d\ %H:%M:%S)
    raw=$(mktemp)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "%P of the CPU, %M kB peak RSS" -o "$raw.time" "$@" >"$raw" 2>&1
        status=$?
    else
        "$@" >"$raw" 2>&1
        status=$?
        echo "not measured (no /usr/bin/time)" >"$raw.time"
    fi
    {
        echo "\$ $*   # run $i of 3, $cpu [${flags% }], $(nproc) cores, $start-$(date -u +%H:%M:%S) UTC, load at start: $load, commit $commit"
        tr '\r' '\n' <"$raw" | grep -v -E "batch/s|s/batch|it/s\]|it\]$|s/it\]" | grep -v "^\s*$"
        echo "# exit status $status; /usr/bin/time: $(tail -1 "$raw.time")"
    } >"$log"
    rm -f "$raw" "$raw.time"
done
mkdir -p bench/_work && touch "bench/_work/$name.done"
