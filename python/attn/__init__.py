"""attn: fused attention and the models built on it, from Python.

Tensors are shared with NumPy and PyTorch without copies::

    import numpy as np, attn
    q = attn.Tensor(np.random.rand(1, 8, 128, 64).astype(np.float32))  # a view
    out = attn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    out.numpy()                                                        # a view

attn.functional and attn.nn mirror torch.nn.functional and torch.nn;
attn.torch puts attn's fused attention (forward and backward) inside PyTorch
models: attn.torch.scaled_dot_product_attention and
attn.torch.MultiheadAttention.
"""
import contextlib as _contextlib

from . import _attn
from ._attn import (Error, Generator, Tensor, __version__, as_tensor, autograd, empty, from_dlpack,
                    from_numpy, get_num_threads, is_grad_enabled, load, load_safetensors, load_torch,
                    manual_seed, models, ones, optim, randn, save_safetensors, set_grad_enabled,
                    set_num_threads, tensor, text, zeros)
from . import functional, nn

import sys as _sys

# The extension's submodules importable by name (import attn.models).
for _name in ("autograd", "models", "optim", "text"):
    _sys.modules[__name__ + "." + _name] = getattr(_attn, _name)

float32 = "float32"
float64 = "float64"
int64 = "int64"
bool_ = "bool"
bfloat16 = "bfloat16"


@_contextlib.contextmanager
def no_grad():
    """Within it, attn records no autograd graph (as torch.no_grad)."""
    previous = _attn.is_grad_enabled()
    _attn.set_grad_enabled(False)
    try:
        yield
    finally:
        _attn.set_grad_enabled(previous)


__all__ = ["Error", "Generator", "Tensor", "as_tensor", "autograd", "empty", "from_dlpack", "from_numpy",
           "functional", "get_num_threads", "is_grad_enabled", "load", "load_safetensors", "load_torch",
           "manual_seed", "models", "nn", "no_grad", "ones", "optim", "randn", "save_safetensors",
           "set_grad_enabled", "set_num_threads", "tensor", "text", "zeros"]
