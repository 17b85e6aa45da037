#!/usr/bin/env bash
# Installs ONNX Runtime's Node.js package (CPU) from the npm registry into DIR,
# outside the source tree, for `attn bench models --ort DIR`:
#   bench/setup_ort.sh /tmp/ort
set -euo pipefail
dir=${1:?usage: bench/setup_ort.sh DIR}
command -v npm > /dev/null || { echo "setup_ort: npm is missing (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
[ -f package.json ] || npm init -y > /dev/null
# (ONNXRUNTIME_NODE_INSTALL=skip: no post-install download of GPU providers)
ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund onnxruntime-node@1.30.0
