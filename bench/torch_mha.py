#!/usr/bin/env python3
"""PyTorch timings for `attn bench mha`: the same rows, the same module
settings, torch.set_num_threads(2) (or --threads), median of repeated calls.

Each --row is module,B,L,E,H,pass with module MultiheadAttention (pass fwd:
eval, no grad, need_weights=False; fwd+weights: the default need_weights=True,
averaged; step: one decoding step, which nn.MultiheadAttention can only take
by attending the last query to the whole prefix again) or TransformerEncoderLayer (pass fwd+bwd: train mode, PyTorch's
defaults, backward of a random gradient). Prints one JSON object per row with
the keys module, B, L, E, H, pass, ms.
"""
import argparse
import json
import time

import torch


def median_ms(f, min_reps, min_seconds):
    f()
    ts, start = [], time.perf_counter()
    while len(ts) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t0) * 1e3)
        if len(ts) >= 200:
            break
    ts.sort()
    return ts[len(ts) // 2]


def timing_parser(doc):
    """The arguments `attn bench` passes every timing script: --row (one per
    row), --threads, --min-seconds, --min-reps; described by doc's first line."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--row", action="append", default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--min-reps", type=int, default=5)
    return ap


def main():
    args = timing_parser(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for row in args.row:
        module, B, L, E, H, pas = row.split(",")
        B, L, E, H = int(B), int(L), int(E), int(H)
        x = torch.randn(B, L, E)
        if module == "MultiheadAttention" and pas == "step":
            # nn.MultiheadAttention has no cache: the last step's query
            # against the whole prefix, projecting every key and value again.
            m = torch.nn.MultiheadAttention(E, H, batch_first=True).eval()
            last = x[:, -1:]

            def f():
                with torch.no_grad():
                    m(last, x, x, need_weights=False)
        elif module == "MultiheadAttention":
            m = torch.nn.MultiheadAttention(E, H, batch_first=True).eval()
            nw = pas == "fwd+weights"

            def f():
                with torch.no_grad():
                    m(x, x, x, need_weights=nw)
        elif module == "TransformerEncoderLayer":
            m = torch.nn.TransformerEncoderLayer(E, H, batch_first=True)
            x.requires_grad_(True)
            g = torch.randn(B, L, E)

            def f():
                m(x).backward(g)
                m.zero_grad(set_to_none=True)
                x.grad = None
        else:  # modules PyTorch does not have (attn's relative attention, GATConv): no time
            continue
        ms = median_ms(f, args.min_reps, args.min_seconds)
        print(json.dumps({"module": module, "B": B, "L": L, "E": E, "H": H, "pass": pas, "ms": round(ms, 3)}),
              flush=True)


if __name__ == "__main__":
    main()
