#!/usr/bin/env bash
# Checkpoint surgery benchmark (issue #4): optforge consolidate / reshard on random fp16 OPT-shaped
# checkpoints at MP=2 x FSDP=4, beside the Python path (torch.load of every shard + fairscale's
# consolidate_shard_weights + metaseq-style glue + torch.save: tests/fixtures/reference_consolidate.py)
# and beside the floor (cat of the inputs to /dev/null; cp of the same bytes, and cp + sync since
# optforge fsyncs its outputs).
#
# The inputs are made by our own code: `optforge demo-model` (a deterministic random singleton)
# then `optforge reshard --mp 2 --fsdp 4` (metaseq's raw trainer layout with shard_metadata).
# Timings are with the inputs in the page cache (a warm-up cat runs first); each fast command runs
# R times (default 3) and the best time and the highest peak RSS are printed (bench/measure.py);
# the Python path runs once. optforge fsyncs its outputs, so "cp + sync" is its floor.
#
# usage: bench/consolidate.sh [--sizes 1.3b[,2.7b,6.7b]] [--workdir DIR] [--bin build/optforge]
#                             [-j N] [--repeats R] [--no-python]
# Default: the 1.3B shape only (2.6 GB). Outputs are deleted after each size.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=1.3b
work=${TMPDIR:-/tmp}/optforge-bench-ckpt
bin=build/optforge
py=.venv/bin/python
jobs=$(nproc)
python_path=1
repeats=3
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes=$2; shift 2 ;;
    --workdir) work=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    -j) jobs=$2; shift 2 ;;
    --no-python) python_path=0; shift ;;
    --repeats) repeats=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "no optforge binary at $bin (build first or pass --bin)" >&2; exit 1; }
mkdir -p "$work"
trap 'rm -rf "$work"/in "$work"/single.pt "$work"/out.pt "$work"/py.pt "$work"/resharded "$work"/copy' EXIT
measure() { "$py" bench/measure.py "$@"; }
mem_gib=$(awk '/MemTotal/ {printf "%d", $2 / 1048576}' /proc/meminfo)
echo "machine: $(nproc) cores, ${mem_gib} GiB RAM; optforge -j $jobs; $(uname -r)"

for size in ${sizes//,/ }; do
  case "$size" in
    125m) gb=0.26 ;; 350m) gb=0.7 ;; 1.3b) gb=2.6 ;; 2.7b) gb=5.3 ;; 6.7b) gb=13.3 ;; 13b) gb=25.7 ;; *) gb=30 ;;
  esac
  # singleton + inputs + one output at a time, with margin
  need_kb=$(awk -v g="$gb" 'BEGIN {printf "%d", g * 3.5 * 1048576}')
  free_kb=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
  if [ "$free_kb" -lt "$need_kb" ]; then
    echo "== $size: skipped, needs ~$((need_kb / 1048576)) GiB free in $work, has $((free_kb / 1048576)) GiB"
    continue
  fi
  echo "== OPT-$size shape, fp16, MP=2 x FSDP=4 (inputs made by optforge demo-model + reshard)"
  rm -rf "$work"/in "$work"/single.pt
  "$bin" demo-model --shape "$size" --dtype f16 -o "$work"/single.pt >/dev/null
  "$bin" reshard "$work"/single.pt -o "$work"/in --mp 2 --fsdp 4 -q >/dev/null
  rm -f "$work"/single.pt
  bytes=$(du -sb "$work"/in | cut -f1)
  echo "input: 8 files, $bytes bytes"
  printf '%-44s %10s %13s %13s\n' "" "time" "throughput" "peak RSS"
  cat "$work"/in/*.pt >/dev/null  # warm the page cache
  measure "floor: cat inputs > /dev/null" "$bytes" "$repeats" -- sh -c "cat '$work'/in/*.pt > /dev/null"
  measure "floor: cp inputs" "$bytes" "$repeats" -- sh -c "rm -rf '$work'/copy && cp -r '$work'/in '$work'/copy"
  measure "floor: cp inputs + sync" "$bytes" "$repeats" -- sh -c "rm -rf '$work'/copy && cp -r '$work'/in '$work'/copy && sync"
  rm -rf "$work"/copy
  measure "optforge consolidate" "$bytes" "$repeats" -- "$bin" consolidate "$work"/in -o "$work"/out.pt -j "$jobs" -q
  rm -f "$work"/out.pt
  measure "optforge reshard -> MP=1 x FSDP=8" "$bytes" "$repeats" -- sh -c "rm -rf '$work'/resharded && '$bin' reshard '$work'/in -o '$work'/resharded --mp 1 --fsdp 8 -j $jobs -q"
  rm -rf "$work"/resharded
  measure "optforge reshard -> MP=4 x FSDP=2" "$bytes" "$repeats" -- sh -c "rm -rf '$work'/resharded && '$bin' reshard '$work'/in -o '$work'/resharded --mp 4 --fsdp 2 -j $jobs -q"
  rm -rf "$work"/resharded
  # Python path: holds every shard plus the consolidated copies in memory (~3x the checkpoint).
  need_py_kb=$(awk -v g="$gb" 'BEGIN {printf "%d", g * 3.2 * 1048576}')
  avail_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  if [ "$python_path" = 1 ] && [ "$avail_kb" -gt "$need_py_kb" ]; then
    measure "python: torch.load + fairscale + glue + save" "$bytes" 1 -- \
      "$py" tests/fixtures/reference_consolidate.py "$work"/in "$work"/py.pt
    rm -f "$work"/py.pt
  elif [ "$python_path" = 1 ]; then
    echo "python: torch.load + fairscale + glue + save   skipped: needs ~$((need_py_kb / 1048576)) GiB RAM, $((avail_kb / 1048576)) GiB available"
  fi
  rm -rf "$work"/in
done
