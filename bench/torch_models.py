#!/usr/bin/env python3
"""PyTorch timings for `attn bench models`: the same rows, random weights,
eval mode, no grad, torch.set_num_threads(2) (or --threads), median of
repeated calls. Vision rows run torchvision 0.14's models on images; gpt2
and bert_base rows run the GPT-2 and BERT written in torch from their
definitions in tests/parity/gen_lm.py (the parity tests' reference, with
Hugging Face's structure) at GPT-2 small's and BERT base's sizes: prefill
(one forward over `tokens` tokens, returning the keys and values), decode
(one token after a cache of tokens - 1 steps, concatenated as Hugging
Face's GPT-2 does) and fwd.

Each --row is model,batch,image,pass,tokens. Prints one JSON object per row
with those keys and ms.
"""
import json
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
from torch_mha import median_ms, timing_parser  # noqa: E402
import gen_lm  # noqa: E402

GPT2_SMALL = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2,
                 layer_norm_eps=1e-12)


def language_model(name):
    m = gen_lm.GPT2LMHeadModel(GPT2_SMALL) if name == "gpt2" else gen_lm.BertModel(BERT_BASE, True)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
            else:
                p.normal_(0.0, 0.02)
    return m.eval()


def lm_call(m, name, batch, pass_, tokens):
    g = torch.Generator().manual_seed(1)
    if name == "bert_base":
        ids = torch.randint(0, BERT_BASE["vocab_size"], (batch, tokens), generator=g)
        mask = torch.ones(batch, tokens, dtype=torch.int64)
        types = torch.zeros(batch, tokens, dtype=torch.int64)
        return lambda: m(ids, mask, types)
    if pass_ == "prefill":
        ids = torch.randint(0, GPT2_SMALL["vocab_size"], (batch, tokens), generator=g)
        return lambda: m(ids, presents=[])
    past = []
    with torch.no_grad():
        m(torch.randint(0, GPT2_SMALL["vocab_size"], (batch, tokens - 1), generator=g), presents=past)
    ids = torch.randint(0, GPT2_SMALL["vocab_size"], (batch, 1), generator=g)
    return lambda: m(ids, past=past)


def main():
    args = timing_parser(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {}
    for row in args.row:
        name, batch, image, pass_, tokens = row.split(",")
        batch, image, tokens = int(batch), int(image), int(tokens)
        lm = name in ("gpt2", "bert_base")
        if name not in models:
            models[name] = language_model(name) if lm else getattr(torchvision.models, name)().eval()
        m = models[name]
        if lm:
            call = lm_call(m, name, batch, pass_, tokens)
        else:
            x = torch.randn(batch, 3, image, image)

            def call():
                return m(x)

        def f():
            with torch.no_grad():
                call()
        ms = median_ms(f, args.min_reps, args.min_seconds)
        print(json.dumps({"model": name, "batch": batch, "image": image, "pass": pass_, "tokens": tokens,
                          "ms": round(ms, 3)}), flush=True)


if __name__ == "__main__":
    main()
