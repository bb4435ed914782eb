#!/usr/bin/env bash
# The main job on the built-in default: install, build, then generate a deterministic random
# OPT-125M-shaped checkpoint with our own writer (metaseq singleton layout), inspect it, and
# convert it to safetensors. No network, no model hub: the model comes from our own code.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
out=${OPTFORGE_DEMO_DIR:-out/demo}
mkdir -p "$out"
bin=build/optforge
echo "== 1. generate the default model"
$bin demo-model --shape 125m --seed 0 -o "$out/restored.pt"
echo "== 2. inspect it"
$bin inspect "$out/restored.pt" | head -n 8
echo "   ..."
$bin inspect "$out/restored.pt" | tail -n 6
echo "== 3. convert to safetensors"
$bin convert "$out/restored.pt" "$out/model.safetensors"
$bin inspect "$out/model.safetensors" | head -n 3
echo "done: $out"
