#!/usr/bin/env python3
"""PyTorch reference cases for attention (tests/test_parity.cpp, SdpaMatchesPyTorch).

torch 1.13 has no F.scaled_dot_product_attention, so this composes it:
s = scale * q k^T (key/value heads repeated for GQA); softcap * tanh(s / softcap);
- slope * |i + d - j| (ALiBi); + float mask; bool mask, causal, key lengths and
the local pattern (window, with global tokens and strided keys added back) as -inf; softmax; rows with no key left give 0 (attn's definition;
torch 1.13's composition would give NaN there); @ v. Forward in float32,
backward of a random output gradient; dropout is off (its draws are attn's own
and are tested against attn's reference).

Keys: "NNN.q/k/v/mask/alibi/klen/out/gout/dq/dk/dv/dmask"; metadata "NNN" holds
the configuration as JSON.
Usage: gen_sdpa.py --out FILE [--seed S] [--cases N]
"""
import argparse
import json
import math
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_writer import write_safetensors  # noqa: E402

torch.set_num_threads(1)


def sdpa(q, k, v, c, mask, alibi, klen):
    G = c["Hq"] // c["Hk"]
    if G > 1:
        k = k.repeat_interleave(G, dim=1)
        v = v.repeat_interleave(G, dim=1)
    L, S = c["L"], c["S"]
    s = (q @ k.transpose(-1, -2)) * c["scale"]
    if c["softcap"] > 0:
        s = c["softcap"] * torch.tanh(s / c["softcap"])
    d = S - L if c["bottom_right"] else 0
    i = torch.arange(L).view(L, 1).double()
    j = torch.arange(S).view(1, S).double()
    ctr = i + d
    if alibi is not None:
        s = s - alibi.view(1, -1, 1, 1) * (ctr - j).abs().float()
    allowed = torch.ones(1, 1, L, S, dtype=torch.bool)
    if mask is not None:
        if mask.dtype == torch.bool:
            allowed = allowed & mask
        else:
            s = s + mask
    if c["causal"]:
        allowed = allowed & (j <= ctr)
    local = torch.ones(L, S, dtype=torch.bool)
    if c["window"][0] >= 0:
        local = local & (j >= ctr - c["window"][0])
    if c["window"][1] >= 0:
        local = local & (j <= ctr + c["window"][1])
    g = c.get("global_tokens", 0)
    if g > 0:  # global keys seen by all, global queries see all
        local = local | (j < g) | (i < g)
    st = c.get("stride", 0)
    if st > 0:  # keys at a multiple of the stride from the aligned diagonal
        local = local | (torch.remainder(ctr - j, st) == 0)
    allowed = allowed & local
    if klen is not None:
        allowed = allowed & (j < klen.view(-1, 1, 1, 1).double())
    allowed = allowed & (s.detach() > -math.inf)
    row_any = allowed.any(-1, keepdim=True)
    s = torch.where(allowed, s, torch.tensor(-math.inf))
    s = torch.where(row_any, s, torch.tensor(0.0))
    p = torch.where(row_any, torch.softmax(s, -1), torch.tensor(0.0))
    return p @ v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--cases", type=int, default=60)
    args = ap.parse_args()
    r = random.Random(args.seed)
    tg = torch.Generator().manual_seed(args.seed)
    tensors, meta = {}, {}
    for n in range(args.cases):
        Hk = r.choice([1, 2])
        c = {"B": r.choice([1, 2]), "Hk": Hk, "Hq": Hk * r.choice([1, 1, 2]), "L": r.choice([1, 7, 64, 130]),
             "S": r.choice([1, 9, 128, 257]), "E": r.choice([1, 3, 16, 64]), "Ev": r.choice([1, 8, 64]),
             "causal": r.random() < 0.4, "bottom_right": r.random() < 0.5,
             "window": [r.choice([-1, -1, 0, 8]), r.choice([-1, -1, 4])],
             "softcap": r.choice([0.0, 0.0, 0.0, 3.0]), "alibi": r.random() < 0.25,
             "mask": r.choice(["none", "none", "bool", "padding", "float"]), "klen": r.random() < 0.2}
        # sparse patterns (drawn last, so the other options are as before)
        c["global_tokens"] = r.choice([0, 0, 0, 0, 2, 9])
        c["stride"] = r.choice([0, 0, 0, 0, 3, 40])
        c["scale"] = r.choice([None, 0.3])
        if c["scale"] is None:
            c["scale_given"] = False
            c["scale"] = 1.0 / math.sqrt(c["E"])
        else:
            c["scale_given"] = True
        B, Hq, Hk, L, S, E, Ev = c["B"], c["Hq"], c["Hk"], c["L"], c["S"], c["E"], c["Ev"]
        q = torch.randn(B, Hq, L, E, generator=tg).requires_grad_(True)
        k = torch.randn(B, Hk, S, E, generator=tg).requires_grad_(True)
        v = torch.randn(B, Hk, S, Ev, generator=tg).requires_grad_(True)
        mask = alibi = klen = None
        if c["mask"] == "bool":
            mask = torch.rand(L, S, generator=tg) > 0.2
        elif c["mask"] == "padding":
            mask = torch.rand(B, 1, 1, S, generator=tg) > 0.3
        elif c["mask"] == "float":
            mask = torch.randn(B, 1, L, S, generator=tg).requires_grad_(True)
        if c["alibi"]:
            alibi = torch.rand(Hq, generator=tg)
        if c["klen"]:
            klen = torch.randint(0, S + 1, (B,), generator=tg)
        out = sdpa(q, k, v, c, mask, alibi, klen)
        gout = torch.randn(out.shape, generator=tg)
        out.backward(gout)
        key = "%03d" % n
        tensors.update({key + ".q": q.detach(), key + ".k": k.detach(), key + ".v": v.detach(),
                        key + ".out": out.detach(), key + ".gout": gout,
                        key + ".dq": q.grad, key + ".dk": k.grad, key + ".dv": v.grad})
        if mask is not None:
            tensors[key + ".mask"] = mask.detach()
            if mask.requires_grad:
                tensors[key + ".dmask"] = mask.grad
        if alibi is not None:
            tensors[key + ".alibi"] = alibi
        if klen is not None:
            tensors[key + ".klen"] = klen
        meta[key] = json.dumps(c)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_safetensors(args.out, tensors, meta)
    print("wrote %d attention cases to %s (torch %s)" % (len(meta), args.out, torch.__version__))


if __name__ == "__main__":
    main()
