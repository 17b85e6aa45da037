"""Optimizer parity cases: torch.optim (SGD, Adam, AdamW) over 20 steps with
gradient clipping and learning-rate schedules, for test_optim.

Each case: a few parameters (float64 or float32), one gradient per parameter
and step (drawn here, set as .grad before the step, so attn replays exactly
the same gradients), an optional clip_grad_norm_ before each step and an
optional schedule stepped after it. Recorded: the parameters and the lr
after every step, the total norm clip_grad_norm_ returned, and the optimizer
state at the end. Metadata per case (JSON): optimizer, options, clip,
schedule, dtype, steps.
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

STEPS = 20


def schedule(opt, spec):
    S = torch.optim.lr_scheduler
    if spec is None:
        return None
    kind = spec["kind"]
    if kind == "step":
        return S.StepLR(opt, step_size=spec["step_size"], gamma=spec["gamma"])
    if kind == "linear":
        return S.LinearLR(opt, start_factor=spec["start"], end_factor=spec["end"], total_iters=spec["total"])
    if kind == "cosine":
        return S.CosineAnnealingLR(opt, T_max=spec["T_max"], eta_min=spec["eta_min"])
    if kind == "warmup_cosine":
        w = S.LinearLR(opt, start_factor=spec["start"], end_factor=1.0, total_iters=spec["warmup"])
        c = S.CosineAnnealingLR(opt, T_max=spec["T_max"], eta_min=spec["eta_min"])
        return S.SequentialLR(opt, [w, c], milestones=[spec["warmup"]])
    raise ValueError(kind)


def make_case(r, idx):
    kind = r.choice(["SGD", "Adam", "AdamW"])
    o = {"lr": r.choice([0.1, 0.01, 0.003])}
    if kind == "SGD":
        o["momentum"] = r.choice([0.0, 0.9, 0.5])
        o["dampening"] = r.choice([0.0, 0.1]) if o["momentum"] > 0 else 0.0
        o["nesterov"] = o["momentum"] > 0 and o["dampening"] == 0 and r.random() < 0.5
        o["weight_decay"] = r.choice([0.0, 0.01])
        o["maximize"] = r.random() < 0.2
    else:
        o["betas"] = r.choice([(0.9, 0.999), (0.8, 0.99)])
        o["eps"] = r.choice([1e-8, 1e-6])
        o["weight_decay"] = r.choice([0.0, 0.01, 0.1]) if kind == "Adam" else r.choice([0.01, 0.1])
        o["amsgrad"] = r.random() < 0.4
        o["maximize"] = r.random() < 0.2
    clip = None
    if r.random() < 0.5:
        # norm_type "inf": JSON has no infinity
        clip = {"max_norm": r.choice([0.5, 1.0, 5.0]), "norm_type": r.choice([2.0, 2.0, 1.0, "inf"])}
    sched = r.choice([
        None,
        {"kind": "step", "step_size": r.choice([3, 7]), "gamma": r.choice([0.5, 0.1])},
        {"kind": "linear", "start": r.choice([0.1, 0.25]), "end": 1.0, "total": r.choice([5, 10])},
        {"kind": "cosine", "T_max": r.choice([8, 20]), "eta_min": r.choice([0.0, 1e-4])},
        {"kind": "warmup_cosine", "start": 0.1, "warmup": 5, "T_max": 15, "eta_min": 0.0},
    ])
    dtype = r.choice(["float64", "float64", "float32"])
    return {"kind": kind, "options": o, "clip": clip, "schedule": sched, "dtype": dtype, "steps": STEPS}


def run_case(cfg, gen, prefix, tensors):
    dt = torch.float64 if cfg["dtype"] == "float64" else torch.float32
    shapes = [(3, 4), (5,), (2, 3, 2)]
    params = [torch.randn(*s, generator=gen, dtype=torch.float64).to(dt).requires_grad_(True) for s in shapes]
    for i, p in enumerate(params):
        tensors["%s.p0.%d" % (prefix, i)] = p.detach().clone()
    o = dict(cfg["options"])
    if cfg["kind"] == "SGD":
        opt = torch.optim.SGD(params, **o)
    else:
        o["betas"] = tuple(o["betas"])
        opt = (torch.optim.Adam if cfg["kind"] == "Adam" else torch.optim.AdamW)(params, **o)
    sch = schedule(opt, cfg["schedule"])
    for t in range(cfg["steps"]):
        for i, p in enumerate(params):
            # parameter 2 gets no gradient at step 3 (skipped, as torch does)
            if i == 2 and t == 3:
                p.grad = None
                continue
            g = torch.randn(*p.shape, generator=gen, dtype=torch.float64).to(dt) * (3.0 if t % 4 == 0 else 0.5)
            p.grad = g
            tensors["%s.g%d.%d" % (prefix, t, i)] = g.clone()
        if cfg["clip"] is not None:
            nt = cfg["clip"]["norm_type"]
            n = torch.nn.utils.clip_grad_norm_(params, cfg["clip"]["max_norm"], math.inf if nt == "inf" else nt)
            tensors["%s.norm%d" % (prefix, t)] = n.detach().to(torch.float64).reshape(())
        opt.step()
        if sch is not None:
            sch.step()
        tensors["%s.lr%d" % (prefix, t)] = torch.tensor(opt.param_groups[0]["lr"], dtype=torch.float64)
        for i, p in enumerate(params):
            tensors["%s.p%d.%d" % (prefix, t + 1, i)] = p.detach().clone()
    for i, p in enumerate(params):
        st = opt.state[p]
        for k, v in st.items():
            if k == "step":
                tensors["%s.state.%d.step" % (prefix, i)] = torch.tensor(int(v), dtype=torch.int64)
            elif v is not None:
                tensors["%s.state.%d.%s" % (prefix, i, k)] = v.detach().clone()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--cases", type=int, default=60)
    args = ap.parse_args()
    r = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    tensors, meta = {}, {}
    for c in range(args.cases):
        cfg = make_case(r, c)
        key = "c%03d" % c
        run_case(cfg, gen, key, tensors)
        meta[key] = json.dumps(cfg)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_safetensors(args.out, tensors, meta)
    print("wrote %d optimizer cases to %s (torch %s)" % (len(meta), args.out, torch.__version__))


if __name__ == "__main__":
    main()
