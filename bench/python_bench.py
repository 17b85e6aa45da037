#!/usr/bin/env python3
"""attn's fused attention called from PyTorch (attn.torch) beside PyTorch's
own CPU attention, in one run:

  sdpa      forward and forward + backward at (B, H, L, D) = (1, 8, 2048, 64),
            plain and causal: attn.torch.scaled_dot_product_attention against
            torch composing matmul and softmax (torch 1.13 has no fused CPU
            attention; its MultiheadAttention does the same), GFLOPS and the
            ratio to an SGEMM (torch.mm, 2048^3) timed in the same run.
  memory    peak RSS growth of one forward + backward at (1, 2, 16384, 64),
            each in a fresh process (attn.torch; torch composed forward only,
            its backward needs more than this machine should give).
  overhead  the time of a tiny (1, 1, 16, 64) call from Python: attn.torch
            (torch tensors in and out), attn.functional (attn tensors), and
            torch's composed attention at the same size; the C++ op alone
            timed in C++, and the difference (what the binding adds).

Medians of --repeat timed calls after a warm-up. Run from the repository root
with PYTHONPATH=build/python.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch

import attn
import attn.torch as at

FWD, FWD_BWD = 4, 14  # FLOPs per (B * H * L * S * D) of the two products, and with the backward's five


def median_s(fn, repeat, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def composed(q, k, v, causal):
    s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        L, S = s.shape[-2:]
        s = s.masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


def sgemm_gflops(repeat):
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048 ** 3 / median_s(lambda: torch.mm(a, b), repeat) / 1e9


def sdpa_rows(shape, repeat, sgemm):
    B, H, L, D = shape
    rows = []
    for causal in (False, True):
        flops_unit = B * H * L * L * D * (0.5 if causal else 1.0)
        q, k, v = (torch.randn(B, H, L, D) for _ in range(3))
        qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
        g = torch.randn(B, H, L, D)
        impls = {"attn.torch": lambda q, k, v: at.scaled_dot_product_attention(q, k, v, is_causal=causal),
                 "torch composed": lambda q, k, v: composed(q, k, v, causal)}
        for name, fn in impls.items():
            fwd = median_s(lambda: fn(q, k, v), repeat)

            def step():
                out = fn(qg, kg, vg)
                out.backward(g)
                qg.grad = kg.grad = vg.grad = None
            both = median_s(step, repeat)
            rows.append(dict(bench="sdpa", impl=name, shape=list(shape), causal=causal, fwd_ms=fwd * 1e3,
                             fwd_gflops=FWD * flops_unit / fwd / 1e9, fwd_sgemm_ratio=FWD * flops_unit / fwd / 1e9 / sgemm,
                             fwd_bwd_ms=both * 1e3, fwd_bwd_gflops=FWD_BWD * flops_unit / both / 1e9,
                             fwd_bwd_sgemm_ratio=FWD_BWD * flops_unit / both / 1e9 / sgemm))
    return rows


def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no %s in /proc/self/status" % field)


def memory_child(impl, shape):
    """Runs in a fresh process: peak RSS growth (MB) of one call."""
    B, H, L, D = shape
    q, k, v = (torch.randn(B, H, L, D, requires_grad=impl == "attn.torch") for _ in range(3))
    g = torch.randn(B, H, L, D)
    # The peak is reset after the set-up (Linux: 5 > /proc/self/clear_refs),
    # so the import's and the inputs' own peaks do not hide the call's.
    base = status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t0 = time.perf_counter()
    if impl == "attn.torch":
        at.scaled_dot_product_attention(q, k, v).backward(g)
    else:
        with torch.no_grad():
            composed(q, k, v, False)
    secs = time.perf_counter() - t0
    peak = status_mb("VmHWM")
    print(json.dumps(dict(bench="memory", impl=impl, shape=list(shape),
                          **{"pass": "fwd+bwd" if impl == "attn.torch" else "fwd"},
                          rss_growth_mb=peak - base, seconds=secs)))


def overhead_rows(repeat):
    q = torch.randn(1, 1, 16, 64)
    aq = attn.Tensor(q)
    rows = []
    for name, fn in (("attn.torch", lambda: at.scaled_dot_product_attention(q, q, q)),
                     ("attn.functional", lambda: attn.functional.scaled_dot_product_attention(aq, aq, aq)),
                     ("torch composed", lambda: composed(q, q, q, False))):
        # many calls per sample: the per-call time is a few microseconds
        n = 200
        per = median_s(lambda: [fn() for _ in range(n)], repeat) / n
        rows.append(dict(bench="overhead", impl=name, shape=[1, 1, 16, 64], us_per_call=per * 1e6))
    # The C++ op alone, timed in C++: what the Python call adds is the difference.
    cpp = statistics.median(attn._attn._functional._time_sdpa(aq, aq, aq, 4000) for _ in range(repeat))
    for row in rows:
        if row["impl"].startswith("attn"):
            row["cpp_us_per_call"] = cpp * 1e6
            row["binding_us"] = row["us_per_call"] - cpp * 1e6
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", choices=["sdpa", "memory", "overhead"])
    ap.add_argument("--memory-child", nargs=2, metavar=("IMPL", "L"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    attn.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child[0], (1, 2, int(args.memory_child[1]), 64))
        return
    print(json.dumps(dict(torch=torch.__version__, attn=attn.__version__, threads=args.threads)))
    if args.only in (None, "sdpa"):
        sgemm = sgemm_gflops(args.repeat)
        print(json.dumps(dict(bench="sgemm", gflops=sgemm)))
        for row in sdpa_rows((1, 8, 2048, 64), args.repeat, sgemm):
            print(json.dumps(row))
    if args.only in (None, "memory"):
        for impl in ("attn.torch", "torch composed"):
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--memory-child", impl,
                                  "16384"], capture_output=True, text=True, check=True)
            print(out.stdout.strip())
    if args.only in (None, "overhead"):
        for row in overhead_rows(args.repeat):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
