#!/usr/bin/env python3
"""ONNX Runtime timings for `attn bench models --ort DIR`: each vision row's
torchvision 0.14 model (random weights, eval) exported with torch.onnx
(opset 17) once per (model, batch, image) into a cache folder, then timed by
bench/ort_models.js with the onnxruntime-node package installed in DIR
(bench/setup_ort.sh DIR installs it). Language-model rows are skipped.

Each --row is model,batch,image,pass,tokens. Prints one JSON object per row
with those keys and ms.
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_mha import timing_parser  # noqa: E402


def export(name, batch, image, cache):
    path = os.path.join(cache, f"{name}_b{batch}_{image}.onnx")
    if os.path.exists(path):
        return path
    os.makedirs(cache, exist_ok=True)
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)().eval()
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=cache)
    os.close(fd)
    try:
        # (not under no_grad: there nn.MultiheadAttention takes its fused
        # path, which has no ONNX export)
        torch.onnx.export(m, torch.randn(batch, 3, image, image), tmp, opset_version=17,
                          input_names=["pixel_values"], output_names=["logits"])
        os.replace(tmp, path)  # complete files only, even if two runs export at once
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def main():
    ap = timing_parser(__doc__)
    ap.add_argument("--ort", required=True, help="the folder holding node_modules/onnxruntime-node")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "attn-ort-models"))
    args = ap.parse_args()
    modules = os.path.join(os.path.abspath(args.ort), "node_modules")
    if not os.path.isdir(os.path.join(modules, "onnxruntime-node")):
        sys.exit(f"onnxruntime-node is not installed in {args.ort} (bench/setup_ort.sh {args.ort} installs it)")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ort_models.js")
    env = dict(os.environ, NODE_PATH=modules)
    for row in args.row:
        name, batch, image, pass_, tokens = row.split(",")
        if name in ("gpt2", "bert_base"):
            continue
        batch, image = int(batch), int(image)
        model = export(name, batch, image, args.cache)
        out = subprocess.run(["node", script, model, str(batch), str(image), str(args.threads), str(args.min_reps),
                              str(args.min_seconds)], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"onnxruntime-node failed on {model}: {out.stderr.strip()}")
        ms = json.loads(out.stdout.strip().splitlines()[-1])["ms"]
        print(json.dumps({"model": name, "batch": batch, "image": image, "pass": pass_, "tokens": int(tokens),
                          "ms": round(ms, 3)}), flush=True)


if __name__ == "__main__":
    main()
