#!/usr/bin/env bash
# The completions server under load: throughput (generated tokens/s) and p50/p99 time to first
# token (TTFT) and per-token latency (TPOT, the gap between streamed tokens) at 1, 8 and 32
# concurrent clients on loopback, beside offline batched `optforge generate` at the same batch
# size (n samples decoded together: its decode tokens/s, and its end-to-end tokens/s including
# the prefill). A 125M-shaped random model (f16) from `optforge demo-model`; greedy, ignore_eos,
# so every request generates exactly --max-tokens.
# usage: bench/serve.sh [--threads N] [--max-tokens T] [--requests R] [--shape S]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${OPTFORGE_BIN:-build/optforge}
py=.venv/bin/python
threads=$(nproc)
max_tokens=32
requests=2
prompt=16
shape=125m
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2; shift ;;
    --max-tokens) max_tokens=$2; shift ;;
    --requests) requests=$2; shift ;;
    --shape) shape=$2; shift ;;
    *) echo "usage: $0 [--threads N] [--max-tokens T] [--requests R] [--shape S]" >&2; exit 2 ;;
  esac
  shift
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/optforge-serve-bench.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

model=$dir/opt-$shape.pt
"$bin" demo-model --shape "$shape" -o "$model" >/dev/null
"$bin" serve "$model" --port 0 --threads "$threads" --max-batch 32 >"$dir/url" 2>"$dir/log" &
server_pid=$!
for _ in $(seq 300); do grep -q http "$dir/url" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[^/ ]*' "$dir/url")
ids=$($py -c "print(','.join(['2'] + [str(3 + (j * 7907) % 50000) for j in range($prompt - 1)]))")

printf 'optforge serve, OPT-%s shape (f16, random weights), %s threads, prompt %s tokens, %s new tokens per request, %s requests per client\n' \
  "$shape" "$threads" "$prompt" "$max_tokens" "$requests"
printf '%s\n\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%7s | %9s %8s | %9s %9s | %9s %9s | %14s %14s\n' clients "tok/s" "x 1 cl." "TTFT p50" "TTFT p99" "TPOT p50" "TPOT p99" "generate --n" "(end-to-end)"
printf '%7s | %9s %8s | %9s %9s | %9s %9s | %14s %14s\n' "" "" "" "ms" "ms" "ms" "ms" "decode tok/s" "tok/s"
base=
for c in 1 8 32; do
  r=$($py bench/serve_load.py "$url" "opt-$shape" --clients "$c" --requests "$requests" --max-tokens "$max_tokens" --prompt-tokens "$prompt")
  off=$("$bin" generate "$model" --prompt-ids "$ids" --max-tokens "$max_tokens" --n "$c" --temperature 0 --ignore-eos --json --threads "$threads" |
        $py -c "import json,sys; t=json.load(sys.stdin)['timing']; print(t['decode_tokens']/t['decode_seconds'], ($c*$max_tokens)/(t['prompt_seconds']+t['decode_seconds']))")
  echo "$r $off" | $py -c "
import json, sys
line = sys.stdin.read().split()
r = json.loads(' '.join(line[:-2])); dec, e2e = map(float, line[-2:])
base = float('$base' or r['tokens_per_s'])
if r['errors']: print('errors:', r['errors'], r['first_error'])
print('%7d | %9.1f %7.1fx | %9.1f %9.1f | %9.1f %9.1f | %14.1f %14.1f' % (r['clients'], r['tokens_per_s'], r['tokens_per_s'] / base,
      r['ttft_p50'] * 1e3, r['ttft_p99'] * 1e3, r['tpot_p50'] * 1e3, r['tpot_p99'] * 1e3, dec, e2e))"
  [ -z "$base" ] && base=$(echo "$r" | $py -c "import json,sys; print(json.load(sys.stdin)['tokens_per_s'])")
done
echo
echo "tok/s: generated tokens per second over all clients; x 1 cl.: against one client."
echo "generate --n C: offline batched decode of C samples in one process (no HTTP, no prefill), and"
echo "end-to-end: C x max_tokens over its prefill + decode time."
