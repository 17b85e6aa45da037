"""attn.torch: the fused attention as a torch.autograd.Function, and the
MultiheadAttention drop-in, against torch's own composed attention."""
import math

import numpy as np
import pytest
import torch

import attn
import attn.torch as at


def composed(q, k, v, mask=None, causal=False, scale=None, gqa=False, window=None, alibi=None, softcap=0.0):
    """torch's composed attention, written from the definition (float64 ground truth)."""
    if gqa and k.shape[-3] != q.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k = k.repeat_interleave(rep, dim=-3)
        v = v.repeat_interleave(rep, dim=-3)
    L, S = q.shape[-2], k.shape[-2]
    s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    i = torch.arange(L).reshape(L, 1)
    j = torch.arange(S).reshape(1, S)
    allowed = torch.ones(L, S, dtype=torch.bool)
    if causal:
        allowed &= j <= i
    if window is not None:
        left, right = window
        if left is not None:
            allowed &= j >= i - left
        if right is not None:
            allowed &= j <= i + right
    if alibi is not None:
        s = s - alibi.reshape(-1, 1, 1) * (i - j).abs().to(s.dtype)
    if mask is not None:
        if mask.dtype == torch.bool:
            allowed = allowed & mask
        else:
            s = s + mask
    s = s.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(s, dim=-1)
    p = torch.nan_to_num(p, nan=0.0)  # a fully masked row gives 0, as attn and SDPA
    return p @ v


def rand(*shape, grad=True, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype).requires_grad_(grad)


CASES = [
    dict(),
    dict(causal=True),
    dict(scale=0.3),
    dict(mask="bool"),
    dict(mask="float"),
    dict(mask="float_grad"),
    dict(mask="bool", causal=True),
    dict(gqa=True),
    dict(gqa=True, causal=True),
    dict(window=(3, 1)),
    dict(window=(2, None), causal=True),
    dict(alibi=True, causal=True),
    dict(softcap=5.0),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sdpa_values_and_gradients_match_composed_attention(case, dtype):
    torch.manual_seed(0)
    B, Hq, L, S, E, Ev = 2, 4, 7, 9, 8, 5
    Hkv = 2 if case.get("gqa") else Hq
    q, k, v = rand(B, Hq, L, E, dtype=dtype), rand(B, Hkv, S, E, dtype=dtype), rand(B, Hkv, S, Ev, dtype=dtype)
    mask = None
    if case.get("mask") == "bool":
        mask = torch.rand(B, 1, L, S) > 0.3
        mask[..., 0] = True
    elif case.get("mask") in ("float", "float_grad"):
        mask = torch.randn(1, Hq, L, S, dtype=dtype).requires_grad_(case["mask"] == "float_grad")
    alibi = attn.functional.alibi_slopes(Hq, dtype="float64" if dtype == torch.float64 else "float32")
    alibi = torch.from_numpy(alibi.numpy().copy()) if case.get("alibi") else None
    kw = dict(is_causal=case.get("causal", False), scale=case.get("scale"), enable_gqa=case.get("gqa", False),
              window=case.get("window"), alibi_slopes=alibi, softcap=case.get("softcap", 0.0))
    out = at.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kw)
    ref = composed(*(t.double() for t in (q, k, v)), mask=None if mask is None else
                   (mask if mask.dtype == torch.bool else mask.double()), causal=kw["is_causal"],
                   scale=kw["scale"], gqa=kw["enable_gqa"], window=kw["window"],
                   alibi=None if alibi is None else alibi.double(), softcap=kw["softcap"])
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert out.dtype == dtype and out.shape == (B, Hq, L, Ev)
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    g = torch.randn_like(ref)
    inputs = [q, k, v] + ([mask] if mask is not None and mask.requires_grad else [])
    got = torch.autograd.grad(out, inputs, g.to(dtype))
    want = torch.autograd.grad(ref, inputs, g, allow_unused=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b.double(), atol=tol * 10, rtol=tol * 10)


def test_float64_gradients_pass_torch_gradcheck():
    torch.manual_seed(1)
    q, k, v = rand(1, 2, 4, 3), rand(1, 2, 5, 3), rand(1, 2, 5, 2)
    mask = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v, m: at.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=True), (q, k, v, mask))


def test_non_contiguous_inputs_and_gradients():
    torch.manual_seed(2)
    x = rand(2, 6, 4, 8)  # (B, L, H, E): heads as a strided view
    q = x.transpose(1, 2)
    out = at.scaled_dot_product_attention(q, q, q, is_causal=True)
    ref = composed(q, q, q, causal=True)
    torch.testing.assert_close(out, ref)
    out.sum().backward()  # an expanded (stride 0) output gradient
    gx = x.grad.clone()
    x.grad = None
    ref.sum().backward()
    torch.testing.assert_close(gx, x.grad)


def test_backward_twice_with_retain_graph():
    q, k, v = rand(1, 1, 3, 4), rand(1, 1, 3, 4), rand(1, 1, 3, 4)
    out = at.scaled_dot_product_attention(q, k, v)
    out.sum().backward(retain_graph=True)
    g1 = q.grad.clone()
    out.sum().backward()
    torch.testing.assert_close(q.grad, 2 * g1)


def test_in_place_change_of_the_output_is_caught():
    q = rand(1, 1, 3, 4)
    out = at.scaled_dot_product_attention(q, q, q)
    out.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_inference_without_grad_records_nothing():
    q = torch.randn(1, 2, 8, 4)
    out = at.scaled_dot_product_attention(q, q, q)
    assert out.grad_fn is None and not out.requires_grad
    with torch.no_grad():
        out = at.scaled_dot_product_attention(rand(1, 2, 8, 4, dtype=torch.float32), q, q)
    assert out.grad_fn is None


def test_dropout_statistics_and_its_gradient():
    # q = k = 0 gives uniform probabilities 1/S; v = I makes the output row the
    # dropped, rescaled probabilities themselves: 0 or 1 / (S (1 - p)).
    torch.manual_seed(3)
    p, S, L, H = 0.3, 64, 256, 4
    q = torch.zeros(1, H, L, 8, requires_grad=True)
    k = torch.zeros(1, H, S, 8)
    v = torch.eye(S).expand(1, H, S, S).contiguous().requires_grad_(True)
    out = at.scaled_dot_product_attention(q, k, v, dropout_p=p)
    kept = out.detach() != 0
    frac_dropped = 1.0 - kept.double().mean().item()
    n = kept.numel()
    assert abs(frac_dropped - p) < 5 * math.sqrt(p * (1 - p) / n), frac_dropped
    torch.testing.assert_close(out.detach()[kept], torch.full((int(kept.sum()),), 1.0 / (S * (1 - p))))
    # The backward uses the forward's mask: dV = P_dropped^T dO with the mask read off the output.
    g = torch.randn_like(out)
    out.backward(g)
    pd = kept.float() / (S * (1 - p))
    torch.testing.assert_close(v.grad, pd.transpose(-2, -1) @ g, atol=1e-5, rtol=1e-5)
    # torch.manual_seed makes the draws reproducible
    torch.manual_seed(4)
    a = at.scaled_dot_product_attention(q.detach(), k, v.detach(), dropout_p=p)
    torch.manual_seed(4)
    b = at.scaled_dot_product_attention(q.detach(), k, v.detach(), dropout_p=p)
    assert torch.equal(a, b)


def test_bad_input_raises_with_attn_message():
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(TypeError, match="torch.Tensor"):
        at.scaled_dot_product_attention(q.numpy(), q, q)
    with pytest.raises(ValueError, match="last dims"):
        at.scaled_dot_product_attention(q, torch.randn(1, 2, 4, 6), q)
    with pytest.raises(TypeError, match="DLPack dtype"):
        at.scaled_dot_product_attention(q.half(), q.half(), q.half())
    with pytest.raises(attn.Error, match="query"):
        at.scaled_dot_product_attention(q, q.double(), q)
    # a 0-size batch is an empty result, not a crash
    e = torch.randn(0, 2, 4, 8)
    assert at.scaled_dot_product_attention(e, e, e).shape == (0, 2, 4, 8)


MHA_CASES = [
    dict(),
    dict(batch_first=True),
    dict(kdim=6, vdim=5),
    dict(add_bias_kv=True),
    dict(add_zero_attn=True),
    dict(bias=False),
]


@pytest.mark.parametrize("opts", MHA_CASES, ids=lambda c: ",".join(c) or "plain")
@pytest.mark.parametrize("masks", ["none", "bool", "float", "kpm", "both", "causal"])
def test_multihead_attention_is_a_drop_in(opts, masks):
    torch.manual_seed(5)
    E, H, L, S, B = 12, 3, 5, 7, 2
    ref = torch.nn.MultiheadAttention(E, H, **opts).double()
    mine = at.MultiheadAttention(E, H, **opts).double()
    mine.load_state_dict(ref.state_dict())
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in ref.named_parameters()]
    bf = opts.get("batch_first", False)
    kd, vd = opts.get("kdim", E), opts.get("vdim", E)
    shape = (lambda n, d: (B, n, d)) if bf else (lambda n, d: (n, B, d))
    q = torch.randn(*shape(L, E), dtype=torch.float64, requires_grad=True)
    k = torch.randn(*shape(S, kd), dtype=torch.float64, requires_grad=True)
    v = torch.randn(*shape(S, vd), dtype=torch.float64, requires_grad=True)
    kw = {}
    if masks in ("bool", "both"):
        m = torch.rand(L, S) > 0.7
        m[:, 0] = False
        kw["attn_mask"] = m
    if masks == "float":
        kw["attn_mask"] = torch.randn(B * H, L, S, dtype=torch.float64)
    if masks in ("kpm", "both"):
        kpm = torch.zeros(B, S, dtype=torch.bool)
        kpm[1, -2:] = True
        kw["key_padding_mask"] = kpm
    if masks == "causal":
        if L != S or opts.get("add_bias_kv") or opts.get("add_zero_attn"):
            pytest.skip("a causal mask needs L == S and no appended key")
    if masks == "causal":
        q = torch.randn(*shape(L, E), dtype=torch.float64, requires_grad=True)
        k = torch.randn(*shape(L, kd), dtype=torch.float64, requires_grad=True)
        v = torch.randn(*shape(L, vd), dtype=torch.float64, requires_grad=True)
        causal_mask = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)
        out_r, w_r = ref(q, k, v, attn_mask=causal_mask)
        out_m, w_m = mine(q, k, v, is_causal=True)
    else:
        out_r, w_r = ref(q, k, v, **kw)
        out_m, w_m = mine(q, k, v, **kw)
    torch.testing.assert_close(out_m, out_r)
    torch.testing.assert_close(w_m, w_r.detach())
    g = torch.randn_like(out_r)
    want = torch.autograd.grad(out_r, [q, k, v] + list(ref.parameters()), g, allow_unused=True)
    got = torch.autograd.grad(out_m, [q, k, v] + list(mine.parameters()), g, allow_unused=True)
    for a, b in zip(got, want):
        if b is None:
            assert a is None or float(a.abs().max()) == 0.0
        else:
            torch.testing.assert_close(a, b)
    # per-head weights, and no weights
    _, wh_r = ref(q, k, v, average_attn_weights=False, **({} if masks == "causal" else kw))
    _, wh_m = mine(q, k, v, average_attn_weights=False, **({} if masks == "causal" else kw))
    if masks != "causal":
        torch.testing.assert_close(wh_m, wh_r.detach())
    assert mine(q, k, v, need_weights=False)[1] is None


def test_multihead_attention_unbatched_input():
    torch.manual_seed(6)
    ref = torch.nn.MultiheadAttention(8, 2).double()
    mine = at.MultiheadAttention(8, 2).double()
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(5, 8, dtype=torch.float64)
    o_r, w_r = ref(x, x, x)
    o_m, w_m = mine(x, x, x)
    torch.testing.assert_close(o_m, o_r)
    torch.testing.assert_close(w_m, w_r)


class _Classifier(torch.nn.Module):
    def __init__(self, mha_cls, E=32, H=4, vocab=20, classes=3):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, E)
        self.attn = mha_cls(E, H, batch_first=True)
        self.head = torch.nn.Linear(E, classes)

    def forward(self, ids):
        x = self.emb(ids)
        y, _ = self.attn(x, x, x, need_weights=False)
        return self.head((x + y).mean(1))


def test_a_torch_model_with_attn_multihead_attention_trains_to_the_same_loss_curve():
    torch.manual_seed(7)
    ref = _Classifier(torch.nn.MultiheadAttention)
    mine = _Classifier(at.MultiheadAttention)
    mine.load_state_dict(ref.state_dict())
    ids = torch.randint(0, 20, (64, 12))
    labels = (ids[:, 0] % 3)
    curves = []
    for model in (ref, mine):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for step in range(150):
            batch = slice((step * 16) % 64, (step * 16) % 64 + 16)
            loss = torch.nn.functional.cross_entropy(model(ids[batch]), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves.append(losses)
    print("loss curves", curves[0][::15], curves[1][::15])
    assert curves[0][-1] < 0.5 * curves[0][0]  # it learns
    diff = max(abs(a - b) for a, b in zip(*curves))
    assert diff < 1e-3, diff
