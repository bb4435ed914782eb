#!/usr/bin/env bash
# Sharded metaseq checkpoint -> Hugging Face folder (safetensors): optforge convert (one command,
# consolidating on the fly) beside the Python chain users run today (consolidate script path, then
# transformers' own OPT conversion script + save_pretrained; bench/hf_chain.py, one process per
# step), and beside the disk floor (cp of the input bytes + sync, since both write that much).
# Input: a random fp16 OPT made by our own code (demo-model + reshard to MP=2 x FSDP=4), by default
# the 2.7B shape with 34 layers: 5.6 GB (5.2 GiB). Warm page cache.
# usage: bench/convert.sh [--shape 2.7b] [--layers 34] [--no-python] [--workdir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
shape=2.7b layers=34 python_path=1 work=${TMPDIR:-/tmp}/optforge-bench-convert
bin=${OPTFORGE_BIN:-build/optforge}
py=.venv/bin/python
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --no-python) python_path=0; shift ;;
    --workdir) work=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
rm -rf "$work"; mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
"$bin" demo-model --shape "$shape" --layers "$layers" -o "$work/single.pt" >/dev/null
"$bin" reshard "$work/single.pt" -o "$work/in" --mp 2 --fsdp 4 -q >/dev/null
rm -f "$work/single.pt"
bytes=$(du -sb "$work/in" | cut -f1)
cat "$work"/in/* >/dev/null
echo "input: OPT-$shape shape with $layers layers, fp16, MP=2 x FSDP=4: $bytes bytes; $(nproc) cores; warm cache"
printf '%-44s %10s %13s %14s\n' "what" "time" "throughput" "peak RSS"
m() { "$py" bench/measure.py "$1" "$bytes" 1 -- "${@:2}"; }
m "floor: cp inputs + sync" bash -c "cp -r '$work/in' '$work/copy' && sync"
rm -rf "$work/copy"
m "optforge convert --to hf (sharded input)" "$bin" convert "$work/in" -o "$work/hf" --to hf
rm -rf "$work/hf"
if [ "$python_path" = 1 ]; then
  "$bin" convert "$work/in" -o "$work/hf_cfg" --to hf >/dev/null  # its config.json is the chain's input
  mkdir -p "$work/cfg" && cp "$work/hf_cfg/config.json" "$work/cfg/" && rm -rf "$work/hf_cfg"
  if m "python 1/2: consolidate (fairscale + glue)" "$py" bench/hf_chain.py consolidate "$work/in" "$work/restored.pt" &&
     m "python 2/2: transformers convert + save" "$py" bench/hf_chain.py to-hf "$work/restored.pt" "$work/cfg" "$work/hf_py"; then
    echo "(python total = the sum of its two steps)"
  else
    echo "python chain failed (out of memory on this machine?)"
  fi
fi
