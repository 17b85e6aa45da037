#!/usr/bin/env bash
# Installs the Debian 12 packages attn needs, skipping those already present.
#   scripts/setup.sh          build dependencies
#   scripts/setup.sh --test   plus what the tests need (PyTorch and numpy for
#                             the parity tests, clang with its fuzzer and
#                             sanitizer runtimes and LLVM's OpenMP for the
#                             fuzz and ThreadSanitizer builds)
set -euo pipefail

pkgs=(g++ make cmake pkg-config
      libopenblas-openmp-dev   # GEMM (the OpenMP build: attn's pool is OpenMP)
      libhwy-dev               # portable SIMD and vectorised exp for the fused kernels
      nlohmann-json3-dev       # safetensors headers, configs
      libcli11-dev             # the attn command-line tool
      libstb-dev               # PNG heatmaps
      libzip-dev               # PyTorch checkpoints (torch.save writes zip archives)
      libgtest-dev libbenchmark-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(python3 python3-torch python3-torchvision python3-pil python3-numpy clang libclang-rt-14-dev libomp-14-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  echo "setup: all ${#pkgs[@]} packages are installed"
  exit 0
fi
echo "setup: installing ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "setup: not root and no sudo; install these as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
