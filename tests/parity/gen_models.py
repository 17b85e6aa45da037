#!/usr/bin/env python3
"""torchvision models for tests/test_models.cpp (Debian's python3-torchvision
0.14): small random configurations of torchvision.models.VisionTransformer
and SwinTransformer (v1 and v2; windows that divide the feature map and
windows that do not, odd maps through patch merging, 1 to 4 stages), and
one full-size preset (vit_b_16 at 224),
every parameter drawn at random (torchvision starts the head at zero), each
state_dict saved with torch.save as PyTorch users save theirs, beside the
inputs, the logits in float64 (eval mode) and the gradient of the logits
against a random upstream gradient with respect to the images.

Writes DIR/KEY.pt and DIR/cases.safetensors (keys "KEY.images",
"KEY.logits", "KEY.glogits", "KEY.gimages"; metadata KEY = the constructor
arguments as JSON, with "version" 1 or 2 for Swin), KEY = vit_N or swin_N.

Usage: gen_models.py --out DIR
"""
import argparse
import json
import os
import sys

import torch
import torchvision
from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformerBlockV2

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


SWIN_CONFIGS = [  # (constructor arguments, image size)
    (dict(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4], num_classes=10), 32),
    (dict(patch_size=[2, 2], embed_dim=12, depths=[1, 2, 1], num_heads=[1, 2, 3], window_size=[3, 3],
          num_classes=6), 36),
    (dict(patch_size=[4, 4], embed_dim=8, depths=[2], num_heads=[2], window_size=[5, 3], num_classes=4), 44),
    (dict(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4], num_classes=7,
          version=2), 48),
    (dict(patch_size=[8, 8], embed_dim=24, depths=[1, 1, 2, 1], num_heads=[3, 3, 3, 3], window_size=[3, 3],
          num_classes=5, version=2), 64),
]


def swin(cfg):
    kw = {k: v for k, v in cfg.items() if k != "version"}
    if cfg.get("version", 1) == 2:
        kw.update(block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2)
    return torchvision.models.SwinTransformer(**kw)


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
    cases = [("vit_%d" % i, cfg, torchvision.models.VisionTransformer(**cfg), cfg["image_size"])
             for i, cfg in enumerate(VIT_CONFIGS)]
    cases += [("swin_%d" % i, cfg, swin(cfg), size) for i, (cfg, size) in enumerate(SWIN_CONFIGS)]
    # One full-size preset: vit_b_16 at 224 (86.6M parameters, a 330 MB file).
    cases.append(("vit_b_16", {"preset": "vit_b_16"}, torchvision.models.vit_b_16(), 224))
    for i, (key, cfg, model, size) in enumerate(cases):
        randomize(model, g)
        model.eval()
        torch.save(model.state_dict(), os.path.join(args.out, key + ".pt"))
        images = torch.randn(1 if "preset" in cfg else 2 + i % 2, 3, size, size, generator=g)
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
