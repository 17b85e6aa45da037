"""PyTorch references for attn's attention family (imported by gen_nn.py; the
cases go into the same file and test): additive (Bahdanau) and Luong
attention, attention pooling, cosine attention, rotary embeddings, ALiBi
slopes, and the seeds' hand-written AttentionLayer and MultiHeadAttention
(their own PyTorch code). Each is written here from its definition in plain
torch, with PyTorch's parameter names where attn's module has them.
"""
import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F


def masked_softmax(scores, kpm):
    """Softmax over keys with padding (True) removed; callers keep a key per row."""
    if kpm is not None:
        scores = scores.masked_fill(kpm.unsqueeze(1), -math.inf)
    return torch.softmax(scores, -1)


def steps(q):
    return (q.unsqueeze(1), True) if q.dim() == 2 else (q, False)


class Additive(nn.Module):
    def __init__(self, dq, dk, h, bias):
        super().__init__()
        self.query_proj = nn.Linear(dq, h, bias=False)
        self.key_proj = nn.Linear(dk, h, bias=bias)
        self.v = nn.Linear(h, 1, bias=False)

    def forward(self, q, keys, values, kpm):
        q, one = steps(q)
        scores = self.v(torch.tanh(self.query_proj(q).unsqueeze(2) + self.key_proj(keys).unsqueeze(1))).squeeze(-1)
        w = masked_softmax(scores, kpm)
        ctx = w @ values
        return (ctx.squeeze(1), w.squeeze(1)) if one else (ctx, w)


class Luong(nn.Module):
    def __init__(self, dq, dk, score, hidden, scale):
        super().__init__()
        self.score, self.scale, self.dq = score, scale, dq
        if score == "general":
            self.linear = nn.Linear(dk, dq, bias=False)
        elif score == "concat":
            self.linear = nn.Linear(dq + dk, hidden, bias=False)
            self.v = nn.Linear(hidden, 1, bias=False)

    def forward(self, q, keys, values, kpm):
        q, one = steps(q)
        if self.score == "dot":
            s = q @ keys.transpose(1, 2)
        elif self.score == "general":
            s = q @ self.linear(keys).transpose(1, 2)
        else:  # v^T tanh(W [q; k]) over every (query, key) pair
            Lq, S = q.size(1), keys.size(1)
            pair = torch.cat([q.unsqueeze(2).expand(-1, -1, S, -1), keys.unsqueeze(1).expand(-1, Lq, -1, -1)], -1)
            s = self.v(torch.tanh(self.linear(pair))).squeeze(-1)
        if self.scale and self.score != "concat":
            s = s / math.sqrt(self.dq)
        w = masked_softmax(s, kpm)
        ctx = w @ values
        return (ctx.squeeze(1), w.squeeze(1)) if one else (ctx, w)


class Pooling(nn.Module):
    """The BiLSTM tagger's attention pooling, over the time dim."""
    def __init__(self, d, batch_first):
        super().__init__()
        self.attention = nn.Linear(d, 1)
        self.batch_first = batch_first

    def forward(self, x, kpm):
        if not self.batch_first:
            x = x.transpose(0, 1)
        scores = self.attention(x).squeeze(-1)
        if kpm is not None:
            scores = scores.masked_fill(kpm, -math.inf)
        w = torch.softmax(scores, dim=1)
        return (x * w.unsqueeze(-1)).sum(dim=1), w


class Cosine(nn.Module):
    def __init__(self, init):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(init))

    def forward(self, q, k, v, mask):
        s = self.logit_scale.exp() * (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2))
        if mask is not None:
            s = s.masked_fill(~mask, -math.inf)
        return torch.softmax(s, -1) @ v


def rope(x, base, interleaved, offset):
    L, D = x.size(-2), x.size(-1)
    pos = torch.arange(offset, offset + L, dtype=torch.float64).view(L, 1)
    freq = base ** (-2.0 * torch.arange(D // 2, dtype=torch.float64) / D)
    ang = pos * freq.view(1, -1)
    c, s = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    if interleaved:
        xe, xo = x[..., 0::2], x[..., 1::2]
        return torch.stack([xe * c - xo * s, xe * s + xo * c], -1).flatten(-2)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)


class Rope(nn.Module):
    def __init__(self, base, interleaved, offset):
        super().__init__()
        self.base, self.interleaved, self.offset = base, interleaved, offset

    def forward(self, x):
        return rope(x, self.base, self.interleaved, self.offset)


class LinearAttention(nn.Module):
    """Katharopoulos et al.'s linear attention in its quadratic form (the oracle)."""
    def __init__(self, causal, eps):
        super().__init__()
        self.causal, self.eps = causal, eps

    def forward(self, q, k, v):
        a = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-1, -2)
        if self.causal:
            a = a.tril()
        return (a @ v) / (a.sum(-1, keepdim=True) + self.eps)


class LSA(nn.Module):
    """Locality Self-Attention as the authors' code (vit-pytorch, vit_for_small_dataset.py)."""
    def __init__(self, dim, heads, dim_head, dropout):
        super().__init__()
        inner_dim = dim_head * heads
        self.heads = heads
        self.temperature = nn.Parameter(torch.log(torch.tensor(dim_head ** -0.5)))
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner_dim * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        x = self.norm(x)
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        dots = torch.matmul(q, k.transpose(-1, -2)) * self.temperature.exp()
        mask = torch.eye(dots.shape[-1], dtype=torch.bool)
        dots = dots.masked_fill(mask, -torch.finfo(dots.dtype).max)
        out = torch.matmul(dots.softmax(-1), v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class SPT(nn.Module):
    """Shifted Patch Tokenization with the paper's four diagonal half-patch shifts."""
    def __init__(self, channels, patch_size, dim):
        super().__init__()
        self.p = patch_size
        patch_dim = patch_size * patch_size * 5 * channels
        self.norm = nn.LayerNorm(patch_dim)
        self.proj = nn.Linear(patch_dim, dim)

    def forward(self, x):
        s = self.p // 2
        shifts = [(s, -s, s, -s), (-s, s, s, -s), (s, -s, -s, s), (-s, s, -s, s)]
        x = torch.cat([x] + [F.pad(x, sh) for sh in shifts], dim=1)
        b, c, H, W = x.shape
        p = self.p
        t = x.reshape(b, c, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (H // p) * (W // p), -1)
        return self.proj(self.norm(t))


def with_self_loops(edge_index, N, add):
    """PyG's remove_self_loops then add_self_loops (one loop per node, appended)."""
    src, dst = edge_index
    if not add:
        return src, dst
    keep = src != dst
    loops = torch.arange(N)
    return torch.cat([src[keep], loops]), torch.cat([dst[keep], loops])


warnings.filterwarnings("ignore", message="scatter_reduce")


def segment_softmax(e, dst, N):
    """Softmax of e (E, H) over the edges of each target, as PyG's softmax."""
    H = e.size(1)
    m = torch.full((N, H), -math.inf, dtype=e.dtype).scatter_reduce(
        0, dst.view(-1, 1).expand(-1, H), e.detach(), "amax", include_self=True)
    ex = (e - m[dst]).exp()
    den = torch.zeros(N, H, dtype=e.dtype).index_add(0, dst, ex)
    return ex / den[dst]


class GATConvRef(nn.Module):
    """GATConv's arithmetic as PyTorch Geometric defines it, in plain torch."""
    def __init__(self, cin, cout, heads, concat, slope, loops, bias):
        super().__init__()
        self.H, self.C, self.concat, self.slope, self.loops = heads, cout, concat, slope, loops
        self.lin = nn.Linear(cin, heads * cout, bias=False)
        self.att_src = nn.Parameter(torch.randn(1, heads, cout) * 0.5)
        self.att_dst = nn.Parameter(torch.randn(1, heads, cout) * 0.5)
        self.bias = nn.Parameter(torch.randn(heads * cout if concat else cout) * 0.3) if bias else None

    def forward(self, x, edge_index):
        N = x.size(0)
        src, dst = with_self_loops(edge_index, N, self.loops)
        xs = self.lin(x).view(N, self.H, self.C)
        a_src, a_dst = (xs * self.att_src).sum(-1), (xs * self.att_dst).sum(-1)
        e = F.leaky_relu(a_src[src] + a_dst[dst], self.slope)
        alpha = segment_softmax(e, dst, N)
        out = torch.zeros(N, self.H, self.C, dtype=x.dtype).index_add(0, dst, xs[src] * alpha.unsqueeze(-1))
        out = out.reshape(N, -1) if self.concat else out.mean(1)
        return out + self.bias if self.bias is not None else out


class GATv2ConvRef(nn.Module):
    def __init__(self, cin, cout, heads, concat, slope, loops, bias, share):
        super().__init__()
        self.H, self.C, self.concat, self.slope, self.loops = heads, cout, concat, slope, loops
        self.lin_l = nn.Linear(cin, heads * cout, bias=bias)
        self.lin_r = self.lin_l if share else nn.Linear(cin, heads * cout, bias=bias)
        self.att = nn.Parameter(torch.randn(1, heads, cout) * 0.5)
        self.bias = nn.Parameter(torch.randn(heads * cout if concat else cout) * 0.3) if bias else None

    def forward(self, x, edge_index):
        N = x.size(0)
        src, dst = with_self_loops(edge_index, N, self.loops)
        xl, xr = self.lin_l(x).view(N, self.H, self.C), self.lin_r(x).view(N, self.H, self.C)
        e = (F.leaky_relu(xl[src] + xr[dst], self.slope) * self.att).sum(-1)
        alpha = segment_softmax(e, dst, N)
        out = torch.zeros(N, self.H, self.C, dtype=x.dtype).index_add(0, dst, xl[src] * alpha.unsqueeze(-1))
        out = out.reshape(N, -1) if self.concat else out.mean(1)
        return out + self.bias if self.bias is not None else out


class SeedGraphAttentionLayer(nn.Module):
    """The seed's GraphAttentionLayer, verbatim."""
    def __init__(self, in_features, out_features, dropout, alpha, concat=True):
        super().__init__()
        self.dropout, self.in_features, self.out_features, self.alpha, self.concat = \
            dropout, in_features, out_features, alpha, concat
        self.W = nn.Parameter(torch.empty(size=(in_features, out_features)))
        nn.init.xavier_uniform_(self.W.data, gain=1.414)
        self.a = nn.Parameter(torch.empty(size=(2 * out_features, 1)))
        nn.init.xavier_uniform_(self.a.data, gain=1.414)
        self.leakyrelu = nn.LeakyReLU(self.alpha)

    def forward(self, h, adj):
        Wh = torch.mm(h, self.W)
        Wh1 = torch.matmul(Wh, self.a[:self.out_features, :])
        Wh2 = torch.matmul(Wh, self.a[self.out_features:, :])
        e = self.leakyrelu(Wh1 + Wh2.T)
        zero_vec = -9e15 * torch.ones_like(e)
        attention = torch.where(adj > 0, e, zero_vec)
        attention = F.softmax(attention, dim=1)
        attention = F.dropout(attention, self.dropout, training=self.training)
        h_prime = torch.matmul(attention, Wh)
        return F.elu(h_prime) if self.concat else h_prime


class SeedGAT(nn.Module):
    """The seed's GAT, verbatim."""
    def __init__(self, num_features, hidden_size, num_classes, dropout, alpha, nheads):
        super().__init__()
        self.dropout = dropout
        self.attentions = [SeedGraphAttentionLayer(num_features, hidden_size, dropout=dropout, alpha=alpha,
                                                   concat=True) for _ in range(nheads)]
        for i, attention in enumerate(self.attentions):
            self.add_module('attention_{}'.format(i), attention)
        self.out_attention = SeedGraphAttentionLayer(hidden_size * nheads, num_classes, dropout=dropout, alpha=alpha,
                                                     concat=False)

    def forward(self, x, adj):
        x = F.dropout(x, self.dropout, training=self.training)
        x = torch.cat([att(x, adj) for att in self.attentions], dim=1)
        x = F.dropout(x, self.dropout, training=self.training)
        x = F.elu(self.out_attention(x, adj))
        return F.log_softmax(x, dim=1)


def random_graph(g, N):
    """An edge list with duplicates, self-loops and (often) isolated nodes."""
    E = g.r.randint(0, 3 * N)
    src = [g.r.randrange(N) for _ in range(E)]
    dst = [g.r.randrange(max(1, N - 1)) for _ in range(E)]  # the last node never receives an edge
    for _ in range(g.r.randint(0, 2)):
        n = g.r.randrange(N)
        src.append(n)
        dst.append(n)
    return torch.tensor([src, dst], dtype=torch.int64).view(2, -1)


class RelMHARef(nn.Module):
    """Shaw et al.'s relative attention in its direct form, with the (L, S, D)
    tensors of a^K and a^V that attn's split avoids."""
    def __init__(self, E, H, K, values, bias, batch_first):
        super().__init__()
        self.E, self.H, self.K, self.bf = E, H, K, batch_first
        D = E // H
        self.in_proj_weight = nn.Parameter(torch.randn(3 * E, E) * 0.3)
        self.in_proj_bias = nn.Parameter(torch.randn(3 * E) * 0.3) if bias else None
        self.relative_key = nn.Parameter(torch.randn(2 * K + 1, D) * 0.5)
        self.relative_value = nn.Parameter(torch.randn(2 * K + 1, D) * 0.5) if values else None
        self.out_proj = nn.Linear(E, E, bias=bias)

    def forward(self, q, k, v, kpm, am):
        if not self.bf:
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        B, L, E = q.shape
        S, H, D = k.size(1), self.H, E // self.H
        b = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        w = self.in_proj_weight.chunk(3)
        q, k, v = (F.linear(x, w[i], b[i]).view(B, -1, H, D).transpose(1, 2) for i, x in enumerate((q, k, v)))
        r = (torch.arange(S).view(1, S) - torch.arange(L).view(L, 1)).clamp(-self.K, self.K) + self.K
        aK = self.relative_key[r]                                  # (L, S, D)
        e = (q @ k.transpose(-1, -2) + torch.einsum("bhld,lsd->bhls", q, aK)) / math.sqrt(D)
        if am is not None:
            e = e.masked_fill(am, -math.inf) if am.dtype == torch.bool else e + am
        if kpm is not None:
            e = e.masked_fill(kpm.view(B, 1, 1, S), -math.inf)
        p = e.softmax(-1)
        z = p @ v
        if self.relative_value is not None:
            z = z + torch.einsum("bhls,lsd->bhld", p, self.relative_value[r])
        out = self.out_proj(z.transpose(1, 2).reshape(B, L, E))
        return out if self.bf else out.transpose(0, 1), p.mean(1)


def t5_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """T5's _relative_position_bucket (Hugging Face's modeling_t5.py)."""
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(
        relative_position_if_large, torch.full_like(relative_position_if_large, num_buckets - 1))
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


class T5BiasRef(nn.Module):
    def __init__(self, H, nb, md, bidirectional, L, S, off):
        super().__init__()
        self.relative_attention_bias = nn.Embedding(nb, H)
        self.args = (bidirectional, nb, md, L, S, off)

    def forward(self):
        bidirectional, nb, md, L, S, off = self.args
        rel = torch.arange(S).view(1, S) - (torch.arange(L).view(L, 1) + off)
        return self.relative_attention_bias(t5_bucket(rel, bidirectional, nb, md)).permute(2, 0, 1).unsqueeze(0)


def alibi_reference(n):
    """ALiBi's slopes, as the paper's reference code computes them."""
    def pow2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return pow2(n)
    closest = 2 ** math.floor(math.log2(n))
    return pow2(closest) + alibi_reference(2 * closest)[0::2][: n - closest]


class SeedAttentionLayer(nn.Module):
    """The seed's AttentionLayer, verbatim."""
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.query = nn.Linear(input_dim, output_dim)
        self.key = nn.Linear(input_dim, output_dim)
        self.value = nn.Linear(input_dim, output_dim)

    def forward(self, query, key, value):
        scores = torch.matmul(self.query(query), self.key(key).transpose(-2, -1))
        attention_weights = nn.functional.softmax(scores, dim=-1)
        return torch.matmul(attention_weights, self.value(value))


class SeedMultiHeadAttention(nn.Module):
    """The seeds' MultiHeadAttention (000's names; 002's mask == 0 -> -inf)."""
    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.output = nn.Linear(embed_dim, embed_dim)

    def forward(self, query, key, value, mask=None):
        batch_size = query.size(0)
        query = self.query(query).view(batch_size, -1, self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        key = self.key(key).view(batch_size, -1, self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        value = self.value(value).view(batch_size, -1, self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, float("-inf"))
        attention_weights = nn.functional.softmax(scores, dim=-1)
        attended_values = torch.matmul(attention_weights, value)
        attended_values = attended_values.permute(0, 2, 1, 3).contiguous().view(batch_size, -1, self.embed_dim)
        return self.output(attended_values), attention_weights


def padding(g, B, S):
    """A bool (B, S) padding mask (True = padding) that keeps key 0."""
    kpm = g.rand(B, S) < 0.3
    kpm[:, 0] = False
    return kpm


def gen_family(g, n):
    for ci in range(n):
        dq, dk, h = g.c(1, 3, 6), g.c(2, 5), g.c(1, 4, 7)
        cfg = {"dq": dq, "dk": dk, "h": h, "bias": g.r.random() < 0.7, "one_step": ci % 2 == 0,
               "values": g.r.random() < 0.5, "kpm": g.r.random() < 0.5}
        B, S, Lq = g.c(1, 2, 3), g.c(1, 4, 6), g.c(1, 3)
        m = Additive(dq, dk, h, cfg["bias"])
        ins = {"q": g.randn(B, dq) if cfg["one_step"] else g.randn(B, Lq, dq), "keys": g.randn(B, S, dk)}
        if cfg["values"]:
            ins["values"] = g.randn(B, S, g.c(2, 3))
        if cfg["kpm"]:
            ins["kpm"] = padding(g, B, S)
        cfg["n_grad_outs"] = 2
        g.emit("AdditiveAttention", cfg, m, ins,
               lambda m, a: list(m(a["q"], a["keys"], a.get("values", a["keys"]), a.get("kpm"))),
               [k for k in ("q", "keys", "values") if k in ins])
    for ci in range(n):
        score = ["dot", "general", "concat"][ci % 3]
        dq = g.c(2, 4, 5)
        dk = dq if score == "dot" else g.c(3, 6)
        cfg = {"dq": dq, "dk": dk, "score": score, "hidden": g.c(0, 3), "scale": g.r.random() < 0.5,
               "one_step": g.r.random() < 0.5, "values": g.r.random() < 0.5, "kpm": g.r.random() < 0.5}
        hidden = cfg["hidden"] or dq
        B, S, Lq = g.c(1, 2, 3), g.c(1, 4, 6), g.c(1, 3)
        m = Luong(dq, dk, score, hidden, cfg["scale"])
        ins = {"q": g.randn(B, dq) if cfg["one_step"] else g.randn(B, Lq, dq), "keys": g.randn(B, S, dk)}
        if cfg["values"]:
            ins["values"] = g.randn(B, S, g.c(2, 3))
        if cfg["kpm"]:
            ins["kpm"] = padding(g, B, S)
        cfg["n_grad_outs"] = 2
        g.emit("LuongAttention", cfg, m, ins,
               lambda m, a: list(m(a["q"], a["keys"], a.get("values", a["keys"]), a.get("kpm"))),
               [k for k in ("q", "keys", "values") if k in ins])
    for ci in range(n):
        D, B, T = g.c(1, 4, 6), g.c(1, 2, 3), g.c(1, 5, 7)
        cfg = {"D": D, "batch_first": g.r.random() < 0.5, "kpm": g.r.random() < 0.5, "n_grad_outs": 2}
        ins = {"x": g.randn(B, T, D) if cfg["batch_first"] else g.randn(T, B, D)}
        if cfg["kpm"]:
            ins["kpm"] = padding(g, B, T)
        g.emit("AttentionPooling", cfg, Pooling(D, cfg["batch_first"]), ins,
               lambda m, a: list(m(a["x"], a.get("kpm"))), ["x"])
    for ci in range(n):
        # E >= 3: with E = 1 the gradient through normalize is exactly 0 and float32 leaves
        # O(eps |g| / |k|) there (test_family checks that case in float64).
        E, L, S = g.c(3, 8), g.c(1, 4, 7), g.c(1, 5)
        lead = list(g.c((2,), (1, 3), (2, 2)))
        cfg = {"init": g.c(2.302585092994046, 0.5, 1.5), "mask": g.r.random() < 0.4}
        ins = {"q": g.randn(*(lead + [L, E])), "k": g.randn(*(lead + [S, E])), "v": g.randn(*(lead + [S, g.c(2, 4)]))}
        if cfg["mask"]:
            mask = g.rand(L, S) > 0.3
            mask[:, 0] = True
            ins["mask"] = mask
        g.emit("CosineAttention", cfg, Cosine(cfg["init"]), ins,
               lambda m, a: [m(a["q"], a["k"], a["v"], a.get("mask"))], ["q", "k", "v"])
    for ci in range(n):
        D = g.c(2, 4, 8, 16)
        cfg = {"D": D, "base": g.c(10000.0, 500.0), "interleaved": ci % 2 == 1, "offset": g.c(0, 0, 3, 100)}
        x = g.randn(*(list(g.c((5,), (2, 3), (1, 2, 2))) + [g.c(1, 4, 9), D]))
        g.emit("RotaryEmbedding", cfg, Rope(cfg["base"], cfg["interleaved"], cfg["offset"]), {"x": x},
               lambda m, a: [m(a["x"])], ["x"])
    for ci in range(n):
        heads = ci + 1 if ci < 12 else g.c(16, 20, 24, 32, 48, 64, 96, 128)
        cfg = {"heads": heads, "n_grad_outs": 0}

        class Slopes(nn.Module):
            def forward(self):
                return torch.tensor(alibi_reference(heads), dtype=torch.float64)
        g.emit("AlibiSlopes", cfg, Slopes(), {}, lambda m, a: [m()], [])
    for ci in range(n):
        i, o = g.c(1, 4, 6), g.c(1, 3, 5)
        lead = list(g.c((), (2,), (2, 3)))
        ins = {"q": g.randn(*(lead + [g.c(1, 4), i])), "k": g.randn(*(lead + [g.c(1, 5), i]))}
        ins["v"] = g.randn(*(list(ins["k"].shape[:-1]) + [i]))
        g.emit("seeds.AttentionLayer", {"in": i, "out": o}, SeedAttentionLayer(i, o), ins,
               lambda m, a: [m(a["q"], a["k"], a["v"])], ["q", "k", "v"])
    for ci in range(n):
        E = g.c(4, 6, 8)
        H = g.c(*[h for h in (1, 2, 3, 4) if E % h == 0])
        B, L, S = g.c(1, 2), g.c(1, 3, 5), g.c(1, 4)
        cfg = {"E": E, "H": H, "mask": g.c("none", "2d", "4d"), "n_grad_outs": 1}
        ins = {"q": g.randn(B, L, E), "k": g.randn(B, S, E)}
        ins["v"] = g.randn(B, S, E)
        if cfg["mask"] != "none":
            mask = (g.rand(L, S) > 0.3) if cfg["mask"] == "2d" else (g.rand(B, 1, L, S) > 0.3)
            mask[..., 0] = True
            ins["mask"] = mask
        g.emit("seeds.MultiHeadAttention", cfg, SeedMultiHeadAttention(E, H), ins,
               lambda m, a: list(m(a["q"], a["k"], a["v"], a.get("mask"))), ["q", "k", "v"])
    for ci in range(n):
        causal = ci % 2 == 0
        E, Ev, L = g.c(1, 3, 8), g.c(1, 4), g.c(1, 5, 13, 40)
        S = L if causal else g.c(1, 6, 17)
        cfg = {"causal": causal, "chunk": g.c(1, 3, 4, 64), "eps": g.c(1e-6, 0.1)}
        lead = list(g.c((), (2,), (2, 3)))
        ins = {"q": g.randn(*(lead + [L, E])), "k": g.randn(*(lead + [S, E])), "v": g.randn(*(lead + [S, Ev]))}
        g.emit("LinearAttention", cfg, LinearAttention(causal, cfg["eps"]), ins,
               lambda m, a: [m(a["q"], a["k"], a["v"])], ["q", "k", "v"])
    for ci in range(n):
        cfg = {"dim": g.c(4, 6), "heads": g.c(1, 2, 3), "dim_head": g.c(2, 4), "dropout": g.c(0.0, 0.1)}
        m = LSA(cfg["dim"], cfg["heads"], cfg["dim_head"], cfg["dropout"])
        with torch.no_grad():
            m.temperature.add_(g.randn(()) * 0.3)
            m.norm.weight.copy_(1 + g.randn(cfg["dim"]) * 0.2)
            m.norm.bias.copy_(g.randn(cfg["dim"]) * 0.2)
        g.emit("LocalitySelfAttention", cfg, m, {"x": g.randn(g.c(1, 2), g.c(2, 5, 9), cfg["dim"])},
               lambda m, a: [m(a["x"])], ["x"])
    for ci in range(n):
        cfg = {"C": g.c(1, 3), "p": g.c(2, 3, 4), "dim": g.c(4, 8)}
        m = SPT(cfg["C"], cfg["p"], cfg["dim"])
        x = g.randn(g.c(1, 2), cfg["C"], cfg["p"] * g.c(1, 2, 3), cfg["p"] * g.c(1, 2))
        g.emit("ShiftedPatchTokenization", cfg, m, {"x": x}, lambda m, a: [m(a["x"])], ["x"])
    for v2 in (False, True):
        for ci in range(n):
            cfg = {"in": g.c(1, 3, 5), "out": g.c(1, 2, 4), "heads": g.c(1, 2, 3), "concat": g.r.random() < 0.6,
                   "slope": g.c(0.2, 0.1), "loops": ci % 4 != 3, "bias": g.r.random() < 0.7,
                   "share": v2 and g.r.random() < 0.5}
            N = g.c(1, 4, 7)
            args = (cfg["in"], cfg["out"], cfg["heads"], cfg["concat"], cfg["slope"], cfg["loops"], cfg["bias"])
            m = GATv2ConvRef(*args, cfg["share"]) if v2 else GATConvRef(*args)
            ins = {"x": g.randn(N, cfg["in"]), "edge_index": random_graph(g, N)}
            g.emit("GATv2Conv" if v2 else "GATConv", cfg, m, ins, lambda m, a: [m(a["x"], a["edge_index"])], ["x"])
    for ci in range(n):
        cfg = {"in": g.c(2, 4), "hidden": g.c(2, 3), "classes": g.c(2, 3), "dropout": g.c(0.0, 0.5),
               "alpha": g.c(0.2, 0.1), "heads": g.c(1, 2, 3)}
        N = g.c(1, 4, 6)
        m = SeedGAT(cfg["in"], cfg["hidden"], cfg["classes"], cfg["dropout"], cfg["alpha"], cfg["heads"])
        adj = (g.rand(N, N) < 0.4).float()
        if ci % 2 == 0:
            adj = ((adj + torch.eye(N)) > 0).float()
        g.emit("seeds.GAT", cfg, m, {"x": g.randn(N, cfg["in"]), "adj": adj}, lambda m, a: [m(a["x"], a["adj"])],
               ["x"])
    for ci in range(n):
        E = g.c(4, 6, 8)
        H = g.c(*[h for h in (1, 2) if E % h == 0])
        cfg = {"E": E, "H": H, "K": g.c(0, 1, 2, 5), "values": ci % 3 != 2, "bias": g.r.random() < 0.7,
               "batch_first": g.r.random() < 0.5, "kpm": g.r.random() < 0.4,
               "mask": g.c("none", "bool", "float"), "n_grad_outs": 1}
        B, L = g.c(1, 2), g.c(1, 4, 9)
        S = g.c(L, 3, 6)
        m = RelMHARef(E, H, cfg["K"], cfg["values"], cfg["bias"], cfg["batch_first"])
        seq = (lambda T: g.randn(B, T, E)) if cfg["batch_first"] else (lambda T: g.randn(T, B, E))
        ins = {"q": seq(L), "k": seq(S), "v": seq(S)}
        if cfg["kpm"]:
            ins["kpm"] = padding(g, B, S)
        if cfg["mask"] == "bool":
            am = g.rand(L, S) < 0.3
            am[:, 0] = False
            ins["attn_mask"] = am
        elif cfg["mask"] == "float":
            ins["attn_mask"] = g.randn(L, S)
        grads = ["q", "k", "v"] + (["attn_mask"] if cfg["mask"] == "float" else [])
        g.emit("RelativeMultiheadAttention", cfg, m, ins,
               lambda m, a: list(m(a["q"], a["k"], a["v"], a.get("kpm"), a.get("attn_mask"))), grads)
    for ci in range(n):
        nb, md = g.c((32, 128), (8, 20), (6, 7))  # max_distance beyond the exact buckets, as T5 needs
        cfg = {"H": g.c(1, 3), "nb": nb, "md": md, "bidirectional": ci % 2 == 0,
               "L": g.c(1, 7, 40), "S": g.c(1, 9, 150), "off": g.c(0, 0, 5, 200)}
        m = T5BiasRef(cfg["H"], cfg["nb"], cfg["md"], cfg["bidirectional"], cfg["L"], cfg["S"], cfg["off"])
        g.emit("T5RelativePositionBias", cfg, m, {}, lambda m, a: [m()], [])
