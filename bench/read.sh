#!/usr/bin/env bash
# Reading a ~2.4 GiB checkpoint: optforge inspect (+ checksum of every tensor) beside torch.load
# (+ the same checksum), with `cat FILE > /dev/null` as the floor. Warm page cache: the file is
# read once before timing, so every row measures the same thing (memory, not disk).
# usage: bench/read.sh [SHAPE]   (default 1.3b: 1.3B parameters in fp16, 2.45 GiB)
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-1.3b}
bin=${OPTFORGE_BIN:-build/optforge}
py=.venv/bin/python
dir=$(mktemp -d "${TMPDIR:-/tmp}/optforge-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
file=$dir/model.pt
"$bin" demo-model --shape "$shape" -o "$file" >/dev/null
bytes=$(stat -c %s "$file")
cat "$file" >/dev/null
echo "file: OPT-$shape demo checkpoint, $bytes bytes ($(nproc) cores, warm cache); best of 3"
printf '%-44s %10s %13s %14s\n' "what" "time" "throughput" "peak RSS"
m() { $py bench/measure.py "$1" "$bytes" 3 -- "${@:2}"; }
m "floor: cat > /dev/null" cat "$file"
m "optforge inspect" "$bin" inspect "$file"
m "optforge inspect --checksum (CRC-32 all)" "$bin" inspect --checksum "$file"
m "torch.load" $py bench/torch_read.py "$file" load
m "torch.load + CRC-32 of all tensors" $py bench/torch_read.py "$file" checksum
if $py -c "import inspect, torch, sys; sys.exit(0 if 'mmap' in inspect.signature(torch.load).parameters else 1)"; then
  m "torch.load(mmap=True) + CRC-32" $py bench/torch_read.py "$file" mmap
else
  echo "torch.load(mmap=True): not available in torch $($py -c 'import torch; print(torch.__version__)')"
fi
