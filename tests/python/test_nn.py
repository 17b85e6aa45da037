"""attn.nn and attn.functional from Python, against torch on the same weights
(a torch module's state_dict() loaded as it is), forward and gradients; the
graph and relative-position layers against references written here from
their papers' definitions."""
import math

import numpy as np
import pytest
import torch

import attn


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), b.detach().numpy() if isinstance(b, torch.Tensor) else b,
                               atol=tol, rtol=tol)


def attn_grads(module):
    return {n: p.grad.numpy() for n, p in module.named_parameters() if p.grad is not None}


def check_grads(mine, ref, tol=1e-5):
    got = attn_grads(mine)
    for name, p in ref.named_parameters():
        assert name in got, name
        close(got[name], p.grad, tol)


def leaf(t):
    return attn.tensor(t.detach().numpy(), requires_grad=True)


def test_multihead_attention_forward_and_gradients():
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=True, kdim=12, vdim=10)
    mine = attn.nn.MultiheadAttention(16, 4, batch_first=True, kdim=12, vdim=10)
    mine.load_state_dict(ref.state_dict())
    q, k, v = torch.randn(2, 5, 16), torch.randn(2, 7, 12), torch.randn(2, 7, 10)
    kpm = torch.zeros(2, 7, dtype=torch.bool)
    kpm[0, -3:] = True
    am = torch.rand(5, 7) > 0.8
    am[:, 0] = False
    out_r, w_r = ref(q, k, v, key_padding_mask=kpm, attn_mask=am)
    aq = leaf(q)
    out_m, w_m = mine(aq, k, v, key_padding_mask=kpm, attn_mask=am)
    close(out_m, out_r)
    close(w_m, w_r)
    g = torch.randn_like(out_r)
    (out_r * g).sum().backward()
    (out_m * attn.Tensor(g)).sum().backward()
    check_grads(mine, ref)
    assert aq.grad is not None and aq.grad.shape == (2, 5, 16)
    # attribute access as torch: submodules and parameters
    assert mine.out_proj.weight.shape == (16, 16)
    assert mine.training and not mine.eval().training


def test_transformer_layers_and_transformer():
    torch.manual_seed(1)
    kw = dict(dim_feedforward=32, dropout=0.0, batch_first=True)
    for norm_first in (False, True):
        for act in ("relu", "gelu"):
            ref = torch.nn.TransformerEncoderLayer(16, 4, activation=act, norm_first=norm_first, **kw)
            mine = attn.nn.TransformerEncoderLayer(16, 4, activation=act, norm_first=norm_first, **kw)
            mine.load_state_dict(ref.state_dict())
            x = torch.randn(2, 6, 16)
            mask = torch.nn.Transformer.generate_square_subsequent_mask(6)
            close(mine(x, src_mask=mask), ref(x, src_mask=mask))
    ref = torch.nn.TransformerDecoderLayer(16, 4, **kw)
    mine = attn.nn.TransformerDecoderLayer(16, 4, **kw)
    mine.load_state_dict(ref.state_dict())
    t, m = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    close(mine(t, m), ref(t, m))
    # the encoder clones its layer, as torch
    layer = attn.nn.TransformerEncoderLayer(16, 4, **kw)
    enc = attn.nn.TransformerEncoder(layer, 3, norm=attn.nn.LayerNorm(16))
    tref = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(16, 4, **kw), 3, norm=torch.nn.LayerNorm(16),
                                       enable_nested_tensor=False)
    assert sorted(enc.state_dict()) == sorted(tref.state_dict())
    enc.load_state_dict(tref.state_dict())
    x = torch.randn(2, 6, 16)
    kpm = torch.zeros(2, 6, dtype=torch.bool)
    kpm[1, 4:] = True
    close(enc(x, src_key_padding_mask=kpm)[0:1], tref(x, src_key_padding_mask=kpm)[0:1])
    full = torch.nn.Transformer(16, 4, 2, 2, 32, 0.0, batch_first=True)
    mine = attn.nn.Transformer(16, 4, 2, 2, 32, 0.0, batch_first=True)
    mine.load_state_dict(full.state_dict())
    src, tgt = torch.randn(2, 7, 16), torch.randn(2, 5, 16)
    tm = attn.nn.Transformer.generate_square_subsequent_mask(5)
    close(tm, torch.nn.Transformer.generate_square_subsequent_mask(5))
    out_m = mine(src, tgt, tgt_mask=tm)
    out_r = full(src, tgt, tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(5))
    close(out_m, out_r, 1e-4)


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
def test_recurrent_layers(cls):
    torch.manual_seed(2)
    ref = getattr(torch.nn, cls)(5, 6, num_layers=2, bidirectional=True, batch_first=True)
    mine = getattr(attn.nn, cls)(5, 6, num_layers=2, bidirectional=True, batch_first=True)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(3, 4, 5)
    out_r, h_r = ref(x)
    out_m, h_m = mine(x)
    close(out_m, out_r)
    if cls == "LSTM":
        close(h_m[0], h_r[0])
        close(h_m[1], h_r[1])
        h0 = (torch.randn(4, 3, 6), torch.randn(4, 3, 6))
        close(mine(x, h0)[0], ref(x, h0)[0])
    else:
        close(h_m, h_r)
    out_r.sum().backward()
    out_m.sum().backward()
    check_grads(mine, ref, 1e-4)


def gat_reference(x, edge_index, sd, heads, out, v2=False, slope=0.2):
    """GAT (Velickovic et al. 2018) and GATv2 (Brody et al. 2022) with self-loops,
    written from the papers over an edge list: alpha_ij = softmax over j of
    LeakyReLU(a_src . W x_j + a_dst . W x_i) (GAT) or a . LeakyReLU(W_l x_j + W_r x_i)
    (GATv2); out_i = sum_j alpha_ij W x_j, heads concatenated, plus bias."""
    n = x.shape[0]
    src, dst = edge_index
    keep = src != dst
    loops = torch.arange(n)
    src = torch.cat([src[keep], loops])
    dst = torch.cat([dst[keep], loops])
    if not v2:
        h = (x @ sd["lin.weight"].T).reshape(n, heads, out)
        e = (h * sd["att_src"]).sum(-1)[src] + (h * sd["att_dst"]).sum(-1)[dst]
        e = torch.nn.functional.leaky_relu(e, slope)
        msg = h[src]
    else:
        hl = (x @ sd["lin_l.weight"].T + sd["lin_l.bias"]).reshape(n, heads, out)
        hr = (x @ sd["lin_r.weight"].T + sd["lin_r.bias"]).reshape(n, heads, out)
        e = (torch.nn.functional.leaky_relu(hl[src] + hr[dst], slope) * sd["att"]).sum(-1)
        msg = hl[src]
    result = torch.zeros(n, heads, out)
    for i in range(n):
        sel = dst == i
        alpha = torch.softmax(e[sel], dim=0)
        result[i] = (alpha.unsqueeze(-1) * msg[sel]).sum(0)
    return result.reshape(n, heads * out) + sd["bias"]


@pytest.mark.parametrize("v2", [False, True])
def test_graph_attention_against_the_papers_definition(v2):
    torch.manual_seed(3)
    mine = (attn.nn.GATv2Conv if v2 else attn.nn.GATConv)(5, 4, heads=3)
    sd = {k: torch.from_numpy(v.numpy().copy()) for k, v in mine.state_dict().items()}
    sd["bias"] = torch.randn(12)
    mine.load_state_dict(sd)
    x = torch.randn(6, 5)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 2], [1, 2, 3, 4, 5, 0, 3, 0]])
    out, (edges, alpha) = mine(x, edge_index, return_attention_weights=True)
    close(out, gat_reference(x, edge_index, sd, 3, 4, v2), 1e-5)
    assert alpha.shape == (edges.shape[1], 3)


def relative_reference(x, sd, heads, k):
    """Shaw et al. 2018: e_ij = q_i . (k_j + aK[clip(j - i)]) / sqrt(D),
    z_i = sum_j alpha_ij (v_j + aV[clip(j - i)]), heads concatenated, out_proj."""
    L, B, E = x.shape
    D = E // heads
    qkv = x @ sd["in_proj_weight"].T + sd["in_proj_bias"]
    q, kk, v = (t.reshape(L, B, heads, D).permute(1, 2, 0, 3) for t in qkv.chunk(3, -1))
    rel = (torch.arange(L).reshape(1, L) - torch.arange(L).reshape(L, 1)).clamp(-k, k) + k  # [i, j]
    ak, av = sd["relative_key"][rel], sd["relative_value"][rel]  # (L, L, D)
    e = (q @ kk.transpose(-2, -1) + torch.einsum("bhid,ijd->bhij", q, ak)) / math.sqrt(D)
    a = torch.softmax(e, -1)
    z = a @ v + torch.einsum("bhij,ijd->bhid", a, av)
    z = z.permute(2, 0, 1, 3).reshape(L, B, E)
    return z @ sd["out_proj.weight"].T + sd["out_proj.bias"]


def test_relative_multihead_attention_against_shaw_et_al():
    torch.manual_seed(4)
    mine = attn.nn.RelativeMultiheadAttention(8, 2, max_relative_position=3)
    sd = {k: torch.randn(v.shape) * 0.5 for k, v in mine.state_dict().items()}
    mine.load_state_dict(sd)
    x = torch.randn(6, 2, 8)
    out, _ = mine(x, x, x)
    close(out, relative_reference(x, sd, 2, 3), 1e-5)


def test_the_attention_family_runs_with_pytorch_style_arguments():
    torch.manual_seed(5)
    q, keys = torch.randn(2, 6), torch.randn(2, 5, 7)
    for m in (attn.nn.AdditiveAttention(6, 7, 8), attn.nn.LuongAttention(6, 7, score="general")):
        ctx, w = m(q, keys)
        assert ctx.shape == (2, 7) and w.shape == (2, 5)
        close(w.numpy().sum(-1), np.ones(2))
    pooled, w = attn.nn.AttentionPooling(7)(keys)
    assert pooled.shape == (2, 7)
    assert attn.nn.CosineAttention()(keys, keys, keys).shape == (2, 5, 7)
    assert attn.nn.LocalitySelfAttention(16, heads=2, dim_head=8)(torch.randn(2, 5, 16)).shape == (2, 5, 16)
    assert attn.nn.T5RelativePositionBias(4)(5, 6).shape[-2:] == (5, 6)
    rope = attn.nn.RotaryEmbedding(8)
    close(rope(torch.randn(1, 2, 3, 8) * 0, offset=2), np.zeros((1, 2, 3, 8)))


def test_functional_against_torch():
    torch.manual_seed(6)
    q, k, v = torch.randn(2, 4, 9, 8), torch.randn(2, 4, 11, 8), torch.randn(2, 4, 11, 6)
    m = torch.rand(2, 1, 9, 11) > 0.4
    m[..., 0] = True
    s = (q @ k.transpose(-2, -1)) / math.sqrt(8)
    ref = torch.softmax(s.masked_fill(~m, float("-inf")), -1) @ v
    out, lse = attn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, return_lse=True)
    close(out, ref)
    close(lse, torch.logsumexp(s.masked_fill(~m, float("-inf")), -1))
    w = attn.functional.scaled_dot_product_attention_weights(q, k, lse, attn_mask=m)
    close(w, torch.softmax(s.masked_fill(~m, float("-inf")), -1))
    # bottom-right causal alignment (decoding after a cache)
    i, j = torch.arange(9).reshape(9, 1), torch.arange(11).reshape(1, 11)
    br = torch.softmax(s.masked_fill(j > i + 2, float("-inf")), -1) @ v
    close(attn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, causal_align="bottom_right"), br)
    # linear attention: phi = elu + 1, out_i = phi(q_i) S / phi(q_i) z
    phi = lambda t: torch.nn.functional.elu(t) + 1
    kv = phi(k).transpose(-2, -1) @ v
    lin = (phi(q) @ kv) / ((phi(q) @ phi(k).sum(-2, keepdim=True).transpose(-2, -1)) + 1e-6)
    close(attn.functional.linear_attention(q, k, v), lin, 1e-4)
    # RoPE (half split): x * cos + rotate_half(x) * sin
    x = torch.randn(1, 2, 5, 8)
    inv = 1.0 / 10000 ** (torch.arange(0, 8, 2).double() / 8)
    ang = torch.arange(5).double().reshape(5, 1) * inv
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    rot = torch.cat([-x[..., 4:], x[..., :4]], -1)
    close(attn.functional.rotary_embedding(x), (x * cos + rot * sin).float())
    # ALiBi slopes (Press et al.): 2^(-8 i / n) for n a power of two
    close(attn.functional.alibi_slopes(8), np.array([2 ** (-8 * (i + 1) / 8) for i in range(8)], np.float32))
    # the functional ops around attention
    x = torch.randn(3, 7)
    close(attn.functional.softmax(x, -1), torch.softmax(x, -1))
    close(attn.functional.gelu(x, approximate="tanh"), torch.nn.functional.gelu(x, approximate="tanh"))
    tgt = torch.tensor([1, 0, 6])
    close(attn.functional.cross_entropy(x, tgt, label_smoothing=0.1),
          torch.nn.functional.cross_entropy(x, tgt, label_smoothing=0.1))


def test_training_from_python_with_attn_optimizers():
    torch.manual_seed(7)
    attn.manual_seed(7)
    model = attn.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    head = attn.nn.Linear(8, 2)
    params = model.parameters() + head.parameters()
    opt = attn.optim.Adam(params, lr=1e-2)
    x = attn.Tensor(torch.randn(16, 4, 8))
    y = attn.Tensor((torch.arange(16) % 2))
    first = None
    for _ in range(40):
        loss = attn.functional.cross_entropy(head(model(x).mean(1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or loss.item()
    assert loss.item() < 0.5 * first


def test_io_round_trips(tmp_path):
    sd = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.float64)}
    path = str(tmp_path / "t.safetensors")
    attn.save_safetensors(path, sd, metadata={"format": "pt"})
    back = attn.load_safetensors(path)
    close(back["a"], sd["a"])
    assert back["b"].dtype == "float64"
    pt = str(tmp_path / "m.pt")
    lin = torch.nn.Linear(3, 2)
    torch.save({"model": lin.state_dict(), "epoch": 3}, pt)
    loaded = attn.load_torch(pt, select="model")
    close(loaded["weight"], lin.weight)
    m = attn.nn.Linear(3, 2)
    m.load_state_dict(loaded)
    close(m(torch.ones(1, 3)), lin(torch.ones(1, 3)))
    with pytest.raises(attn.Error, match="missing keys"):
        m.load_state_dict({"weight": loaded["weight"]})
    with pytest.raises(attn.Error):
        attn.load_torch(str(tmp_path / "absent.pt"))


def test_torchvision_vit_same_logits():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(8)
    ref = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                               hidden_dim=16, mlp_dim=32, num_classes=5).eval()
    mine = attn.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                         mlp_dim=32, num_classes=5).eval()
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        close(mine(x), ref(x), 1e-4)
