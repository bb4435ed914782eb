#!/usr/bin/env bash
# The completions server under load: throughput (generated tokens/s) and p50/p99 time to first
# token (TTFT) and per-token latency (TPOT, the gap between streamed tokens) at 1, 8, 32 and 64
# concurrent clients on loopback, beside offline batched `optforge generate` at the same batch
# size (n samples decoded together: its decode tokens/s, and its end-to-end tokens/s including
# the prefill). Then prefix caching: 32 clients at once whose prompts share a 512-token system
# prompt, TTFT with the cache and with --no-prefix-caching. A 125M-shaped random model (f16) from
# `optforge demo-model`; greedy, ignore_eos, so every request generates exactly --max-tokens.
# Printed beside each row: the load generator's own CPU time (share of one core; it must stay
# far below the server's two cores for the figures to be the server's), and the most KV cache
# tokens in use (paged, from /metrics) against what a whole-context reservation per running
# sequence would hold.
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
context=2048  # every published OPT shape (demo-model --shape) has a 2048-token context
start_server() {  # extra serve options; sets server_pid and url
  "$bin" serve "$model" --port 0 --threads "$threads" --max-batch 64 --max-connections 256 --max-connections-per-client 256 "$@" >"$dir/url" 2>"$dir/log" &
  server_pid=$!
  for _ in $(seq 300); do grep -q http "$dir/url" 2>/dev/null && break; sleep 0.1; done
  url=$(grep -o 'http://[^/ ]*' "$dir/url")
}
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  rm -f "$dir/url"
}
ids=$($py -c "print(','.join(['2'] + [str(3 + (j * 7907) % 50000) for j in range($prompt - 1)]))")

printf 'optforge serve, OPT-%s shape (f16, random weights), %s threads, prompt %s tokens, %s new tokens per request, %s requests per client\n' \
  "$shape" "$threads" "$prompt" "$max_tokens" "$requests"
printf '%s\n\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%7s | %9s %8s | %9s %9s | %9s %9s | %14s %14s | %6s | %9s %11s\n' clients "tok/s" "x 1 cl." "TTFT p50" "TTFT p99" \
  "TPOT p50" "TPOT p99" "generate --n" "(end-to-end)" "client" "KV peak" "reserved"
printf '%7s | %9s %8s | %9s %9s | %9s %9s | %14s %14s | %6s | %9s %11s\n' "" "" "" "ms" "ms" "ms" "ms" "decode tok/s" "tok/s" \
  "CPU" "tokens" "tokens"
start_server
base=
for c in 1 8 32 64; do
  r=$($py bench/serve_load.py "$url" "opt-$shape" --clients "$c" --requests "$requests" --max-tokens "$max_tokens" --prompt-tokens "$prompt")
  off=$("$bin" generate "$model" --prompt-ids "$ids" --max-tokens "$max_tokens" --n "$c" --temperature 0 --ignore-eos --json --threads "$threads" |
        $py -c "import json,sys; t=json.load(sys.stdin)['timing']; print(t['decode_tokens']/t['decode_seconds'], ($c*$max_tokens)/(t['prompt_seconds']+t['decode_seconds']))")
  echo "$r $off" | $py -c "
import json, sys
line = sys.stdin.read().split()
r = json.loads(' '.join(line[:-2])); dec, e2e = map(float, line[-2:])
base = float('$base' or r['tokens_per_s'])
if r['errors']: print('errors:', r['errors'], r['first_error'])
print('%7d | %9.1f %7.1fx | %9.1f %9.1f | %9.1f %9.1f | %14.1f %14.1f | %5.0f%% | %9d %11d' % (r['clients'], r['tokens_per_s'],
      r['tokens_per_s'] / base, r['ttft_p50'] * 1e3, r['ttft_p99'] * 1e3, r['tpot_p50'] * 1e3, r['tpot_p99'] * 1e3, dec, e2e,
      100 * r['client_cpu_s'] / r['seconds'], r['peak_kv_tokens'], min(r['clients'], 64) * $context))"
  [ -z "$base" ] && base=$(echo "$r" | $py -c "import json,sys; print(json.load(sys.stdin)['tokens_per_s'])")
done
stop_server
echo
echo "tok/s: generated tokens per second over all clients; x 1 cl.: against one client."
echo "generate --n C: offline batched decode of C samples in one process (no HTTP, no prefill), and"
echo "end-to-end: C x max_tokens over its prefill + decode time. client CPU: the load generator's"
echo "CPU time over the wall time (100% = one core). KV peak: most KV cache tokens in use (blocks"
echo "of 16); reserved: what min(clients, --max-batch) sequences of the whole context would hold."

echo
echo "prefix caching: 32 clients, one request each, prompts = a shared 512-token prefix + $prompt own tokens"
printf '%-22s | %9s %9s | %9s\n' "" "TTFT p50" "TTFT p99" "KV peak"
for mode in on off; do
  if [ $mode = on ]; then start_server; else start_server --no-prefix-caching; fi
  # One request first puts the prefix in the cache (as a long-running server would have it).
  $py bench/serve_load.py "$url" "opt-$shape" --clients 1 --requests 1 --max-tokens 1 --prompt-tokens "$prompt" \
    --shared-prefix 512 >/dev/null
  r=$($py bench/serve_load.py "$url" "opt-$shape" --clients 32 --requests 1 --max-tokens "$max_tokens" \
      --prompt-tokens "$prompt" --shared-prefix 512)
  echo "$r" | $py -c "
import json, sys
r = json.load(sys.stdin)
if r['errors']: print('errors:', r['errors'], r['first_error'])
print('%-22s | %7.1f ms %7.1f ms | %9d' % ('prefix caching $mode', r['ttft_p50'] * 1e3, r['ttft_p99'] * 1e3, r['peak_kv_tokens']))"
  stop_server
done
