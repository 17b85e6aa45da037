#!/usr/bin/env bash
# Builds attn and runs the demo: a Transformer learns to translate English
# number words into digits ("forty two thousand seven hundred five" ->
# "4 2 7 0 5") in about half a minute on 2 cores, prints a few held-out
# translations and the exact-match accuracy, saves the checkpoint, and draws
# the cross-attention of one sentence as PNG heatmaps. Installs missing apt
# packages first. Extra arguments go to `attn train translate` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"${ATTN_JOBS:-2}" --target attn_cli
echo
build/bin/attn train translate --checkpoint runs/translate.safetensors "$@"
build/bin/attn viz translate --checkpoint runs/translate.safetensors \
  --sentence "forty two thousand seven hundred five" --out runs/translate_attention
echo "checkpoint: runs/translate.safetensors (list it with: build/bin/attn inspect runs/translate.safetensors)"
echo "heatmaps:   runs/translate_attention_avg.png (mean of the heads) and runs/translate_attention_head0..3.png"
