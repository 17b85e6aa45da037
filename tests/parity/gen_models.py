#!/usr/bin/env python3
"""torchvision models for tests/test_models.cpp (Debian's python3-torchvision
0.14): small random configurations of torchvision.models.VisionTransformer,
every parameter drawn at random (torchvision starts the head at zero), each
state_dict saved with torch.save as PyTorch users save theirs, beside the
inputs, the logits in float64 (eval mode) and the gradient of the logits
against a random upstream gradient with respect to the images.

Writes DIR/vit_N.pt and DIR/cases.safetensors (keys "vit_N.images",
"vit_N.logits", "vit_N.glogits", "vit_N.gimages"; metadata "vit_N" = the
constructor arguments as JSON).

Usage: gen_models.py --out DIR
"""
import argparse
import json
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_writer import write_safetensors  # noqa: E402

torch.set_num_threads(1)

VIT_CONFIGS = [
    dict(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10),
    dict(image_size=48, patch_size=16, num_layers=1, num_heads=4, hidden_dim=64, mlp_dim=96, num_classes=7,
         representation_size=24),
    dict(image_size=64, patch_size=4, num_layers=3, num_heads=3, hidden_dim=48, mlp_dim=80, num_classes=5),
    dict(image_size=28, patch_size=2, num_layers=1, num_heads=1, hidden_dim=16, mlp_dim=32, num_classes=3,
         dropout=0.1, attention_dropout=0.1),
]


def randomize(model, g):
    """Every parameter at random, at scales that keep activations O(1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            parts = name.split(".")
            is_norm = len(parts) >= 2 and parts[-2] in ("ln", "ln_1", "ln_2", "norm", "norm1", "norm2")
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif is_norm:
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)
            elif p.dim() >= 2 and name != "encoder.pos_embedding":
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(20261129)
    tensors, meta = {}, {}
    for i, cfg in enumerate(VIT_CONFIGS):
        key = "vit_%d" % i
        model = torchvision.models.VisionTransformer(**cfg)
        randomize(model, g)
        model.eval()
        torch.save(model.state_dict(), os.path.join(args.out, key + ".pt"))
        s = cfg["image_size"]
        images = torch.randn(2 + i % 2, 3, s, s, generator=g)
        m64 = model.double()
        x = images.double().requires_grad_(True)
        logits = m64(x)
        glogits = torch.randn(logits.shape, generator=g).double()
        (logits * glogits).sum().backward()
        tensors[key + ".images"] = images
        tensors[key + ".logits"] = logits.detach()
        tensors[key + ".glogits"] = glogits
        tensors[key + ".gimages"] = x.grad
        meta[key] = json.dumps(cfg)
    write_safetensors(os.path.join(args.out, "cases.safetensors"), tensors, meta)
    print("wrote %d torchvision model cases to %s (torch %s, torchvision %s)"
          % (len(meta), args.out, torch.__version__, torchvision.__version__))


if __name__ == "__main__":
    main()
