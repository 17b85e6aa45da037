#!/usr/bin/env python3
"""GPT-2 and BERT for tests/test_lm.cpp, written in torch from the published
definitions (OpenAI's gpt-2/src/model.py and Hugging Face's modeling_gpt2.py;
Devlin et al. 2019 and Hugging Face's modeling_bert.py), with Hugging Face's
module names, so each state_dict has the keys of a Hugging Face checkpoint.

Each configuration is written as a Hugging Face model directory
(DIR/KEY/config.json and model.safetensors, or pytorch_model.bin written with
torch.save), with every parameter drawn at random; the key layouts vary as
real files do: with and without the "transformer." / "bert." prefix, GPT-2's
old attn.bias / masked_bias buffers, BERT's old LayerNorm.gamma / beta names
and its embeddings.position_ids buffer, tied and untied heads.

DIR/cases.safetensors holds, per KEY, the inputs (input_ids, attention_mask
with left or right padding, token_type_ids, position_ids) and the outputs in
float64 (eval mode): GPT-2's logits and last hidden state, BERT's
last_hidden_state, pooler_output and MLM logits; for gpt2_a, the 32 greedy
tokens after a prompt (recomputed in full at each step) and the gradients of
a masked-token cross-entropy with respect to four parameters.

Usage: gen_lm.py --out DIR
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_writer import write_safetensors  # noqa: E402

torch.set_num_threads(1)


def act_fn(name):
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "gelu":
        return lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == "relu":
        return F.relu
    raise ValueError(name)


# ---- GPT-2 --------------------------------------------------------------------------

class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored (in, out), y = x W + b."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


class GPT2Attention(nn.Module):
    def __init__(self, c, layer_idx, old_buffers):
        super().__init__()
        self.c, self.layer_idx = c, layer_idx
        E = c["n_embd"]
        if old_buffers:  # what older transformers versions saved
            n = c["n_positions"]
            self.register_buffer("bias", torch.tril(torch.ones(n, n, dtype=torch.uint8)).view(1, 1, n, n))
            self.register_buffer("masked_bias", torch.tensor(-1e4))
        self.c_attn = Conv1D(3 * E, E)
        self.c_proj = Conv1D(E, E)

    def forward(self, x, mask, past=None):
        B, T, E = x.shape
        H = self.c["n_head"]
        D = E // H
        q, k, v = self.c_attn(x).split(E, dim=2)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        if past is not None:  # the cached keys and values of the earlier steps, concatenated
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        S = k.shape[2]
        w = q @ k.transpose(-1, -2)
        if self.c.get("scale_attn_weights", True):
            w = w / math.sqrt(D)
        if self.c.get("scale_attn_by_inverse_layer_idx", False):
            w = w / float(self.layer_idx + 1)
        low = torch.finfo(w.dtype).min
        causal = torch.tril(torch.ones(T, S, dtype=torch.bool), diagonal=S - T)
        w = w.masked_fill(~causal, low)
        if mask is not None:  # 1 = attend; masked keys get the lowest value (never -inf, never NaN)
            w = w.masked_fill(mask[:, None, None, :] == 0, low)
        a = torch.softmax(w, dim=-1) @ v
        return self.c_proj(a.transpose(1, 2).reshape(B, T, E)), (k, v)


class GPT2MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        inner = c.get("n_inner") or 4 * c["n_embd"]
        self.c_fc = Conv1D(inner, c["n_embd"])
        self.c_proj = Conv1D(c["n_embd"], inner)
        self.act = act_fn(c.get("activation_function", "gelu_new"))

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, c, i, old_buffers):
        super().__init__()
        eps = c.get("layer_norm_epsilon", 1e-5)
        self.ln_1 = nn.LayerNorm(c["n_embd"], eps=eps)
        self.attn = GPT2Attention(c, i, old_buffers)
        self.ln_2 = nn.LayerNorm(c["n_embd"], eps=eps)
        self.mlp = GPT2MLP(c)

    def forward(self, x, mask, past=None):
        a, present = self.attn(self.ln_1(x), mask, past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), present


class GPT2Model(nn.Module):
    def __init__(self, c, old_buffers=False):
        super().__init__()
        self.wte = nn.Embedding(c["vocab_size"], c["n_embd"])
        self.wpe = nn.Embedding(c["n_positions"], c["n_embd"])
        self.h = nn.ModuleList([GPT2Block(c, i, old_buffers) for i in range(c["n_layer"])])
        self.ln_f = nn.LayerNorm(c["n_embd"], eps=c.get("layer_norm_epsilon", 1e-5))

    def forward(self, ids, mask=None, pos=None, past=None, presents=None):
        """past: a list of (k, v) per layer or None; presents, when a list,
        receives this call's (k, v) per layer (for incremental decoding)."""
        n = 0 if past is None else past[0][0].shape[2]
        if pos is None:
            pos = torch.arange(n, n + ids.shape[1])[None]
        x = self.wte(ids) + self.wpe(pos)
        for i, b in enumerate(self.h):
            x, present = b(x, mask, None if past is None else past[i])
            if presents is not None:
                presents.append(present)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, c, old_buffers=False):
        super().__init__()
        self.tied = c.get("tie_word_embeddings", True)
        self.transformer = GPT2Model(c, old_buffers)
        if not self.tied:
            self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)

    def forward(self, ids, mask=None, pos=None, past=None, presents=None):
        h = self.transformer(ids, mask, pos, past, presents)
        w = self.transformer.wte.weight if self.tied else self.lm_head.weight
        return h @ w.t(), h


# ---- BERT ---------------------------------------------------------------------------

class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], H)
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], H)
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], H)
        self.LayerNorm = nn.LayerNorm(H, eps=c["layer_norm_eps"])
        self.register_buffer("position_ids", torch.arange(c["max_position_embeddings"]).expand((1, -1)))

    def forward(self, ids, types):
        pos = self.position_ids[:, : ids.shape[1]]
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(pos) +
                              self.token_type_embeddings(types))


class BertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.query, self.key, self.value = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)

    def forward(self, x, mask):
        B, T, E = x.shape
        D = E // self.heads
        q, k, v = (f(x).view(B, T, self.heads, D).transpose(1, 2) for f in (self.query, self.key, self.value))
        w = q @ k.transpose(-1, -2) / math.sqrt(D)
        w = w + (1.0 - mask[:, None, None, :].to(w.dtype)) * torch.finfo(w.dtype).min
        return (torch.softmax(w, -1) @ v).transpose(1, 2).reshape(B, T, E)


class BertSelfOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, h, x):
        return self.LayerNorm(self.dense(h) + x)


class BertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.act = act_fn(c["hidden_act"])

    def forward(self, x):
        return self.act(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["intermediate_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, h, x):
        return self.LayerNorm(self.dense(h) + x)


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c)

    def forward(self, x, mask):
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, x, mask):
        for l in self.layer:
            x = l(x, mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


class BertModel(nn.Module):
    def __init__(self, c, pooler):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        self.pooler = BertPooler(c) if pooler else None

    def forward(self, ids, mask, types):
        h = self.encoder(self.embeddings(ids, types), mask)
        return h, (self.pooler(h) if self.pooler is not None else None)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.act = act_fn(c["hidden_act"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = BertPredictionHeadTransform(c)
        self.bias = nn.Parameter(torch.zeros(c["vocab_size"]))

    def forward(self, h, word_embeddings):
        return self.transform(h) @ word_embeddings.t() + self.bias


class BertOnlyMLMHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = BertLMPredictionHead(c)


class BertForMaskedLM(nn.Module):
    def __init__(self, c, pooler, mlm):
        super().__init__()
        self.bert = BertModel(c, pooler)
        self.cls = BertOnlyMLMHead(c) if mlm else None

    def forward(self, ids, mask, types):
        h, pooled = self.bert(ids, mask, types)
        logits = self.cls.predictions(h, self.bert.embeddings.word_embeddings.weight) if self.cls else None
        return h, pooled, logits


# ---- cases --------------------------------------------------------------------------

GPT2_CASES = [
    # key, config, file, strip the "transformer." prefix, old buffers, B, T, padding
    ("gpt2_a", dict(vocab_size=300, n_positions=64, n_embd=48, n_layer=2, n_head=4), "model.safetensors",
     False, False, 2, 12, "right"),
    ("gpt2_b", dict(vocab_size=211, n_positions=40, n_embd=32, n_layer=3, n_head=2, n_inner=80,
                    activation_function="gelu", scale_attn_by_inverse_layer_idx=True, tie_word_embeddings=False,
                    layer_norm_epsilon=1e-6), "pytorch_model.bin", True, True, 3, 9, "left"),
    ("gpt2_c", dict(vocab_size=150, n_positions=256, n_embd=64, n_layer=1, n_head=8, activation_function="relu",
                    scale_attn_weights=False), "model.safetensors", True, False, 1, 200, "none"),
]

BERT_CASES = [
    # key, config, file, "bert." prefix, old LayerNorm names, pooler, MLM head, B, T
    ("bert_a", dict(vocab_size=320, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                    hidden_act="gelu", max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12),
     "model.safetensors", True, False, True, True, 2, 11),
    ("bert_b", dict(vocab_size=200, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                    hidden_act="gelu_new", max_position_embeddings=40, type_vocab_size=3, layer_norm_eps=1e-7),
     "pytorch_model.bin", False, True, True, False, 3, 16),
    ("bert_c", dict(vocab_size=100, hidden_size=64, num_hidden_layers=1, num_attention_heads=8, intermediate_size=128,
                    hidden_act="relu", max_position_embeddings=160, type_vocab_size=1, layer_norm_eps=1e-12),
     "model.safetensors", True, False, False, True, 1, 150),
]


def randomize(model, g):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif "LayerNorm" in name or ".ln_" in name or "ln_f" in name:
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)
            elif "embeddings" in name or name.endswith("wte.weight") or name.endswith("wpe.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            else:
                fan_in = p.shape[0] if isinstance(dict(model.named_modules()).get(name.rsplit(".", 1)[0]), Conv1D) \
                    else p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def padding_mask(B, T, kind, g):
    mask = torch.ones(B, T, dtype=torch.int64)
    if kind == "none":
        return mask
    for b in range(1, B):  # row 0 unpadded
        n = int(torch.randint(1, T // 2, (1,), generator=g))
        if kind == "right":
            mask[b, T - n:] = 0
        else:
            mask[b, :n] = 0
    return mask


def save_dir(path, state, cfg, file, extra):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(dict(cfg, **extra), f, indent=2)
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    if file.endswith(".bin"):
        torch.save(state, os.path.join(path, file))
    else:
        write_safetensors(os.path.join(path, file), {k: v.float() if v.is_floating_point() else v.long()
                                                     for k, v in state.items()}, {"format": "pt"})


def gpt2_cases(out, g, tensors):
    for key, cfg, file, strip, old, B, T, pad in GPT2_CASES:
        model = GPT2LMHeadModel(cfg, old)
        randomize(model, g)
        model.eval()
        state = model.state_dict()
        if strip:
            state = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in state.items()}
        save_dir(os.path.join(out, key), state, cfg, file,
                 {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_ctx": cfg["n_positions"]})
        m64 = GPT2LMHeadModel(cfg, old).double()
        m64.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in model.state_dict().items()})
        ids = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
        mask = padding_mask(B, T, pad, g)
        pos = None
        if pad == "left":  # as generate() makes them: the count of real tokens before, pads at 1
            pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
            tensors[key + ".position_ids"] = pos
        with torch.no_grad():
            logits, hidden = m64(ids, mask if pad != "none" else None, pos)
        tensors[key + ".input_ids"] = ids
        tensors[key + ".attention_mask"] = mask
        tensors[key + ".logits"] = logits
        tensors[key + ".hidden"] = hidden
        if key == "gpt2_a":
            # 32 greedy tokens after a prompt, each step recomputed in full.
            seq = torch.randint(0, cfg["vocab_size"], (1, 5), generator=g)
            tensors[key + ".prompt"] = seq.clone()
            gaps = []
            with torch.no_grad():
                for _ in range(32):
                    last = m64(seq)[0][0, -1]
                    top = torch.topk(last, 2).values
                    gaps.append(float(top[0] - top[1]))
                    seq = torch.cat([seq, last.argmax().view(1, 1)], 1)
            tensors[key + ".greedy"] = seq[0, 5:].clone()
            tensors[key + ".greedy_min_gap"] = torch.tensor([min(gaps)], dtype=torch.float64)
            # Fine-tuning: cross-entropy of the next token at the unpadded positions.
            m64.zero_grad()
            lg, _ = m64(ids, mask)
            labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            loss = F.cross_entropy(lg[:, :-1].reshape(-1, cfg["vocab_size"]), labels.reshape(-1), ignore_index=-100)
            loss.backward()
            tensors[key + ".loss"] = loss.detach().view(1)
            params = dict(m64.named_parameters())
            for name in ("transformer.wte.weight", "transformer.h.0.attn.c_attn.weight",
                         "transformer.h.1.mlp.c_proj.bias", "transformer.ln_f.weight"):
                tensors[key + ".grad." + name] = params[name].grad.clone()


def bert_cases(out, g, tensors):
    for key, cfg, file, prefix, old_ln, pooler, mlm, B, T in BERT_CASES:
        model = BertForMaskedLM(cfg, pooler, mlm)
        randomize(model, g)
        model.eval()
        state = model.state_dict()
        renamed = {}
        for k, v in state.items():
            if not prefix and k.startswith("bert."):
                k = k[len("bert."):]
            if old_ln:
                k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            renamed[k] = v
        if mlm and key == "bert_a":  # as Hugging Face saves the tied decoder bias too
            renamed["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
        save_dir(os.path.join(out, key), renamed, cfg, file,
                 {"model_type": "bert", "architectures": ["BertForMaskedLM" if mlm else "BertModel"],
                  "position_embedding_type": "absolute", "pad_token_id": 0})
        m64 = BertForMaskedLM(cfg, pooler, mlm).double()
        m64.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in model.state_dict().items()})
        ids = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
        mask = padding_mask(B, T, "right", g)
        types = torch.randint(0, cfg["type_vocab_size"], (B, T), generator=g)
        with torch.no_grad():
            h, pooled, logits = m64(ids, mask, types)
        tensors[key + ".input_ids"] = ids
        tensors[key + ".attention_mask"] = mask
        tensors[key + ".token_type_ids"] = types
        tensors[key + ".last_hidden_state"] = h
        if pooled is not None:
            tensors[key + ".pooler_output"] = pooled
        if logits is not None:
            tensors[key + ".logits"] = logits


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(20261129)
    tensors = {}
    gpt2_cases(args.out, g, tensors)
    bert_cases(args.out, g, tensors)
    write_safetensors(os.path.join(args.out, "cases.safetensors"), tensors)
    print("wrote %d GPT-2 and %d BERT model directories to %s (torch %s)"
          % (len(GPT2_CASES), len(BERT_CASES), args.out, torch.__version__))


if __name__ == "__main__":
    main()
