#!/usr/bin/env python3
"""PyTorch reference cases for the nn modules (tests/test_nn_parity.cpp),
and, from gen_family.py, for the attention family built on them.

For each module kind, random configurations (every option varied, odd sizes,
batch 1, unbatched inputs, padding masks, packed bidirectional multi-layer
recurrent nets with unequal lengths). Each case keeps:
  NNN.p.<key>    the module's state_dict from PyTorch, float32, PyTorch's keys
  NNN.in.<name>  the inputs (float32, int64 or bool)
  NNN.out.<i>    the outputs, computed in float64 from the same float32 values
  NNN.gout.<i>   a random gradient for each differentiable output
  NNN.gin.<name> / NNN.gp.<key>  the gradients of the float inputs and of every parameter
  NNN.buf.<key>  buffers after the forward (batch norm's running statistics)
  NNN.out32.<i>, NNN.gin32.<name>, NNN.gp32.<key>  PyTorch's own float32
                 results, the yardstick for attn's float32 error
and metadata NNN = the configuration as JSON. Dropout layers are built with
p > 0 but run in eval mode (attn checks train mode statistically).

PyTorch 1.13 lacks some options attn mirrors from later releases; they are
emulated with the same arithmetic: bias=False on LayerNorm and Transformer
layers (zero biases, keys dropped) and is_causal (an explicit causal mask).
Usage: gen_nn.py --out FILE [--seed S] [--cases-per-kind N]
"""
import argparse
import copy
import json
import math
import os
import random
import sys

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_family import gen_family  # noqa: E402
from st_writer import write_safetensors  # noqa: E402

torch.set_num_threads(1)


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.tg = torch.Generator().manual_seed(seed)
        self.tensors, self.meta = {}, {}

    def randn(self, *shape):
        return torch.randn(*shape, generator=self.tg)

    def rand(self, *shape):
        return torch.rand(*shape, generator=self.tg)

    def c(self, *xs):
        return self.r.choice(xs)

    def emit(self, kind, cfg, module, inputs, run, grad_inputs, drop_keys=(), train=False, finite_inputs=None):
        """Writes one case. run(module, inputs) -> list of outputs; the first
        cfg['n_grad_outs'] (default 1) outputs get a random gradient.

        Where PyTorch's outputs hold NaN (a fully masked query row, which attn
        defines as attending to nothing), finite_inputs(inputs) gives inputs
        that change only those rows and leave them finite; the gradients are
        then taken there with the output gradient zero on the NaN rows, which
        is what attn's gradients on the finite rows must equal."""
        key = "%04d" % len(self.meta)
        module = module.float()
        module.train(train)
        state = {k: v.detach().clone() for k, v in module.state_dict().items() if k not in drop_keys}
        m64 = copy.deepcopy(module).double()
        ins64 = {}
        for n, t in inputs.items():
            if t.is_floating_point():
                t = t.double()
                if n in grad_inputs:
                    t.requires_grad_(True)
            ins64[n] = t
        outs = run(m64, ins64)
        n_grad = cfg.get("n_grad_outs", 1)
        nan = any(torch.isnan(o).any().item() for o in outs)
        cfg = dict(cfg, kind=kind, train=train, has_nan=nan, n_outs=len(outs))
        for k, v in state.items():
            self.tensors[key + ".p." + k] = v
        for n, t in inputs.items():
            self.tensors[key + ".in." + n] = t
        for i, o in enumerate(outs):
            self.tensors[key + ".out.%d" % i] = o.detach()
        gouts = outs
        if nan and finite_inputs is not None:
            fixed = {n: (t.detach().clone().requires_grad_(True) if t.requires_grad else t)
                     for n, t in finite_inputs(ins64).items()}
            gouts = run(m64, fixed)
            ins64 = fixed
            assert not any(torch.isnan(o).any().item() for o in gouts), kind + ": finite_inputs left a NaN"
            cfg["grad_on_finite_rows"] = True
        gs = []
        if (not nan or finite_inputs is not None) and n_grad > 0:
            loss = 0
            for i in range(n_grad):
                g = self.randn(*outs[i].shape).double()
                g = g.masked_fill(torch.isnan(outs[i]), 0.0)  # nothing flows from the rows PyTorch leaves NaN
                self.tensors[key + ".gout.%d" % i] = g
                gs.append(g)
                loss = loss + (gouts[i] * g).sum()
            loss.backward()
            for n in grad_inputs:
                g = ins64[n].grad
                self.tensors[key + ".gin." + n] = g if g is not None else torch.zeros_like(ins64[n])
            for k, p in m64.named_parameters():
                if k in drop_keys:
                    continue
                self.tensors[key + ".gp." + k] = p.grad if p.grad is not None else torch.zeros_like(p)
        if not nan:
            self.emit_float32(key, module, inputs, run, grad_inputs, drop_keys, gs)
        for k, b in m64.named_buffers():
            self.tensors[key + ".buf." + k] = b.detach()
        self.meta[key] = json.dumps(cfg)


    def emit_float32(self, key, module, inputs, run, grad_inputs, drop_keys, gs):
        """PyTorch's own float32 results on the same values (NNN.out32.<i>,
        NNN.gin32.<name>, NNN.gp32.<key>): not a reference, the yardstick that
        test_nn_parity.cpp measures attn's float32 error against."""
        m32 = copy.deepcopy(module)
        ins32 = {n: (t.clone().requires_grad_(n in grad_inputs) if t.is_floating_point() else t)
                 for n, t in inputs.items()}
        outs = run(m32, ins32)
        for i, o in enumerate(outs):  # a module that builds its result in float64 rounds it as attn does
            self.tensors[key + ".out32.%d" % i] = o.detach().float() if o.is_floating_point() else o.detach()
        if not gs:
            return
        sum(((outs[i] * g.float()).sum() for i, g in enumerate(gs)), torch.zeros(())).backward()
        for n in grad_inputs:
            g = ins32[n].grad
            self.tensors[key + ".gin32." + n] = g if g is not None else torch.zeros_like(ins32[n])
        for k, p in m32.named_parameters():
            if k not in drop_keys:
                self.tensors[key + ".gp32." + k] = p.grad if p.grad is not None else torch.zeros_like(p)


def bias_keys(module):
    return [k for k in module.state_dict() if k.endswith("bias") and not k.endswith(("bias_k", "bias_v"))]


def zero_biases(module):
    keys = bias_keys(module)
    with torch.no_grad():
        for k, p in module.named_parameters():
            if k in keys:
                p.zero_()
    return keys


# ---- basic layers ----------------------------------------------------------------
def lead(g):
    """Random leading batch dims: (), (1,), (3,), (2, 3)."""
    return list(g.c((), (1,), (3,), (2, 3), (5,)))


def gen_basic(g, n):
    for _ in range(n):
        i, o = g.c(1, 3, 7, 16), g.c(1, 5, 8)
        cfg = {"in": i, "out": o, "bias": g.r.random() < 0.7}
        x = g.randn(*(lead(g) + [i]))
        g.emit("Linear", cfg, nn.Linear(i, o, bias=cfg["bias"]), {"x": x}, lambda m, a: [m(a["x"])], ["x"])
    for _ in range(n):
        i1, i2, o = g.c(1, 3, 6), g.c(2, 5), g.c(1, 4)
        cfg = {"in1": i1, "in2": i2, "out": o, "bias": g.r.random() < 0.7}
        ld = list(g.c((1,), (3,), (2, 3)))
        g.emit("Bilinear", cfg, nn.Bilinear(i1, i2, o, bias=cfg["bias"]),
               {"x1": g.randn(*(ld + [i1])), "x2": g.randn(*(ld + [i2]))}, lambda m, a: [m(a["x1"], a["x2"])],
               ["x1", "x2"])
    for _ in range(n):
        V, D = g.c(1, 5, 11), g.c(1, 4, 9)
        pi = g.c(None, None, 0, V - 1, -1)
        cfg = {"num": V, "dim": D, "padding_idx": pi}
        idx = torch.randint(0, V, lead(g) + [g.c(1, 4, 7)], generator=g.tg)
        g.emit("Embedding", cfg, nn.Embedding(V, D, padding_idx=pi), {"idx": idx}, lambda m, a: [m(a["idx"])], [])
    for _ in range(n):
        ns = list(g.c((1,), (5,), (16,), (3, 4)))
        cfg = {"shape": ns, "eps": g.c(1e-5, 1e-3), "affine": g.r.random() < 0.8, "bias": g.r.random() < 0.7}
        m = nn.LayerNorm(ns, eps=cfg["eps"], elementwise_affine=cfg["affine"])
        drop = []
        if cfg["affine"]:
            with torch.no_grad():  # non-trivial affine parameters
                m.weight.copy_(g.randn(*ns))
                m.bias.copy_(g.randn(*ns))
            if not cfg["bias"]:
                drop = zero_biases(m)
        x = g.randn(*(lead(g) + [g.c(1, 3)] + ns)) * 2 + 0.5
        g.emit("LayerNorm", cfg, m, {"x": x}, lambda m, a: [m(a["x"])], ["x"], drop)
    for two_d in (False, True):
        for _ in range(n):
            C = g.c(1, 3, 6)
            cfg = {"C": C, "eps": g.c(1e-5, 1e-3), "momentum": g.c(0.1, 0.3, None), "affine": g.r.random() < 0.8,
                   "track": g.r.random() < 0.8, "two_d": two_d}
            M = nn.BatchNorm2d if two_d else nn.BatchNorm1d
            m = M(C, eps=cfg["eps"], momentum=cfg["momentum"], affine=cfg["affine"],
                  track_running_stats=cfg["track"])
            with torch.no_grad():
                if cfg["affine"]:
                    m.weight.copy_(g.randn(C))
                    m.bias.copy_(g.randn(C))
                if cfg["track"]:
                    m.running_mean.copy_(g.randn(C))
                    m.running_var.copy_(g.rand(C) + 0.5)
                    m.num_batches_tracked.fill_(g.c(0, 3))
            # At least 3 values per channel: with 2, training-mode input gradients are ~eps / sigma^3,
            # cancellation-bound in float32 for PyTorch too (test_nn checks them in float64).
            shape = [g.c(3, 5), C] + ([g.c(1, 4), g.c(2, 3)] if two_d else list(g.c((), (1,), (7,))))
            train = g.r.random() < 0.6 or not cfg["track"]
            g.emit("BatchNorm2d" if two_d else "BatchNorm1d", cfg, m, {"x": g.randn(*shape) * 3 + 1},
                   lambda m, a: [m(a["x"])], ["x"], train=train)
    acts = [("ReLU", lambda c: nn.ReLU(), {}), ("Tanh", lambda c: nn.Tanh(), {}), ("Sigmoid", lambda c: nn.Sigmoid(), {}),
            ("GELU", lambda c: nn.GELU(approximate=c["approximate"]), {"approximate": ("none", "tanh")}),
            ("ELU", lambda c: nn.ELU(alpha=c["alpha"]), {"alpha": (1.0, 0.5, 2.0)}),
            ("LeakyReLU", lambda c: nn.LeakyReLU(c["slope"]), {"slope": (0.01, 0.2)}),
            ("Softmax", lambda c: nn.Softmax(dim=c["dim"]), {"dim": (0, 1, -1)}),
            ("LogSoftmax", lambda c: nn.LogSoftmax(dim=c["dim"]), {"dim": (0, 1, -1)}),
            ("Flatten", lambda c: nn.Flatten(c["start"], c["end"]), {"start": (0, 1), "end": (-1, 2)}),
            ("Dropout", lambda c: nn.Dropout(c["p"]), {"p": (0.1, 0.5)})]
    for name, make, opts in acts:
        for _ in range(n):
            cfg = {k: g.c(*v) for k, v in opts.items()}
            x = g.randn(*[g.c(2, 3), g.c(1, 4), g.c(3, 5)]) * 3
            g.emit(name, cfg, make(cfg), {"x": x}, lambda m, a: [m(a["x"])], ["x"])
    for _ in range(n):
        groups = g.c(1, 1, 2)
        cin, cout = groups * g.c(1, 2, 3), groups * g.c(1, 2)
        cfg = {"in": cin, "out": cout, "k": [g.c(1, 2, 3), g.c(1, 3)], "stride": [g.c(1, 2), g.c(1, 2)],
               "padding": [g.c(0, 1), g.c(0, 2)], "dilation": [g.c(1, 2), 1], "groups": groups,
               "bias": g.r.random() < 0.7}
        m = nn.Conv2d(cin, cout, cfg["k"], stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
                      groups=groups, bias=cfg["bias"])
        shape = ([g.c(1, 2)] if g.r.random() < 0.8 else []) + [cin, g.c(5, 8), g.c(6, 9)]
        g.emit("Conv2d", cfg, m, {"x": g.randn(*shape)}, lambda m, a: [m(a["x"])], ["x"])
    for _ in range(n):
        k = [g.c(2, 3), g.c(1, 2)]
        cfg = {"k": k, "stride": g.c(None, [1, 2], [2, 1]), "padding": [g.c(0, 1), 0], "dilation": [g.c(1, 2), 1],
               "ceil": g.r.random() < 0.4}
        m = nn.MaxPool2d(k, stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
                         ceil_mode=cfg["ceil"])
        g.emit("MaxPool2d", cfg, m, {"x": g.randn(g.c(1, 2), g.c(1, 3), g.c(6, 7), g.c(5, 8))},
               lambda m, a: [m(a["x"])], ["x"])
    for _ in range(n):
        k = [g.c(2, 3), g.c(1, 2)]
        cfg = {"k": k, "stride": g.c(None, [1, 2]), "padding": [g.c(0, 1), 0], "ceil": g.r.random() < 0.4,
               "count_include_pad": g.r.random() < 0.5, "divisor": g.c(None, None, 5)}
        m = nn.AvgPool2d(k, stride=cfg["stride"], padding=cfg["padding"], ceil_mode=cfg["ceil"],
                         count_include_pad=cfg["count_include_pad"], divisor_override=cfg["divisor"])
        g.emit("AvgPool2d", cfg, m, {"x": g.randn(g.c(1, 2), g.c(1, 3), g.c(6, 7), g.c(5, 8))},
               lambda m, a: [m(a["x"])], ["x"])
    for _ in range(n):
        cfg = {"size": [g.c(1, 2, 3), g.c(1, 4)]}
        g.emit("AdaptiveAvgPool2d", cfg, nn.AdaptiveAvgPool2d(cfg["size"]),
               {"x": g.randn(*([g.c(1, 2)] if g.r.random() < 0.8 else []) + [2, g.c(5, 7), g.c(4, 9)])},
               lambda m, a: [m(a["x"])], ["x"])


# ---- recurrent ---------------------------------------------------------------------
def gen_rnn(g, n):
    for kind in ("RNN", "LSTM", "GRU"):
        for ci in range(n):
            I, H = g.c(1, 3, 5), g.c(1, 4, 6)
            cfg = {"I": I, "H": H, "layers": g.c(1, 2, 3), "bias": g.r.random() < 0.8,
                   "batch_first": g.r.random() < 0.5, "bidirectional": g.r.random() < 0.5,
                   "dropout": g.c(0.0, 0.3), "nonlinearity": g.c("tanh", "relu") if kind == "RNN" else "tanh"}
            T, B = g.c(1, 4, 7), g.c(1, 2, 4)
            mode = ["padded", "packed", "unbatched"][ci % 3]
            if ci % 4 == 3:
                mode = "packed"
            cfg.update(T=T, B=B, mode=mode, h0=g.r.random() < 0.5, enforce_sorted=g.r.random() < 0.4)
            kw = dict(num_layers=cfg["layers"], bias=cfg["bias"], batch_first=cfg["batch_first"],
                      bidirectional=cfg["bidirectional"], dropout=cfg["dropout"] if cfg["layers"] > 1 else 0.0)
            if kind == "RNN":
                m = nn.RNN(I, H, nonlinearity=cfg["nonlinearity"], **kw)
            else:
                m = getattr(nn, kind)(I, H, **kw)
            D = 2 if cfg["bidirectional"] else 1
            inputs = {}
            if mode == "unbatched":
                inputs["x"] = g.randn(T, I)
                hs = (D * cfg["layers"], H)
            else:
                inputs["x"] = g.randn(B, T, I) if cfg["batch_first"] else g.randn(T, B, I)
                hs = (D * cfg["layers"], B, H)
            if mode == "packed":
                lengths = [g.r.randint(1, T) for _ in range(B)]
                lengths[g.r.randrange(B)] = T
                if cfg["enforce_sorted"]:
                    lengths.sort(reverse=True)
                inputs["lengths"] = torch.tensor(lengths, dtype=torch.int64)
            grad_inputs = ["x"]
            if cfg["h0"]:
                inputs["h0"] = g.randn(*hs)
                grad_inputs.append("h0")
                if kind == "LSTM":
                    inputs["c0"] = g.randn(*hs)
                    grad_inputs.append("c0")
            lstm = kind == "LSTM"
            cfg["n_grad_outs"] = 3 if lstm else 2

            def run(m, a, cfg=cfg, lstm=lstm):
                hx = None
                if "h0" in a:
                    hx = (a["h0"], a["c0"]) if lstm else a["h0"]
                x = a["x"]
                if cfg["mode"] == "packed":
                    x = pack_padded_sequence(x, a["lengths"], batch_first=cfg["batch_first"],
                                             enforce_sorted=cfg["enforce_sorted"])
                out, h = m(x, hx)
                if cfg["mode"] == "packed":
                    out, _ = pad_packed_sequence(out, batch_first=cfg["batch_first"], total_length=cfg["T"])
                return [out, h[0], h[1]] if lstm else [out, h]
            g.emit(kind, cfg, m, inputs, run, grad_inputs)
    for kind in ("RNNCell", "LSTMCell", "GRUCell"):
        for ci in range(n):
            I, H = g.c(1, 3, 5), g.c(1, 4, 6)
            cfg = {"I": I, "H": H, "bias": g.r.random() < 0.8, "unbatched": ci % 4 == 0, "hx": g.r.random() < 0.6,
                   "nonlinearity": g.c("tanh", "relu") if kind == "RNNCell" else "tanh"}
            if kind == "RNNCell":
                m = nn.RNNCell(I, H, bias=cfg["bias"], nonlinearity=cfg["nonlinearity"])
            else:
                m = getattr(nn, kind)(I, H, bias=cfg["bias"])
            B = g.c(1, 3)
            lead_ = [] if cfg["unbatched"] else [B]
            inputs = {"x": g.randn(*(lead_ + [I]))}
            grad_inputs = ["x"]
            if cfg["hx"]:
                inputs["h"] = g.randn(*(lead_ + [H]))
                grad_inputs.append("h")
                if kind == "LSTMCell":
                    inputs["c"] = g.randn(*(lead_ + [H]))
                    grad_inputs.append("c")
            lstm = kind == "LSTMCell"
            cfg["n_grad_outs"] = 2 if lstm else 1

            def run(m, a, lstm=lstm):
                if lstm:
                    hc = m(a["x"], (a["h"], a["c"]) if "h" in a else None)
                    return [hc[0], hc[1]]
                return [m(a["x"], a.get("h"))]
            g.emit(kind, cfg, m, inputs, run, grad_inputs)


# ---- attention -----------------------------------------------------------------------
def causal_bool(L, S):
    return torch.ones(L, S, dtype=torch.bool).triu(1)  # true = masked (j > i)


def mha_masks(g, cfg, B, H, L, S, batched):
    """attn's masks (as attn takes them) and the masks PyTorch 1.13 gets."""
    kpm = am = None
    kind = cfg["kpm"]
    if kind == "suffix":  # padding at the end: attn's key-length path
        lens = [g.r.randint(1, S) for _ in range(B)]
        kpm = torch.arange(S).view(1, S) >= torch.tensor(lens).view(B, 1)
    elif kind == "bool":
        kpm = g.rand(B, S) < 0.3
        kpm[:, 0] = False
    elif kind == "float":
        kpm = g.randn(B, S)
    if kpm is not None and not batched:
        kpm = kpm[0]
    kind = cfg["attn_mask"]
    if kind.startswith("bool"):
        am = g.rand(*([B * H] if kind.endswith("3d") else []), L, S) < 0.25
        am[..., 0] = False
    elif kind.startswith("float"):
        am = g.randn(*([B * H] if kind.endswith("3d") else []), L, S)
    torch_am = am
    if cfg["is_causal"]:
        c = causal_bool(L, S)
        if am is None:
            torch_am = c
        elif am.dtype == torch.bool:
            torch_am = am | c
        else:
            torch_am = am.masked_fill(c, -math.inf)
    return kpm, am, torch_am


def unmask_full_rows(a):
    """The masks with every fully masked query row opened: those rows become
    finite (their output gradient is zero) and no other row changes."""
    a = dict(a)
    for name in ("attn_mask", "torch_mask"):
        m = a.get(name)
        if m is not None and m.dtype == torch.bool:
            a[name] = m & ~m.all(-1, keepdim=True)
    return a


def gen_mha(g, n):
    for ci in range(n):
        E = g.c(4, 6, 8, 12)
        H = g.c(*[h for h in (1, 2, 3, 4) if E % h == 0])
        cfg = {"E": E, "H": H, "dropout": g.c(0.0, 0.2), "bias": g.r.random() < 0.8,
               "add_bias_kv": g.r.random() < 0.25, "add_zero_attn": g.r.random() < 0.25,
               "kdim": g.c(None, None, 5), "vdim": g.c(None, None, 3), "batch_first": g.r.random() < 0.5,
               "batched": ci % 5 != 4, "need_weights": g.r.random() < 0.7, "average": g.r.random() < 0.6,
               "kpm": g.c("none", "none", "suffix", "bool", "float"),
               "attn_mask": g.c("none", "none", "bool2d", "float2d", "bool3d", "float3d"),
               "is_causal": g.r.random() < 0.25, "inputs": g.c("self", "kv", "separate")}
        if ci < 3:  # a few fully masked rows: PyTorch 1.13 gives NaN, attn 0
            cfg.update(kpm="none", attn_mask="bool2d", full_row=True, add_bias_kv=False, add_zero_attn=False)
        if cfg["kdim"] or cfg["vdim"]:
            cfg["inputs"] = "separate"
        B, L = g.c(1, 2, 3), g.c(1, 5, 9)
        S = L if cfg["inputs"] == "self" else g.c(1, 4, 7)
        if not cfg["batched"]:
            B = 1
        if cfg["kpm"] == "float":  # PyTorch 1.13 cannot merge a float padding mask with another mask
            cfg.update(attn_mask="none", is_causal=False)
        if not cfg["batched"] and cfg["attn_mask"].endswith("3d"):
            cfg["attn_mask"] = cfg["attn_mask"][:-2] + "2d"
        cfg.update(B=B, L=L, S=S)
        m = nn.MultiheadAttention(E, H, dropout=cfg["dropout"], bias=cfg["bias"], add_bias_kv=cfg["add_bias_kv"],
                                  add_zero_attn=cfg["add_zero_attn"], kdim=cfg["kdim"], vdim=cfg["vdim"],
                                  batch_first=cfg["batch_first"])
        with torch.no_grad():  # non-zero biases
            for k, p in m.named_parameters():
                if "bias" in k:
                    p.copy_(g.randn(*p.shape) * 0.5)
        kd, vd = cfg["kdim"] or E, cfg["vdim"] or E

        def seq(T, F):
            if not cfg["batched"]:
                return g.randn(T, F)
            return g.randn(B, T, F) if cfg["batch_first"] else g.randn(T, B, F)
        inputs = {}
        if cfg["inputs"] == "self":
            inputs["x"] = seq(L, E)
        elif cfg["inputs"] == "kv":
            inputs["q"], inputs["kv"] = seq(L, E), seq(S, E)
        else:
            inputs["q"], inputs["k"], inputs["v"] = seq(L, E), seq(S, kd), seq(S, vd)
        kpm, am, torch_am = mha_masks(g, cfg, B, H, L, S, cfg["batched"])
        if cfg.get("full_row"):
            am[g.r.randrange(L)] = True
            torch_am = am if not cfg["is_causal"] else am | causal_bool(L, S)
        if kpm is not None:
            inputs["kpm"] = kpm
        if am is not None:
            inputs["attn_mask"] = am
        if torch_am is not None:
            inputs["torch_mask"] = torch_am
        grad_inputs = [k for k in ("x", "q", "kv", "k", "v") if k in inputs]
        if kpm is not None and kpm.is_floating_point():
            grad_inputs.append("kpm")
        if am is not None and am.is_floating_point():
            grad_inputs.append("attn_mask")
            if "torch_mask" in inputs and cfg["is_causal"]:
                grad_inputs.remove("attn_mask")  # the causal fill is not differentiable in the same tensor

        def run(m, a, cfg=cfg):
            if "x" in a:
                q = k = v = a["x"]
            elif "kv" in a:
                q, k, v = a["q"], a["kv"], a["kv"]
            else:
                q, k, v = a["q"], a["k"], a["v"]
            tm = a.get("torch_mask")
            if tm is not None and "attn_mask" in a and not cfg["is_causal"]:
                tm = a["attn_mask"]  # the same tensor, so its gradient is PyTorch's
            out, w = m(q, k, v, key_padding_mask=a.get("kpm"), need_weights=cfg["need_weights"], attn_mask=tm,
                       average_attn_weights=cfg["average"])
            return [out] + ([w] if w is not None else [])
        g.emit("MultiheadAttention", cfg, m, inputs, run, grad_inputs, finite_inputs=unmask_full_rows)


def layer_cfg(g):
    d = g.c(4, 6, 8)
    return {"d_model": d, "nhead": g.c(*[h for h in (1, 2) if d % h == 0]), "ff": g.c(5, 16),
            "dropout": g.c(0.0, 0.1), "activation": g.c("relu", "gelu"), "eps": g.c(1e-5, 1e-3),
            "batch_first": g.r.random() < 0.5, "norm_first": g.r.random() < 0.5, "bias": g.r.random() < 0.75}


def seq_of(g, cfg, T, B, batched):
    if not batched:
        return g.randn(T, cfg["d_model"])
    return g.randn(B, T, cfg["d_model"]) if cfg["batch_first"] else g.randn(T, B, cfg["d_model"])


def self_masks(g, cfg, prefix, B, T, batched):
    """Masks of a self-attention block: '<prefix>_mask' as attn takes it,
    'torch_<prefix>_mask' where PyTorch 1.13 needs another (is_causal), and a
    bool '<prefix>_kpm'. Key 0 is never masked, so no row is fully masked."""
    ins = {}
    kind = g.c("none", "none", "bool", "float", "square", "is_causal")
    cfg[prefix + "_is_causal"] = kind == "is_causal"
    if kind == "bool":
        am = g.rand(T, T) < 0.25
        am[:, 0] = False
        ins[prefix + "_mask"] = am
    elif kind == "float":
        ins[prefix + "_mask"] = g.randn(T, T)
    elif kind == "square":
        ins[prefix + "_mask"] = nn.Transformer.generate_square_subsequent_mask(T)
    elif kind == "is_causal":
        ins["torch_" + prefix + "_mask"] = causal_bool(T, T)
    if batched and g.r.random() < 0.4:
        if g.r.random() < 0.5:
            lens = [g.r.randint(1, T) for _ in range(B)]
            kpm = torch.arange(T).view(1, T) >= torch.tensor(lens).view(B, 1)
        else:
            kpm = g.rand(B, T) < 0.3
            kpm[:, 0] = False
        ins[prefix + "_kpm"] = kpm
    return ins


def mask_of(a, prefix):
    return a.get("torch_" + prefix + "_mask", a.get(prefix + "_mask"))


def gen_transformer(g, n):
    for kind in ("TransformerEncoderLayer", "TransformerEncoder"):
        for ci in range(n):
            cfg = layer_cfg(g)
            cfg["layers"] = g.c(1, 2)
            cfg["final_norm"] = g.r.random() < 0.5
            batched = ci % 5 != 4
            B, T = g.c(1, 2, 3), g.c(1, 4, 7)
            cfg.update(B=B, T=T, batched=batched)
            layer = nn.TransformerEncoderLayer(cfg["d_model"], cfg["nhead"], cfg["ff"], cfg["dropout"],
                                               cfg["activation"], cfg["eps"], cfg["batch_first"], cfg["norm_first"])
            if kind == "TransformerEncoder":
                norm = nn.LayerNorm(cfg["d_model"], eps=cfg["eps"]) if cfg["final_norm"] else None
                m = nn.TransformerEncoder(layer, cfg["layers"], norm=norm, enable_nested_tensor=False)
            else:
                m = layer
            randomize(g, m)
            drop = zero_biases(m) if not cfg["bias"] else []
            ins = {"src": seq_of(g, cfg, T, B, batched)}
            ins.update(self_masks(g, cfg, "src", B, T, batched))
            grad_inputs = ["src"]
            if cfg["src_is_causal"] is False and "src_mask" in ins and ins["src_mask"].is_floating_point() \
                    and torch.isfinite(ins["src_mask"]).all():
                grad_inputs.append("src_mask")

            def run(m, a):
                return [m(a["src"], mask_of(a, "src"), a.get("src_kpm"))]
            g.emit(kind, cfg, m, ins, run, grad_inputs, drop)
    for kind in ("TransformerDecoderLayer", "TransformerDecoder", "Transformer"):
        for ci in range(n):
            cfg = layer_cfg(g)
            cfg["layers"] = g.c(1, 2)
            cfg["enc_layers"] = g.c(1, 2)
            cfg["final_norm"] = g.r.random() < 0.5
            batched = ci % 5 != 4
            B, T, S = g.c(1, 2, 3), g.c(1, 4, 6), g.c(1, 3, 7)
            cfg.update(B=B, T=T, S=S, batched=batched)
            if kind == "Transformer":
                m = nn.Transformer(cfg["d_model"], cfg["nhead"], cfg["enc_layers"], cfg["layers"], cfg["ff"],
                                   cfg["dropout"], cfg["activation"], layer_norm_eps=cfg["eps"],
                                   batch_first=cfg["batch_first"], norm_first=cfg["norm_first"])
            else:
                layer = nn.TransformerDecoderLayer(cfg["d_model"], cfg["nhead"], cfg["ff"], cfg["dropout"],
                                                   cfg["activation"], cfg["eps"], cfg["batch_first"],
                                                   cfg["norm_first"])
                if kind == "TransformerDecoder":
                    norm = nn.LayerNorm(cfg["d_model"], eps=cfg["eps"]) if cfg["final_norm"] else None
                    m = nn.TransformerDecoder(layer, cfg["layers"], norm=norm)
                else:
                    m = layer
            randomize(g, m)
            drop = zero_biases(m) if not cfg["bias"] else []
            ins = {"tgt": seq_of(g, cfg, T, B, batched), ("src" if kind == "Transformer" else "memory"):
                   seq_of(g, cfg, S, B, batched)}
            ins.update(self_masks(g, cfg, "tgt", B, T, batched))
            if kind == "Transformer":
                ins.update(self_masks(g, cfg, "src", B, S, batched))
            if g.r.random() < 0.3:
                mm = g.rand(T, S) < 0.2
                mm[:, 0] = False
                ins["memory_mask"] = mm
            if batched and g.r.random() < 0.3:
                lens = [g.r.randint(1, S) for _ in range(B)]
                ins["memory_kpm"] = torch.arange(S).view(1, S) >= torch.tensor(lens).view(B, 1)
            grad_inputs = ["tgt", "src" if kind == "Transformer" else "memory"]

            def run(m, a, kind=kind):
                kw = dict(tgt_mask=mask_of(a, "tgt"), memory_mask=a.get("memory_mask"),
                          tgt_key_padding_mask=a.get("tgt_kpm"), memory_key_padding_mask=a.get("memory_kpm"))
                if kind == "Transformer":
                    return [m(a["src"], a["tgt"], src_mask=mask_of(a, "src"),
                              src_key_padding_mask=a.get("src_kpm"), **kw)]
                return [m(a["tgt"], a["memory"], **kw)]
            g.emit(kind, cfg, m, ins, run, grad_inputs, drop)


def randomize(g, m):
    """Non-trivial norms and biases (PyTorch starts them at 1 and 0)."""
    with torch.no_grad():
        for k, p in m.named_parameters():
            if k.endswith("bias"):
                p.copy_(g.randn(*p.shape) * 0.3)
            elif "norm" in k and k.endswith("weight"):
                p.copy_(1 + g.randn(*p.shape) * 0.3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--cases-per-kind", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(args.seed)  # module initialisations draw from torch's global generator
    g = Gen(args.seed)
    n = args.cases_per_kind
    gen_basic(g, n)
    gen_rnn(g, n)
    gen_mha(g, n)
    gen_transformer(g, n)
    gen_family(g, n)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_safetensors(args.out, g.tensors, g.meta)
    kinds = {}
    for v in g.meta.values():
        k = json.loads(v)["kind"]
        kinds[k] = kinds.get(k, 0) + 1
    print("wrote %d module cases of %d kinds to %s (torch %s)" % (len(g.meta), len(kinds), args.out,
                                                                   torch.__version__))


if __name__ == "__main__":
    main()
