#!/usr/bin/env python3
"""PyTorch reference cases for tests/test_parity.cpp.

Draws random configurations of every op in tests/support/op_table.cpp (same
names, same parameters), runs them in PyTorch (float32), back-propagates a
random output gradient, and writes inputs, outputs, output gradients and input
gradients to one safetensors file with the small writer in st_writer.py.

Keys: "NNN.inK", "NNN.out", "NNN.gout", "NNN.gradK", and PyTorch in float64
on the same values "NNN.out64", "NNN.grad64_K"; the metadata entry "NNN" holds
{"op", "params", "grad": [bool per input], "forward_only", "judged64"} as JSON.

Usage: gen_ops.py --out FILE [--seed S] [--per-op N]
"""
import argparse
import json
import os
import random
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_writer import write_safetensors  # noqa: E402

torch.set_num_threads(1)


def rand_shape(rng, ndim, lo=1, hi=5):
    return [rng.randint(lo, hi) for _ in range(ndim)]


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.tg = torch.Generator().manual_seed(seed)

    def real(self, shape):
        return torch.randn(shape, generator=self.tg)

    def pos(self, shape):
        return torch.rand(shape, generator=self.tg) * 1.5 + 0.5

    def unit(self, shape):
        return torch.rand(shape, generator=self.tg)

    def index(self, shape, hi):
        return torch.randint(0, hi, shape, generator=self.tg)

    def mask(self, shape):
        return torch.rand(shape, generator=self.tg) < 0.5

    def shape(self, ndim, lo=1, hi=5):
        return rand_shape(self.rng, ndim, lo, hi)

    def bshape(self, shape):
        """A shape that broadcasts to `shape` (some dims 1, some leading dims dropped)."""
        drop = self.rng.randint(0, len(shape) - 1) if shape else 0
        return [1 if self.rng.random() < 0.4 else s for s in shape[drop:]]


def reduction_of(p):
    return p.get("reduction", "mean")


# Ops whose outputs are bool or int64: compared forward only, and they must
# not record a gradient (tests/test_parity.cpp keeps the same list).
FORWARD_ONLY = {"eq", "ne", "lt", "le", "gt", "ge", "logical_not", "logical_and", "logical_or", "argmax_dim",
                "argmin_dim", "argmax_all", "max_dim_indices"}

# Ops whose float32 PyTorch results are ill-conditioned enough that attn is
# judged against PyTorch in float64 instead.
FLOAT64_JUDGED = {"layer_norm"}

# op name -> (torch function of (inputs, params), case maker of (gen) -> (params, inputs, grad flags))
OPS = {}


def op(name):
    def deco(maker):
        OPS.setdefault(name, []).append(maker)
        return maker
    return deco


TORCH = {
    "add": lambda x, p: x[0] + x[1],
    "sub": lambda x, p: x[0] - x[1],
    "mul": lambda x, p: x[0] * x[1],
    "div": lambda x, p: x[0] / x[1],
    "maximum": lambda x, p: torch.maximum(x[0], x[1]),
    "minimum": lambda x, p: torch.minimum(x[0], x[1]),
    "pow": lambda x, p: torch.pow(x[0], x[1]),
    "pow_scalar": lambda x, p: torch.pow(x[0], p["exponent"]),
    "add_scalar": lambda x, p: x[0] + p["value"],
    "rsub_scalar": lambda x, p: p["value"] - x[0],
    "mul_scalar": lambda x, p: x[0] * p["value"],
    "rdiv_scalar": lambda x, p: p["value"] / x[0],
    "neg": lambda x, p: -x[0],
    "exp": lambda x, p: torch.exp(x[0]),
    "log": lambda x, p: torch.log(x[0]),
    "log1p": lambda x, p: torch.log1p(x[0]),
    "sqrt": lambda x, p: torch.sqrt(x[0]),
    "rsqrt": lambda x, p: torch.rsqrt(x[0]),
    "abs": lambda x, p: torch.abs(x[0]),
    "sin": lambda x, p: torch.sin(x[0]),
    "cos": lambda x, p: torch.cos(x[0]),
    "tanh": lambda x, p: torch.tanh(x[0]),
    "sigmoid": lambda x, p: torch.sigmoid(x[0]),
    "relu": lambda x, p: torch.relu(x[0]),
    "clamp": lambda x, p: torch.clamp(x[0], p.get("min"), p.get("max")),
    "where": lambda x, p: torch.where(x[0], x[1], x[2]),
    "masked_fill": lambda x, p: x[0].masked_fill(x[1], p["value"]),
    "sum": lambda x, p: torch.sum(x[0], p["dim"], p.get("keepdim", False)) if "dim" in p else torch.sum(x[0]),
    "mean": lambda x, p: torch.mean(x[0], p["dim"], p.get("keepdim", False)) if "dim" in p else torch.mean(x[0]),
    "var": lambda x, p: torch.var(x[0], p["dim"], correction=p.get("correction", 1), keepdim=p.get("keepdim", False)),
    "std": lambda x, p: torch.std(x[0], p["dim"], correction=p.get("correction", 1), keepdim=p.get("keepdim", False)),
    "amax": lambda x, p: torch.amax(x[0], p["dim"], p.get("keepdim", False)),
    "amin": lambda x, p: torch.amin(x[0], p["dim"], p.get("keepdim", False)),
    "max_dim": lambda x, p: torch.max(x[0], p["dim"], p.get("keepdim", False))[0],
    "min_dim": lambda x, p: torch.min(x[0], p["dim"], p.get("keepdim", False))[0],
    "max_all": lambda x, p: torch.max(x[0]),
    "eq": lambda x, p: torch.eq(x[0], x[1]),
    "ne": lambda x, p: torch.ne(x[0], x[1]),
    "lt": lambda x, p: torch.lt(x[0], x[1]),
    "le": lambda x, p: torch.le(x[0], x[1]),
    "gt": lambda x, p: torch.gt(x[0], x[1]),
    "ge": lambda x, p: torch.ge(x[0], x[1]),
    "logical_not": lambda x, p: torch.logical_not(x[0]),
    "logical_and": lambda x, p: torch.logical_and(x[0], x[1]),
    "logical_or": lambda x, p: torch.logical_or(x[0], x[1]),
    "argmax_dim": lambda x, p: torch.argmax(x[0], p["dim"], p.get("keepdim", False)),
    "argmin_dim": lambda x, p: torch.argmin(x[0], p["dim"], p.get("keepdim", False)),
    "argmax_all": lambda x, p: torch.argmax(x[0]),
    "max_dim_indices": lambda x, p: torch.max(x[0], p["dim"], p.get("keepdim", False))[1],
    "logsumexp": lambda x, p: torch.logsumexp(x[0], p["dim"], p.get("keepdim", False)),
    "matmul": lambda x, p: torch.matmul(x[0], x[1]),
    "matmul_bt": lambda x, p: torch.matmul(x[0], x[1].transpose(-1, -2)),
    "mm": lambda x, p: torch.mm(x[0], x[1]),
    "bmm": lambda x, p: torch.bmm(x[0], x[1]),
    "cat": lambda x, p: torch.cat(x, p.get("dim", 0)),
    "stack": lambda x, p: torch.stack(x, p.get("dim", 0)),
    "split": lambda x, p: torch.split(x[0], p["size"], p.get("dim", 0))[p["index"]],
    "chunk": lambda x, p: torch.chunk(x[0], p["chunks"], p.get("dim", 0))[p["index"]],
    "index_select": lambda x, p: torch.index_select(x[0], p["dim"], x[1]),
    "gather": lambda x, p: torch.gather(x[0], p["dim"], x[1]),
    "scatter_add": lambda x, p: torch.scatter_add(x[0], p["dim"], x[1], x[2]),
    "pad": lambda x, p: F.pad(x[0], p["pad"], value=p.get("value", 0.0)),
    "tril": lambda x, p: torch.tril(x[0], p.get("diagonal", 0)),
    "triu": lambda x, p: torch.triu(x[0], p.get("diagonal", 0)),
    "transpose": lambda x, p: x[0].transpose(p["dim0"], p["dim1"]),
    "permute": lambda x, p: x[0].permute(p["dims"]),
    "reshape": lambda x, p: x[0].reshape(p["shape"]),
    "slice": lambda x, p: x[0].narrow(p["dim"], 0, x[0].shape[p["dim"]])[
        (slice(None),) * (p["dim"] % x[0].dim()) + (slice(p["start"], p["end"], p.get("step", 1)),)],
    "select": lambda x, p: x[0].select(p["dim"], p["index"]),
    "narrow": lambda x, p: x[0].narrow(p["dim"], p["start"], p["length"]),
    "unsqueeze": lambda x, p: x[0].unsqueeze(p["dim"]),
    "squeeze": lambda x, p: x[0].squeeze(p["dim"]) if "dim" in p else x[0].squeeze(),
    "expand": lambda x, p: x[0].expand(p["shape"]),
    "flatten": lambda x, p: torch.flatten(x[0], p.get("start_dim", 0), p.get("end_dim", -1)),
    "contiguous_t": lambda x, p: x[0].transpose(0, 1).contiguous(),
    "gelu": lambda x, p: F.gelu(x[0], approximate=p.get("approximate", "none")),
    "elu": lambda x, p: F.elu(x[0], p.get("alpha", 1.0)),
    "leaky_relu": lambda x, p: F.leaky_relu(x[0], p.get("negative_slope", 0.01)),
    "softplus": lambda x, p: F.softplus(x[0], p.get("beta", 1.0), p.get("threshold", 20.0)),
    "softmax": lambda x, p: F.softmax(x[0], p["dim"]),
    "log_softmax": lambda x, p: F.log_softmax(x[0], p["dim"]),
    "layer_norm": lambda x, p: F.layer_norm(x[0], p["normalized_shape"], x[1] if len(x) > 1 else None,
                                            x[2] if len(x) > 2 else None, p.get("eps", 1e-5)),
    "linear": lambda x, p: F.linear(x[0], x[1], x[2] if len(x) > 2 else None),
    "embedding": lambda x, p: F.embedding(x[0], x[1], p.get("padding_idx")),
    "conv2d": lambda x, p: F.conv2d(x[0], x[1], x[2] if len(x) > 2 else None, p.get("stride", 1),
                                    p.get("padding", 0), p.get("dilation", 1), p.get("groups", 1)),
    "max_pool2d": lambda x, p: F.max_pool2d(x[0], p["kernel_size"], p.get("stride"), p.get("padding", 0),
                                            p.get("dilation", 1), p.get("ceil_mode", False)),
    "avg_pool2d": lambda x, p: F.avg_pool2d(x[0], p["kernel_size"], p.get("stride"), p.get("padding", 0),
                                            p.get("ceil_mode", False), p.get("count_include_pad", True),
                                            p.get("divisor_override")),
    "adaptive_avg_pool2d": lambda x, p: F.adaptive_avg_pool2d(x[0], p["output_size"]),
    "cross_entropy": lambda x, p: F.cross_entropy(x[0], x[1], x[2] if len(x) > 2 else None,
                                                  ignore_index=p.get("ignore_index", -100),
                                                  reduction=reduction_of(p),
                                                  label_smoothing=p.get("label_smoothing", 0.0)),
    "nll_loss": lambda x, p: F.nll_loss(x[0], x[1], x[2] if len(x) > 2 else None,
                                        ignore_index=p.get("ignore_index", -100), reduction=reduction_of(p)),
    "mse_loss": lambda x, p: F.mse_loss(x[0], x[1], reduction=reduction_of(p)),
    "smooth_l1_loss": lambda x, p: F.smooth_l1_loss(x[0], x[1], reduction=reduction_of(p), beta=p.get("beta", 1.0)),
    "bce_with_logits": lambda x, p: F.binary_cross_entropy_with_logits(
        x[0], x[1], x[2] if p.get("has_weight") else None, reduction=reduction_of(p),
        pos_weight=x[3 if p.get("has_weight") else 2] if p.get("has_pos_weight") else None),
}


def make_cases(g):
    """Yields (op, params, inputs, grad flags) for random configurations."""
    r = g.rng
    for _ in range(3):
        s = g.shape(r.randint(1, 4))
        for name in ["add", "sub", "mul", "maximum", "minimum"]:
            yield name, {}, [g.real(s), g.real(g.bshape(s))], None
        yield "div", {}, [g.real(s), g.pos(g.bshape(s))], None
        yield "pow", {}, [g.pos(s), g.real(g.bshape(s))], None
        yield "pow_scalar", {"exponent": r.choice([2.0, 3.0, 0.5, -1.5])}, [g.pos(s)], None
        for name in ["add_scalar", "rsub_scalar", "mul_scalar"]:
            yield name, {"value": round(r.uniform(-3, 3), 3)}, [g.real(s)], None
        yield "rdiv_scalar", {"value": round(r.uniform(-3, 3), 3)}, [g.pos(s)], None
        for name in ["neg", "exp", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "gelu", "elu", "leaky_relu"]:
            yield name, {}, [g.real(s) * 2], None
        for name in ["log", "log1p", "sqrt", "rsqrt"]:
            yield name, {}, [g.pos(s)], None
        yield "gelu", {"approximate": "tanh"}, [g.real(s) * 2], None
        yield "elu", {"alpha": 0.5}, [g.real(s)], None
        yield "leaky_relu", {"negative_slope": 0.2}, [g.real(s)], None
        yield "softplus", {"beta": r.choice([1.0, 2.0]), "threshold": r.choice([20.0, 1.0])}, [g.real(s) * 3], None
        yield "clamp", {"min": -0.5, "max": 0.7}, [g.real(s)], None
        yield "clamp", {"max": 0.2}, [g.real(s)], None
        yield "where", {}, [g.mask(g.bshape(s)), g.real(s), g.real(g.bshape(s))], None
        yield "masked_fill", {"value": -1.25}, [g.real(s), g.mask(g.bshape(s))], None

        s3 = g.shape(3)
        d = r.randint(-3, 2)
        kd = r.random() < 0.5
        for name in ["sum", "mean", "amax", "amin", "logsumexp"]:
            yield name, {"dim": [d], "keepdim": kd}, [g.real(s3)], None
        yield "sum", {"dim": [0, 2]}, [g.real(s3)], None
        yield "sum", {}, [g.real(s3)], None
        yield "mean", {}, [g.real(s3)], None
        s3v = [n + 1 for n in s3]
        yield "var", {"dim": [d], "correction": r.choice([0, 1]), "keepdim": kd}, [g.real(s3v)], None
        yield "std", {"dim": [0, 1], "correction": 1}, [g.real(s3v)], None
        yield "max_dim", {"dim": d, "keepdim": kd}, [g.real(s3)], None
        yield "min_dim", {"dim": d}, [g.real(s3)], None
        yield "max_all", {}, [g.real(s3)], None
        # Forward only. Halves in [-2, 2], so that ties and equal entries occur.
        def halves(shape):
            return torch.round(g.real(shape) * 2) / 2
        for name in ["eq", "ne", "lt", "le", "gt", "ge"]:
            yield name, {}, [halves(s3), halves(g.bshape(s3))], [True, True]
        yield "logical_not", {}, [g.mask(s3)], None
        yield "logical_and", {}, [g.mask(s3), g.mask(g.bshape(s3))], None
        yield "logical_or", {}, [g.mask(s3), g.mask(g.bshape(s3))], None
        yield "argmax_dim", {"dim": d, "keepdim": kd}, [g.real(s3)], [True]
        yield "argmin_dim", {"dim": d}, [g.real(s3)], [True]
        yield "argmax_all", {}, [g.real(s3)], [True]
        yield "max_dim_indices", {"dim": d, "keepdim": kd}, [halves(s3)], [True]

        m, k, n, b = g.shape(4, 1, 9)
        yield "matmul", {}, [g.real([m, k]), g.real([k, n])], None
        yield "matmul", {}, [g.real([b, m, k]), g.real([k, n])], None
        yield "matmul", {}, [g.real([b, 1, m, k]), g.real([2, k, n])], None
        yield "matmul", {}, [g.real([k]), g.real([b, k, n])], None
        yield "matmul", {}, [g.real([b, m, k]), g.real([k])], None
        yield "matmul_bt", {}, [g.real([b, m, k]), g.real([b, n, k])], None
        yield "mm", {}, [g.real([m, k]), g.real([k, n])], None
        yield "bmm", {}, [g.real([b, m, k]), g.real([b, k, n])], None

        s = g.shape(3, 2, 5)
        d = r.randint(0, 2)
        parts = []
        for _ in range(r.randint(1, 3)):
            ps = list(s)
            ps[d] = r.randint(1, 4)
            parts.append(g.real(ps))
        yield "cat", {"dim": d}, parts, None
        yield "stack", {"dim": r.randint(-4, 3)}, [g.real(s), g.real(s)], None
        yield "split", {"size": 2, "dim": d, "index": (s[d] - 1) // 2}, [g.real(s)], None
        yield "chunk", {"chunks": 2, "dim": d, "index": 0}, [g.real(s)], None
        yield "index_select", {"dim": d}, [g.real(s), g.index([r.randint(1, 6)], s[d])], None
        ish = [r.randint(1, n) for n in s]
        ish[d] = r.randint(1, 6)
        sish = list(ish)
        sish[d] = min(ish[d], s[d])
        yield "gather", {"dim": d}, [g.real(s), g.index(ish, s[d])], None
        yield "scatter_add", {"dim": d}, [g.real(s), g.index(sish, s[d]), g.real(sish)], None
        yield "pad", {"pad": [r.randint(0, 2), r.randint(-1, 2), r.randint(0, 1), 1], "value": 0.5}, [g.real(s)], None
        yield "tril", {"diagonal": r.randint(-1, 1)}, [g.real(s)], None
        yield "triu", {"diagonal": r.randint(-1, 1)}, [g.real(s)], None
        yield "transpose", {"dim0": 0, "dim1": -1}, [g.real(s)], None
        yield "permute", {"dims": [2, 0, 1]}, [g.real(s)], None
        yield "reshape", {"shape": [-1, s[2]]}, [g.real(s)], None
        yield "slice", {"dim": d, "start": 1, "end": s[d], "step": 2}, [g.real(s)], None
        yield "select", {"dim": d, "index": -1}, [g.real(s)], None
        yield "narrow", {"dim": d, "start": 1, "length": s[d] - 1}, [g.real(s)], None
        yield "unsqueeze", {"dim": r.randint(-4, 3)}, [g.real(s)], None
        yield "squeeze", {"dim": 1}, [g.real([s[0], 1, s[2]])], None
        yield "squeeze", {}, [g.real([1, s[0], 1])], None
        yield "expand", {"shape": [2, s[0], s[1]]}, [g.real([s[0], 1])], None
        yield "flatten", {"start_dim": 1}, [g.real(s)], None
        yield "contiguous_t", {}, [g.real(s)], None

        s = g.shape(3, 1, 6)
        d = r.randint(-3, 2)
        yield "softmax", {"dim": d}, [g.real(s) * 3], None
        yield "log_softmax", {"dim": d}, [g.real(s) * 3], None
        yield "layer_norm", {"normalized_shape": [s[2]]}, [g.real(s), g.real([s[2]]), g.real([s[2]])], None
        yield "layer_norm", {"normalized_shape": s[1:], "eps": 1e-3}, [g.real(s), g.real(s[1:])], None
        yield "layer_norm", {"normalized_shape": [s[2]]}, [g.real(s)], None
        yield "linear", {}, [g.real(s), g.real([r.randint(1, 7), s[2]]), g.real([0])][:2], None
        o = r.randint(1, 7)
        yield "linear", {}, [g.real(s), g.real([o, s[2]]), g.real([o])], None
        v = r.randint(2, 9)
        yield "embedding", {}, [g.index(s[:2], v), g.real([v, 4])], None
        yield "embedding", {"padding_idx": 0}, [g.index(s[:2], v), g.real([v, 3])], None

        # h, w >= 5: a 3-tap kernel with dilation 2 spans 5
        n, c, h, w = g.rng.randint(1, 3), r.randint(1, 3), r.randint(5, 8), r.randint(5, 8)
        groups = r.choice([1, 1, c]) if c > 1 else 1
        o = groups * r.randint(1, 3)
        kh, kw = r.randint(1, 3), r.randint(1, 3)
        yield "conv2d", {"stride": r.choice([1, 2]), "padding": [r.randint(0, 1), r.randint(0, 2)], \
                         "dilation": r.choice([1, 2]), "groups": groups}, \
            [g.real([n, c, h, w]), g.real([o, c // groups, kh, kw]), g.real([o])], None
        yield "conv2d", {}, [g.real([c, h, w]), g.real([o, c, kh, kw])], None
        k = r.randint(2, 3)
        yield "max_pool2d", {"kernel_size": k, "stride": r.randint(1, 2), "padding": r.randint(0, k // 2), \
                             "ceil_mode": r.random() < 0.5}, [g.real([n, c, h, w])], None
        yield "max_pool2d", {"kernel_size": [2, 3], "dilation": 2}, [g.real([n, c, h + 2, w + 2])], None
        yield "avg_pool2d", {"kernel_size": k, "stride": r.randint(1, 2), "padding": r.randint(0, k // 2), \
                             "ceil_mode": r.random() < 0.5, "count_include_pad": r.random() < 0.5}, \
            [g.real([n, c, h, w])], None
        yield "avg_pool2d", {"kernel_size": 2, "divisor_override": 3}, [g.real([c, h, w])], None
        yield "adaptive_avg_pool2d", {"output_size": [r.randint(1, h), r.randint(1, w)]}, [g.real([n, c, h, w])], None

        nb, nc = r.randint(1, 6), r.randint(2, 6)
        red = r.choice(["mean", "sum", "none"])
        tgt = g.index([nb], nc)
        tgt[0] = -100 if r.random() < 0.5 else tgt[0]
        yield "cross_entropy", {"reduction": red}, [g.real([nb, nc]), tgt], [True, False]
        yield "cross_entropy", {"reduction": red, "label_smoothing": 0.15}, [g.real([nb, nc]), tgt], [True, False]
        yield "cross_entropy", {"reduction": red, "label_smoothing": 0.1, "ignore_index": 1}, \
            [g.real([nb, nc]), g.index([nb], nc), g.pos([nc])], [True, False, False]
        yield "cross_entropy", {"label_smoothing": 0.2}, [g.real([nb, nc, 3]), g.index([nb, 3], nc)], [True, False]
        yield "cross_entropy", {}, [g.real([nc]), g.index([], nc)], [True, False]
        yield "cross_entropy", {"reduction": red}, [g.real([nb, nc]), F.softmax(g.real([nb, nc]), 1)], [True, False]
        yield "nll_loss", {"reduction": red}, [g.real([nb, nc]), tgt, g.pos([nc])], [True, False, False]
        yield "nll_loss", {}, [g.real([nb, nc, 2]), g.index([nb, 2], nc)], [True, False]
        s = g.shape(2)
        yield "mse_loss", {"reduction": red}, [g.real(s), g.real(s)], None
        yield "smooth_l1_loss", {"reduction": red, "beta": r.choice([1.0, 0.5, 0.0])}, [g.real(s), g.real(s)], None
        yield "bce_with_logits", {"reduction": red}, [g.real(s) * 3, g.unit(s)], None
        yield "bce_with_logits", {"reduction": red, "has_weight": True, "has_pos_weight": True}, \
            [g.real(s) * 3, g.unit(s), g.pos([s[1]]), g.pos([s[1]])], [True, True, False, False]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261122)
    args = ap.parse_args()
    g = Gen(args.seed)
    tensors, meta = {}, {}
    ops_seen = set()
    for i, (name, params, inputs, grads) in enumerate(make_cases(g)):
        if grads is None:
            grads = [t.is_floating_point() for t in inputs]
        xs = [t.clone().requires_grad_(gr) for t, gr in zip(inputs, grads)]
        out = TORCH[name](xs, params)
        forward_only = name in FORWARD_ONLY
        if forward_only != (not out.requires_grad):
            raise SystemExit("gen_ops: %s: FORWARD_ONLY says %s, PyTorch's output %s a gradient"
                             % (name, forward_only, "records" if out.requires_grad else "does not record"))
        key = "%04d" % i
        for j, t in enumerate(inputs):
            tensors["%s.in%d" % (key, j)] = t
        tensors[key + ".out"] = out.detach()
        if forward_only:
            # Inputs may ask for a gradient (attn must not record one either);
            # there is nothing to back-propagate.
            meta[key] = json.dumps({"op": name, "params": params, "grad": grads, "forward_only": True})
            ops_seen.add(name)
            continue
        gout = torch.randn(out.shape, generator=g.tg)
        out.backward(gout)
        tensors[key + ".gout"] = gout
        for j, x in enumerate(xs):
            if grads[j]:
                tensors["%s.grad%d" % (key, j)] = x.grad
        # Also PyTorch in float64 on the same values: the judge where float32
        # PyTorch's own rounding error exceeds the float32 tolerance
        # (FLOAT64_JUDGED), and everywhere the yardstick of attn's and float32
        # PyTorch's errors (test_parity.cpp's accuracy table).
        xs64 = [(t.double() if t.is_floating_point() else t.clone()).requires_grad_(gr)
                for t, gr in zip(inputs, grads)]
        out64 = TORCH[name](xs64, params)
        out64.backward(gout.double())
        tensors[key + ".out64"] = out64.detach()
        for j, x in enumerate(xs64):
            if grads[j]:
                tensors["%s.grad64_%d" % (key, j)] = x.grad
        meta[key] = json.dumps({"op": name, "params": params, "grad": grads, "forward_only": False,
                                "judged64": name in FLOAT64_JUDGED})
        ops_seen.add(name)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_safetensors(args.out, tensors, meta)
    print("wrote %d cases of %d ops to %s (torch %s)" % (len(meta), len(ops_seen), args.out, torch.__version__))


if __name__ == "__main__":
    main()
