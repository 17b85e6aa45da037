#!/usr/bin/env bash
# cmake --install puts the Python package attn under the prefix's
# site-packages; imported from there (not the build tree), it works.
#   install_check.sh BUILD_DIR PYTHON
set -euo pipefail
build=$1
python=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
init=$(find "$prefix" -path '*site-packages/attn/__init__.py' | head -1)
[[ -n "$init" ]] || { echo "install_check: no site-packages/attn under $prefix" >&2; exit 1; }
site=$(dirname "$(dirname "$init")")
cd "$prefix"
PYTHONPATH="$site" "$python" - "$prefix" <<'PY'
import sys
import numpy as np
import attn
import attn.torch
assert attn.__file__.startswith(sys.argv[1]), attn.__file__
q = attn.Tensor(np.random.rand(1, 2, 16, 8).astype(np.float32))
out = attn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
assert out.shape == (1, 2, 16, 8)
print("install_check: import attn from", attn.__file__, "works")
PY
