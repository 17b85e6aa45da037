#!/usr/bin/env bash
# Builds attn and runs the demo: a one-head attention model, trained from
# scratch with attn's autograd, learns to name the largest token of a
# sequence. Installs missing apt packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"${ATTN_JOBS:-2}" --target train_tiny attn_cli
echo
build/bin/train_tiny "$@"
