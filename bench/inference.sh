#!/usr/bin/env bash
# OPT inference on the CPU: optforge beside transformers (torch CPU) in the same run with the same
# threads, and beside the memory-bandwidth floor for batch-1 decode (weight bytes per token /
# measured copy bandwidth). Random-weight models from `optforge demo-model`. The int8 and int4 rows
# are the f16 model run with --quantize int8 (matmul weights int8 + f32 row scales) and --quantize
# int4 (packed nibbles + an f16 scale per 32 weights); the tied embedding stays f16.
#   prompt  : tokens/s of a 512-token prefill (one sequence)
#   b1, b8  : decode tokens/s at batch 1 and 8 (greedy steps through the KV cache; b8 counts 8/step)
#   b32     : decode tokens/s at batch 32 (optforge only; should never be below b8)
#   floor   : batch-1 decode tokens/s if every weight byte were read once at copy bandwidth (int8,
#             int4: the bytes read per token, the quantized matrices + their scales + the f16 rest)
#   GF/s    : prompt GFLOP/s (2 x matmul parameters x tokens), beside the f32 sgemm peak
# With ctranslate2 in .venv (scripts/requirements.txt pins it), CTranslate2 rows follow the f32
# and int8 ones (bench/inference_ref.py ct2).
# Prints the CPU model and the kernels optforge chose (oneDNN's ISA and matmul implementations, as
# `generate --json` reports them: timing.kernels, or timing.threads in older builds). --before BIN
# also runs an older optforge binary on the same models (a "before" row under each "after" row).
# usage: bench/inference.sh [--full] [--shapes "125m ..."] [--threads N] [--before BIN]
#        (--full adds the 1.3B shape)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${OPTFORGE_BIN:-build/optforge}
py=.venv/bin/python
shapes="125m 350m"
threads=$(nproc)
before=""
while [ $# -gt 0 ]; do
  case $1 in
    --full) shapes="125m 350m 1.3b" ;;
    --threads) threads=$2; shift ;;
    --shapes) shapes=$2; shift ;;
    --before) before=$2; shift ;;
    *) echo "usage: $0 [--full] [--shapes \"125m ...\"] [--threads N] [--before BIN]" >&2; exit 2 ;;
  esac
  shift
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/optforge-inference.XXXXXX")
trap 'rm -rf "$dir"' EXIT
prompt=512
decode=32
ids() { $py -c "import sys; n=int(sys.argv[1]); print(','.join(['2']+[str((i*7919)%50262+3) for i in range(n-1)]))" "$1"; }
long=$(ids $prompt)
short=$(ids 16)

floor=$($py bench/inference_ref.py floor "$threads")
copy_gbps=$(echo "$floor" | $py -c "import json,sys; print(json.load(sys.stdin)['copy_gbps'])")
sgemm=$(echo "$floor" | $py -c "import json,sys; print(json.load(sys.stdin)['sgemm_gflops'])")
printf 'threads %s; copy bandwidth %.1f GB/s; f32 sgemm (torch.mm 2048^3) %.0f GFLOP/s; %s\n' \
  "$threads" "$copy_gbps" "$sgemm" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
if $py -c "import ctranslate2" 2>/dev/null; then
  ct2=$($py -c "import ctranslate2; print(ctranslate2.__version__)")
  echo "CTranslate2 $ct2 rows (ct2): its Generator on the same weights, compute type float32 for f32, int8 for int8"
else
  ct2=
  echo "CTranslate2: not installed in .venv (not measured)"
fi
printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n%-6s %-5s | %18s %7s | %21s %7s %6s | %17s | %8s\n' "" "" "prompt tok/s" "GF/s" "decode b1 tok/s" "floor" "%floor" "decode b8 tok/s" "b32"
printf '%-6s %-5s | %9s %8s %7s | %10s %10s %7s %6s | %8s %8s | %8s\n' shape dtype optforge torch ours optforge torch "" "" optforge torch optforge

# best of 2 runs of optforge binary EXE's generate --json; prints the tokens/s of its prompt (no
# decode tokens) or of its decode steps
ours() {
  local best=0 v exe=$1
  shift
  for _ in 1 2; do
    v=$("$exe" generate "$@" $quantize --json --threads "$threads" --temperature 0 --ignore-eos |
        $py -c "import json,sys; t=json.load(sys.stdin)['timing']; print(t['prompt_tokens']/t['prompt_seconds'] if t['decode_tokens']==0 else t['decode_tokens']/t['decode_seconds'])")
    best=$($py -c "print(max($best, $v))")
  done
  echo "$best"
}

quantize=""  # "--quantize int8" for the int8 rows

# sets the four figures of a row, p b1 b8 b32 (tokens/s), for optforge binary EXE on MODEL
measure() {
  local exe=$1 model=$2
  p=$(ours "$exe" "$model" --prompt-ids "$long" --max-tokens 1)
  b1=$(ours "$exe" "$model" --prompt-ids "$short" --max-tokens $((decode + 1)))
  b8=$(ours "$exe" "$model" --prompt-ids "$short" --max-tokens $((decode + 1)) --n 8)
  b32=$(ours "$exe" "$model" --prompt-ids "$short" --max-tokens $((decode + 1)) --n 32)
}

# one table row: label shape dtype prompt b1 b8 b32 torch-json
row() {
    $py - "$@" "$copy_gbps" <<'PY'
import json, sys
label, shape, dtype, p, b1, b8, b32, ref, bw = sys.argv[1:]
ref = json.loads(ref)
# weights read per decode step, from the published shape (positions: one row, so left out)
L, E, H, Ein = {"125m": (12, 768, 12, 768), "350m": (24, 1024, 16, 512), "1.3b": (24, 2048, 32, 2048)}[shape]
V, F = 50272, 4 * E
matmul = L * (4 * E * E + 2 * E * F) + (2 * E * Ein if Ein != E else 0)
params = matmul + V * Ein + L * (9 * E + F) + (2 * E if shape != "350m" else 0)
if dtype == "int8":  # int8 matrices, one f32 scale per matrix row, everything else f16
    rows = L * (4 * E + F + E) + (E + Ein if Ein != E else 0)
    nbytes = matmul + 4 * rows + 2 * (params - matmul)
elif dtype == "int4":  # packed nibbles, an f16 scale per 32 weights (K divides by 32 here), the rest f16
    nbytes = matmul // 2 + 2 * (matmul // 32) + 2 * (params - matmul)
else:
    nbytes = params * (4 if dtype == "f32" else 2)
floor = float(bw) * 1e9 / nbytes
gf = 2 * matmul * 512 * float(p) / 512 / 1e9
f = lambda v: "-" if v is None else f"{v:.1f}"
print(f"{label:<6} {dtype:<5} | {float(p):9.1f} {f(ref['prompt_tps']):>8} {gf:7.1f} | {float(b1):10.1f} "
      f"{f(ref['decode_b1_tps']):>10} {floor:7.1f} {100 * float(b1) / floor:5.0f}% | {float(b8):8.1f} {f(ref['decode_b8_tps']):>8} | {float(b32):8.1f}")
PY
}

for shape in $shapes; do
  for dtype in f32 bf16 f16 int8 int4; do
    model=$dir/$shape-$dtype.pt
    quantize=""
    stored=$dtype
    case $dtype in int8 | int4) quantize="--quantize $dtype" stored=f16 ;; esac
    "$bin" demo-model --shape "$shape" --dtype "$stored" -o "$model" >/dev/null
    if [ -z "${kernels_shown:-}" ] || [ "$dtype" = bf16 ]; then  # the kernels each weight dtype chose
      echo "$dtype kernels: $("$bin" generate "$model" --prompt-ids "$long" --max-tokens 1 --json --threads "$threads" |
        $py -c "import json,sys; t=json.load(sys.stdin)['timing']; print(t.get('kernels', t['threads']))")"
      kernels_shown=1
    fi
    measure "$bin" "$model"
    if [ "$stored" = f16 ]; then
      # torch 1.13: no f16 matmul on CPU; no weight-only int8/int4 in it either
      ref='{"prompt_tps": null, "decode_b1_tps": null, "decode_b8_tps": null}'
    else
      ref=$($py bench/inference_ref.py torch "$model" "$dtype" "$threads" $prompt $decode)
    fi
    row "$shape" "$shape" "$dtype" "$p" "$b1" "$b8" "$b32" "$ref"
    ct2_type=$(case $dtype in f32) echo float32 ;; int8) echo int8 ;; esac)
    if [ -n "$ct2" ] && [ -n "$ct2_type" ]; then  # CTranslate2's CPU build computes in neither bf16 nor f16
      c=$($py bench/inference_ref.py ct2 "$model" "$ct2_type" "$threads" $prompt $decode)
      read -r p b1 b8 b32 < <(echo "$c" | $py -c "import json,sys; c=json.load(sys.stdin); print(c['prompt_tps'], c['decode_b1_tps'], c['decode_b8_tps'], c['decode_b32_tps'])")
      row "ct2" "$shape" "$dtype" "$p" "$b1" "$b8" "$b32" '{"prompt_tps": null, "decode_b1_tps": null, "decode_b8_tps": null}'
    fi
    if [ -n "$before" ] && [ -z "$quantize" ]; then  # older binaries may lack --quantize
      measure "$before" "$model"
      row "before" "$shape" "$dtype" "$p" "$b1" "$b8" "$b32" "$ref"
    fi
    rm -f "$model"
  done
done
