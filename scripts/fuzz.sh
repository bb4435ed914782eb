#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*.cpp; clang, AddressSanitizer + UBSan + LeakSanitizer)
# into build-fuzz and runs each one: first over every crash input ever found
# (tests/fuzz/regressions/, all of them through every target), then fuzzing for SECONDS from its
# checked-in seeds (tests/fuzz/corpus/<target>, copied to a scratch folder so the repository is
# never modified). Prints each target's executions and the total; exits non-zero on any crash,
# leak, timeout or out-of-memory. Findings are saved as build-fuzz/artifacts/<target>-crash-*.
# Usage: scripts/fuzz.sh SECONDS [TARGET...]    (default: every target, one after another)
# Environment: FUZZ_BUILD_JOBS (ninja -j, default nproc), FUZZ_TIMEOUT (seconds one input may
# take before it counts as a hang, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for src in tests/fuzz/*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPTFORGE_FUZZ=ON -DOPTFORGE_TESTS=OFF >/dev/null
ninja -C build-fuzz -j"${FUZZ_BUILD_JOBS:-$(nproc)}" "${targets[@]}"

mapfile -t regressions < <(find tests/fuzz/regressions -type f ! -name 'README*' 2>/dev/null | sort)
mkdir -p build-fuzz/artifacts build-fuzz/fuzz-logs
# The HF folder target rewrites its scratch folder's JSON files on every input: keep them in memory.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0 total=0
summary=""
for t in "${targets[@]}"; do
  bin=build-fuzz/$t log=build-fuzz/fuzz-logs/$t.log
  opts=(-timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -artifact_prefix="build-fuzz/artifacts/$t-")
  status=ok
  if [ ${#regressions[@]} -gt 0 ] && ! "$bin" "${opts[@]}" "${regressions[@]}" >"$log.regressions" 2>&1; then
    status="FAILED on a regression input (see $log.regressions)"
  fi
  corpus=build-fuzz/fuzz-corpus/$t
  rm -rf "$corpus"
  mkdir -p "$corpus"
  cp tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  start=$(date +%s)
  if ! "$bin" "${opts[@]}" -max_total_time="$seconds" -print_final_stats=1 "$corpus" >"$log" 2>&1; then
    status="FAILED (see $log; input in build-fuzz/artifacts/)"
  fi
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  execs=${execs:-0}
  total=$(( total + execs ))
  [ "$status" = ok ] || { failed=1; grep -E "ERROR|SUMMARY|Test unit written|deadly|leak|timeout" "$log" "$log.regressions" 2>/dev/null | head -n 20 || true; }
  summary+=$(printf '%-20s %12s executions %6s s  %s' "$t" "$execs" "$took" "$status")$'\n'
done
printf '%s' "$summary"
echo "fuzz: $total executions across ${#targets[@]} targets, ${#regressions[@]} regression inputs each"
if [ "$failed" != 0 ]; then
  echo "fuzz: FAILED (a crash, leak, timeout or out-of-memory; inputs in build-fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: no crash, leak or timeout"
