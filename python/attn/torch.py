"""attn's fused attention inside PyTorch models.

scaled_dot_product_attention(q, k, v, ...) takes and returns torch tensors
(CPU; float32 runs attn's fused kernels, float64 its exact reference) and is
differentiable in q, k, v and a float attn_mask: its backward is attn's fused
backward. Tensors cross between torch and attn without copies (DLPack).

MultiheadAttention is torch.nn.MultiheadAttention (same constructor,
parameters, state_dict and forward signature) whose attention runs in attn.
The weights it returns when need_weights=True are the probabilities before
dropout and carry no gradient (attn computes them from the saved log-sum-exp
after the fused forward); gradients flow through the attention output.
"""
import math

import torch as _torch
from torch.utils import dlpack as _dlpack

from . import _attn

_F = _attn._functional

__all__ = ["scaled_dot_product_attention", "MultiheadAttention"]


_from_capsule = _torch._C._from_dlpack if hasattr(_torch._C, "_from_dlpack") else _dlpack.from_dlpack


def _to_attn(t, name):
    # A view of t's memory (attn checks the device and the dtype).
    return _attn.from_dlpack(t)


def _to_torch(a):
    # A torch tensor sharing the attn tensor's memory.
    return _from_capsule(a.__dlpack__())


def _seed_generator(dropout_p):
    # Dropout draws from a generator seeded from torch's, so that
    # torch.manual_seed makes a run reproducible.
    if dropout_p <= 0.0:
        return None
    return _attn.Generator(int(_torch.randint(0, 2 ** 62, (1,)).item()))


class _Attention(_torch.autograd.Function):
    """attn's fused forward; its backward runs attn's fused backward on the
    graph the forward recorded (the output and its log-sum-exp)."""

    @staticmethod
    def forward(ctx, q, k, v, attn_mask, options, need_weights, average_heads):
        needs = ctx.needs_input_grad
        aq, ak, av = _to_attn(q, "query"), _to_attn(k, "key"), _to_attn(v, "value")
        am = None if attn_mask is None else _to_attn(attn_mask, "attn_mask")
        leaves = []
        for t, need in ((aq, needs[0]), (ak, needs[1]), (av, needs[2]), (am, needs[3])):
            if t is not None and need:
                t.requires_grad = True
                leaves.append(t)
            else:
                leaves.append(None)
        if need_weights:
            out, lse = _F.scaled_dot_product_attention(aq, ak, av, am, return_lse=True, **options)
            with_grad = _attn.is_grad_enabled()
            _attn.set_grad_enabled(False)
            try:
                w = _F.scaled_dot_product_attention_weights(aq.detach(), ak.detach(), lse, am, average_heads=average_heads,
                                                            **options)
            finally:
                _attn.set_grad_enabled(with_grad)
            weights = _to_torch(w)
        else:
            out = _F.scaled_dot_product_attention(aq, ak, av, am, **options)
            weights = None
        result = _to_torch(out)
        ctx.attn_out = out if any(l is not None for l in leaves) else None
        ctx.attn_leaves = leaves
        # Saved so that torch's version counters catch an in-place change of
        # an input or of the output before the backward reads them.
        ctx.save_for_backward(q, k, v, result)
        if weights is None:
            return result, None
        ctx.mark_non_differentiable(weights)
        return result, weights

    @staticmethod
    def backward(ctx, grad_out, _grad_weights):
        ctx.saved_tensors  # the version check
        if ctx.attn_out is None or grad_out is None:
            return None, None, None, None, None, None, None
        inputs = [l for l in ctx.attn_leaves if l is not None]
        grads = _attn.autograd.grad([ctx.attn_out], inputs, [_to_attn(grad_out, "grad_output")], retain_graph=True)
        it = iter(grads)
        out = []
        for l in ctx.attn_leaves:
            g = next(it) if l is not None else None
            out.append(None if g is None else _to_torch(g))
        return out[0], out[1], out[2], out[3], None, None, None


def _options(dropout_p, is_causal, scale, enable_gqa, window, alibi_slopes, softcap):
    o = {"dropout_p": float(dropout_p), "is_causal": bool(is_causal), "scale": scale, "enable_gqa": bool(enable_gqa),
         "softcap": float(softcap)}
    if window is not None:
        o["window"] = window
    if alibi_slopes is not None:
        o["alibi_slopes"] = _to_attn(alibi_slopes, "alibi_slopes")
    if o["dropout_p"] > 0.0:
        o["generator"] = _seed_generator(o["dropout_p"])
    return o


def _attention(q, k, v, attn_mask, options, need_weights, average_heads):
    for t, name in ((q, "query"), (k, "key"), (v, "value"), (attn_mask, "attn_mask")):
        if t is not None and not isinstance(t, _torch.Tensor):
            raise TypeError("attn.torch: %s must be a torch.Tensor, got %s" % (name, type(t).__name__))
    if _torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad or
                                     (attn_mask is not None and attn_mask.requires_grad)):
        return _Attention.apply(q, k, v, attn_mask, options, need_weights, average_heads)
    # Nothing to differentiate: no graph, no autograd.Function.
    if not need_weights:
        return _from_capsule(_F.scaled_dot_product_attention(q, k, v, attn_mask, **options).__dlpack__()), None
    aq, ak, av = _to_attn(q, "query"), _to_attn(k, "key"), _to_attn(v, "value")
    am = None if attn_mask is None else _to_attn(attn_mask, "attn_mask")
    out, lse = _F.scaled_dot_product_attention(aq, ak, av, am, return_lse=True, **options)
    w = _F.scaled_dot_product_attention_weights(aq, ak, lse, am, average_heads=average_heads, **options)
    return _to_torch(out), _to_torch(w)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, window=None, alibi_slopes=None, softcap=0.0):
    """torch.nn.functional.scaled_dot_product_attention (PyTorch 2.5's
    arguments) computed by attn: q (..., Hq, L, E), k (..., Hkv, S, E),
    v (..., Hkv, S, Ev) -> (..., Hq, L, Ev). attn_mask: bool (True = attend)
    or float (added to the scores; it gets a gradient when it requires one).
    window=(left, right) keys around the diagonal (None for no limit on a
    side), alibi_slopes (Hq) a linear distance bias, softcap c: c*tanh(s/c)."""
    if window is None and alibi_slopes is None and not dropout_p and not softcap:
        o = {"is_causal": is_causal, "scale": scale, "enable_gqa": enable_gqa}
    else:
        o = _options(dropout_p, is_causal, scale, enable_gqa, window, alibi_slopes, softcap)
    return _attention(query, key, value, attn_mask, o, False, False)[0]


def _to_additive(mask, dtype):
    if mask.dtype == _torch.bool:
        return _torch.zeros(mask.shape, dtype=dtype).masked_fill_(mask, float("-inf"))
    return mask.to(dtype)


class MultiheadAttention(_torch.nn.MultiheadAttention):
    """torch.nn.MultiheadAttention with attn's fused attention: the same
    constructor, parameters (torch Parameters with torch's names), state_dict
    and forward(query, key, value, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False)."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        # (L, B, E) from here on, as torch's multi_head_attention_forward.
        L, B, E = query.shape
        H = self.num_heads
        D = E // H
        if self._qkv_same_embed_dim:
            wq, wk, wv = self.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        bq = bk = bv = None
        if self.in_proj_bias is not None:
            bq, bk, bv = self.in_proj_bias.chunk(3)
        q = _torch.nn.functional.linear(query, wq, bq)
        k = _torch.nn.functional.linear(key, wk, bk)
        v = _torch.nn.functional.linear(value, wv, bv)
        if attn_mask is not None and attn_mask.dim() == 2:
            attn_mask = attn_mask.unsqueeze(0)
        if self.bias_k is not None:
            k = _torch.cat([k, self.bias_k.repeat(1, B, 1)])
            v = _torch.cat([v, self.bias_v.repeat(1, B, 1)])
            if attn_mask is not None:
                attn_mask = _torch.nn.functional.pad(attn_mask, (0, 1))
            if key_padding_mask is not None:
                key_padding_mask = _torch.nn.functional.pad(key_padding_mask, (0, 1))
        if self.add_zero_attn:
            k = _torch.cat([k, k.new_zeros((1, B, E))])
            v = _torch.cat([v, v.new_zeros((1, B, E))])
            if attn_mask is not None:
                attn_mask = _torch.nn.functional.pad(attn_mask, (0, 1))
            if key_padding_mask is not None:
                key_padding_mask = _torch.nn.functional.pad(key_padding_mask, (0, 1))
        S = k.shape[0]
        # (L, B, E) -> (B, H, L, D)
        q = q.reshape(L, B, H, D).permute(1, 2, 0, 3)
        k = k.reshape(S, B, H, D).permute(1, 2, 0, 3)
        v = v.reshape(S, B, H, D).permute(1, 2, 0, 3)
        # One mask for the kernel: bool True = attend, or float added to the scores.
        mask = None
        if attn_mask is not None:  # (1, L, S) or (B * H, L, S)
            mask = attn_mask.unsqueeze(0) if attn_mask.shape[0] == 1 else attn_mask.reshape(B, H, L, S)
        if key_padding_mask is not None:
            kpm = key_padding_mask.reshape(B, 1, 1, S)
            if mask is None:
                mask = kpm
            elif mask.dtype == _torch.bool and kpm.dtype == _torch.bool:
                mask = mask | kpm
            else:
                mask = _to_additive(mask, q.dtype) + _to_additive(kpm, q.dtype)
        if mask is not None and mask.dtype == _torch.bool:
            mask = ~mask
        causal = bool(is_causal) and attn_mask is None
        o = _options(self.dropout if self.training else 0.0, causal, None, False, None, None, 0.0)
        out, weights = _attention(q, k, v, mask, o, need_weights, average_attn_weights)
        # (B, H, L, D) -> (L, B, E) -> out_proj
        out = out.permute(2, 0, 1, 3).reshape(L, B, E)
        out = _torch.nn.functional.linear(out, self.out_proj.weight, self.out_proj.bias)
        if not batched:
            out = out.squeeze(1)
            if weights is not None:
                weights = weights.squeeze(0)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, weights
