#!/usr/bin/env bash
# The one-thread microbenchmark behind streaming_rows() (src/kernels/cpu/gemm.h): the streaming
# kernel against oneDNN's matmul for 1 .. 64 activation rows, W 3072 x 768 and 768 x 3072, in f32,
# bf16, f16, int8 and int4 (bench/gemm_rows.cpp says how it measures). Builds the bench_gemm_rows target in
# build/ (configured with the tests, the default), prints the CPU model and the load average (the
# figures mean little on a busy machine), then the tables and oneDNN's ISA and kernels.
# usage: bench/gemm_rows.sh [--max-rows N] [--calls N]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build bench_gemm_rows >/dev/null
printf 'CPU: %s; load average: %s\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
build/bench_gemm_rows "$@"
