#!/usr/bin/env python3
"""torchvision timings for `attn bench models`: the same rows (torchvision
0.14's vit_b_16 and swin_t, random weights, eval mode, no grad, 224x224
images), torch.set_num_threads(2) (or --threads), median of repeated calls.

Each --row is model,batch,image. Prints one JSON object per row with the keys
model, batch, image, ms.
"""
import argparse
import json
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_mha import median_ms  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", action="append", default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--min-reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {}
    for row in args.row:
        name, batch, image = row.split(",")
        batch, image = int(batch), int(image)
        if name not in models:
            models[name] = getattr(torchvision.models, name)().eval()
        m = models[name]
        x = torch.randn(batch, 3, image, image)

        def f():
            with torch.no_grad():
                m(x)
        ms = median_ms(f, args.min_reps, args.min_seconds)
        print(json.dumps({"model": name, "batch": batch, "image": image, "ms": round(ms, 3)}), flush=True)


if __name__ == "__main__":
    main()
