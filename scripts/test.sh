#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the C++ unit tests (ctest), the reference
# tests against PyTorch, fairscale, transformers, safetensors and tokenizers (pytest), then the
# same again under AddressSanitizer + UBSan, then every libFuzzer target for a bounded time
# (scripts/fuzz.sh; OPTFORGE_FUZZ_SECONDS per target, default 15).
# Usage: scripts/test.sh [--quick]   (--quick: skip the sanitizer build and the fuzzers)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
jobs=$(nproc)

bash scripts/setup.sh

echo "== C++ layout (clang-format)"
bash scripts/format.sh --check

echo "== build (Release) and C++ tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== reference tests (pytest) against build/optforge"
OPTFORGE_BIN="$PWD/build/optforge" .venv/bin/python -m pytest -q -p no:cacheprovider tests/python tests/fixtures

if [ "$quick" = 1 ]; then exit 0; fi

echo "== build with AddressSanitizer + UBSan, C++ tests and reference tests again"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPTFORGE_SANITIZE=ON >/dev/null
ninja -C build-asan -j"$jobs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j"$jobs")
OPTFORGE_BIN="$PWD/build-asan/optforge" OPTFORGE_SANITIZED=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/python

echo "== fuzz every parser of untrusted input (libFuzzer, ${OPTFORGE_FUZZ_SECONDS:-15} s per target)"
bash scripts/fuzz.sh "${OPTFORGE_FUZZ_SECONDS:-15}"
