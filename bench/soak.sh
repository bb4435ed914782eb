#!/usr/bin/env bash
# Soak: `optforge serve` under mixed load (streams, walk-aways, bad requests, chat, logprobs,
# best_of) for --seconds (default 600), then its memory and open files at warm-up and at the end
# (bench/soak.py). Model: a 125M-shaped random model cut to 4 layers of width 256, so a 2-core
# machine answers many requests.
# usage: bench/soak.sh [--seconds S] [--workers W] [--threads T] [-- SERVE_OPTIONS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${OPTFORGE_BIN:-build/optforge}
dir=$(mktemp -d "${TMPDIR:-/tmp}/optforge-soak.XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$bin" demo-model --shape 125m --layers 4 --embed-dim 256 --heads 4 -o "$dir/opt-soak.pt" >/dev/null
grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs
.venv/bin/python bench/soak.py "$bin" "$dir/opt-soak.pt" "$@"
