// scaled_dot_product_attention: argument checks, the composed reference, and
// the fused float32 path with its backward (semantics in attn/attention.h).
#include "attn/attention.h"

#include <cmath>
#include <limits>

#include "kernels/cpu/attention.h"
#include "ops/internal.h"
#include "ops/sdpa_modifiers.h"

namespace attn::nn::functional {

using namespace ::attn::ops;

namespace {

constexpr const char* kOp = "scaled_dot_product_attention";

// Canonical geometry: every input seen as 4-d (B, H, rows, cols), B the
// product of the leading batch dims.
struct Geometry {
  Shape batch;  // leading batch dims of q
  int64_t B = 1, Hq = 1, Hk = 1, L = 0, S = 0, E = 0, Ev = 0;
  double scale = 1.0;
  int64_t diag = 0;
  bool has_heads = true;  // false for 2-d inputs
};

Tensor as4(const Tensor& t, const Geometry& g, int64_t H) {
  return t.reshape({g.B, H, t.size(-2), t.size(-1)});
}

Geometry check(const Tensor& q, const Tensor& k, const Tensor& v, const SdpaOptions& o) {
  check_float(kOp, "query", q);
  check_float(kOp, "key", k);
  check_float(kOp, "value", v);
  check_same_dtype(kOp, "query", q, "key", k);
  check_same_dtype(kOp, "query", q, "value", v);
  ATTN_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), kOp,
             ": query, key and value must have the same number of dims (at least 2), got query ",
             shape_str(q.shape()), ", key ", shape_str(k.shape()), ", value ", shape_str(v.shape()));
  Geometry g;
  g.has_heads = q.dim() >= 3;
  const int64_t lead = q.dim() - (g.has_heads ? 3 : 2);
  g.batch.assign(q.shape().begin(), q.shape().begin() + lead);
  for (int64_t d = 0; d < lead; ++d)
    ATTN_CHECK(k.size(d) == q.size(d) && v.size(d) == q.size(d), kOp, ": the batch dims of query ",
               shape_str(q.shape()), ", key ", shape_str(k.shape()), " and value ", shape_str(v.shape()),
               " must match");
  g.B = shape_numel(g.batch);
  g.Hq = g.has_heads ? q.size(-3) : 1;
  g.Hk = g.has_heads ? k.size(-3) : 1;
  g.L = q.size(-2), g.E = q.size(-1), g.S = k.size(-2), g.Ev = v.size(-1);
  ATTN_CHECK(k.size(-1) == g.E, kOp, ": query is ", shape_str(q.shape()), " and key is ", shape_str(k.shape()),
             ": their last dims (E) must match");
  ATTN_CHECK(v.size(-2) == g.S && (!g.has_heads || v.size(-3) == g.Hk), kOp, ": key is ", shape_str(k.shape()),
             " and value is ", shape_str(v.shape()), ": they must have the same heads and sequence length");
  if (g.Hq != g.Hk) {
    ATTN_CHECK(o.enable_gqa(), kOp, ": query has ", g.Hq, " heads and key/value ", g.Hk,
               "; set enable_gqa to share key/value heads");
    ATTN_CHECK(g.Hk > 0 && g.Hq % g.Hk == 0, kOp, ": query heads (", g.Hq, ") must be a multiple of key/value heads (",
               g.Hk, ")");
  }
  g.scale = o.scale().value_or(g.E > 0 ? 1.0 / std::sqrt(static_cast<double>(g.E)) : 1.0);
  ATTN_CHECK(std::isfinite(g.scale), kOp, ": scale must be finite, got ", g.scale);
  ATTN_CHECK(o.dropout_p() >= 0.0 && o.dropout_p() <= 1.0, kOp, ": dropout_p must be in [0, 1], got ", o.dropout_p());
  ATTN_CHECK(o.softcap() >= 0.0 && std::isfinite(o.softcap()), kOp, ": softcap must be >= 0 (0 turns it off), got ",
             o.softcap());
  ATTN_CHECK(o.global_tokens() >= 0 && o.stride() >= 0, kOp, ": global_tokens and stride must be >= 0, got ",
             o.global_tokens(), " and ", o.stride());
  ATTN_CHECK(o.window().left >= -1 && o.window().right >= -1, kOp, ": window sizes must be >= 0, or -1 for unbounded, got (",
             o.window().left, ", ", o.window().right, ")");
  g.diag = (o.causal_align() == CausalAlign::BottomRight ? g.S - g.L : 0) + o.diagonal_offset();
  Shape full = g.batch;
  if (g.has_heads) full.push_back(g.Hq);
  full.push_back(g.L);
  full.push_back(g.S);
  if (o.attn_mask().defined()) {
    const Tensor& m = o.attn_mask();
    ATTN_CHECK(m.dtype() == kBool || m.dtype() == q.dtype(), kOp, ": attn_mask must be bool (true = attend) or ",
               dtype_name(q.dtype()), " like query, got ", dtype_name(m.dtype()));
    ATTN_CHECK(m.dim() <= static_cast<int64_t>(full.size()) &&
                   broadcast_shapes(m.shape(), full, kOp) == full,
               kOp, ": attn_mask ", shape_str(m.shape()), " must broadcast to ", shape_str(full));
  }
  if (o.alibi_slopes().defined()) {
    const Tensor& a = o.alibi_slopes();
    check_float(kOp, "alibi_slopes", a);
    Shape bh = g.batch;
    bh.push_back(g.Hq);
    ATTN_CHECK(a.shape() == Shape{g.Hq} || a.shape() == bh, kOp, ": alibi_slopes must be (", g.Hq, ") or ",
               shape_str(bh), ", got ", shape_str(a.shape()));
  }
  if (o.key_lengths().defined()) {
    const Tensor& kl = o.key_lengths();
    check_dtype(kOp, "key_lengths", kl, kInt64);
    ATTN_CHECK(kl.shape() == g.batch || (g.batch.empty() && kl.numel() == 1), kOp, ": key_lengths must have the batch shape ",
               shape_str(g.batch), ", got ", shape_str(kl.shape()));
    Tensor c = kl.contiguous();
    for (int64_t i = 0; i < c.numel(); ++i)
      ATTN_CHECK(c.data<int64_t>()[i] >= 0 && c.data<int64_t>()[i] <= g.S, kOp, ": key_lengths[", i, "] = ",
                 c.data<int64_t>()[i], " is outside [0, ", g.S, "]");
  }
  return g;
}

// The mask, as (B, Hq, L, S) broadcast view (stride 0 where broadcast).
Tensor mask4(const Tensor& m, const Geometry& g) {
  Shape full = g.batch;
  if (g.has_heads) full.push_back(g.Hq);
  full.push_back(g.L);
  full.push_back(g.S);
  Tensor e = m.expand(full);
  if (!g.has_heads) e = e.unsqueeze(-3);
  return e.reshape({g.B, g.Hq, g.L, g.S});  // a view unless batch dims broadcast unevenly
}

// Slopes per (b, h) as (B, Hq): (Hq) is shared by every batch, (B..., Hq) flattened.
Tensor slopes2(const Tensor& a, const Geometry& g) {
  Tensor d = a.detach();
  return (d.dim() == 1 ? d.expand({g.B, g.Hq}) : d.reshape({g.B, g.Hq})).contiguous();
}

// Reserves the dropout draw's counter blocks and returns its offset. Under a
// BatchShardGuard whose rows are q's dim 0, the whole batch's blocks are
// reserved and the offset is that of this share's first row (the counter is
// linear in bh = b * Hq + h).
uint64_t dropout_offset(Generator& gen, const Geometry& g) {
  const BatchShard& sh = batch_shard();
  if (sh.active() && !g.batch.empty() && g.batch[0] == sh.rows) {
    const int64_t per_row = g.B / sh.rows * g.Hq;  // bh per row of dim 0
    const uint64_t first = gen.reserve(kernels::cpu::sdpa_dropout_blocks(sh.total * per_row, g.L, g.S));
    return first + kernels::cpu::sdpa_dropout_blocks(sh.begin * per_row, g.L, g.S);
  }
  return gen.reserve(kernels::cpu::sdpa_dropout_blocks(g.B * g.Hq, g.L, g.S));
}

}  // namespace

namespace {

// The reference's probabilities (B, Hq, L, S) before dropout, its LSE (B, Hq, L)
// and the K/V views; all differentiable ops.
struct RefScores {
  Tensor p, lse, v4;
};

RefScores reference_scores(const Tensor& q, const Tensor& k, const Tensor& v, const SdpaOptions& o,
                           const Geometry& g) {
  const DType dt = q.dtype();
  Tensor q4 = as4(q, g, g.Hq), k4 = as4(k, g, g.Hk);
  Tensor v4 = v.defined() ? as4(v, g, g.Hk) : Tensor();
  if (g.Hq != g.Hk) {  // the reference may copy K/V per head; the fused path does not
    const int64_t G = g.Hq / g.Hk;
    k4 = k4.unsqueeze(2).expand({g.B, g.Hk, G, g.S, g.E}).reshape({g.B, g.Hq, g.S, g.E});
    if (v4.defined()) v4 = v4.unsqueeze(2).expand({g.B, g.Hk, G, g.S, g.Ev}).reshape({g.B, g.Hq, g.S, g.Ev});
  }
  Tensor s = matmul(q4, k4.transpose(-2, -1)) * g.scale;  // (B, Hq, L, S)
  if (o.softcap() > 0) s = attn::tanh(s / o.softcap()) * o.softcap();
  Tensor i = arange(0, static_cast<double>(g.L), 1, kFloat64).reshape({g.L, 1});
  Tensor j = arange(0, static_cast<double>(g.S), 1, kFloat64).reshape({1, g.S});
  Tensor c = i + static_cast<double>(g.diag);  // aligned key position of each query
  if (o.alibi_slopes().defined()) {
    Tensor dist = abs(c - j).to(dt);  // (L, S)
    Tensor sl = slopes2(o.alibi_slopes(), g).to(dt).reshape({g.B, g.Hq, 1, 1});
    s = s - sl * dist;
  }
  Tensor allowed = ones({1, 1, g.L, g.S}, kBool);
  if (o.attn_mask().defined()) {
    Tensor m = mask4(o.attn_mask(), g);
    if (m.dtype() == kBool)
      allowed = logical_and(allowed, m);
    else
      s = s + m;
  }
  if (o.is_causal()) allowed = logical_and(allowed, le(j, c));
  if (o.window().active() || o.global_tokens() > 0 || o.stride() > 0) {
    // The local band, with the sparse pattern's keys added back.
    Tensor local = ones({g.L, g.S}, kBool);
    if (o.window().left >= 0) local = logical_and(local, ge(j, c - static_cast<double>(o.window().left)));
    if (o.window().right >= 0) local = logical_and(local, le(j, c + static_cast<double>(o.window().right)));
    if (o.global_tokens() > 0) {
      const double gt_ = static_cast<double>(o.global_tokens());
      local = logical_or(local, logical_or(lt(j, scalar_like(gt_, kFloat64)).expand({g.L, g.S}),
                                           lt(i, scalar_like(gt_, kFloat64)).expand({g.L, g.S})));
    }
    if (o.stride() > 0) {
      std::vector<uint8_t> hit(static_cast<size_t>(g.L * g.S));
      for (int64_t a = 0; a < g.L; ++a)
        for (int64_t b = 0; b < g.S; ++b) hit[a * g.S + b] = (a + g.diag - b) % o.stride() == 0;
      std::vector<int> h(hit.begin(), hit.end());
      local = logical_or(local, from_vector(h, {g.L, g.S}).to(kBool));
    }
    allowed = logical_and(allowed, local);
  }
  if (o.key_lengths().defined()) {
    Tensor kl = o.key_lengths().reshape({g.B, 1, 1, 1}).to(kFloat64);
    allowed = logical_and(allowed, lt(j, kl));
  }
  const double inf = std::numeric_limits<double>::infinity();
  allowed = logical_and(allowed, gt(s.detach(), scalar_like(-inf, dt)));  // -inf from an additive mask
  Tensor row_any = gt(sum(allowed.to(kFloat64), {-1}, true), scalar_like(0.0, kFloat64));  // (B, Hq, L, 1)
  // Fully masked rows: softmax over zeros (finite), then multiplied away, so
  // their output and gradients are 0 rather than NaN; their LSE is -inf.
  Tensor s_safe = where(row_any, where(allowed, s, -inf), 0.0);
  RefScores r;
  r.p = where(row_any, softmax(s_safe, -1), 0.0);
  r.lse = where(row_any.squeeze(-1), logsumexp(s_safe, {-1}), -inf);
  r.v4 = v4;
  return r;
}

Tensor reference_output(const RefScores& r, const SdpaOptions& o, const Geometry& g) {
  Tensor p = r.p;
  if (o.dropout_p() > 0) {
    Generator& gen = o.generator() ? *o.generator() : default_generator();
    const uint64_t offset = dropout_offset(gen, g);
    Tensor z = Tensor::make({g.B * g.Hq, g.L, g.S}, p.dtype());
    kernels::cpu::sdpa_dropout_mask(z, 1.0 - o.dropout_p(), gen.seed(), offset);
    p = p * z.reshape({g.B, g.Hq, g.L, g.S});
  }
  Shape os = g.batch;
  if (g.has_heads) os.push_back(g.Hq);
  os.push_back(g.L);
  os.push_back(g.Ev);
  return matmul(p, r.v4).reshape(os);
}

}  // namespace

Tensor scaled_dot_product_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                                              const SdpaOptions& o) {
  const Geometry g = check(q, k, v, o);
  return reference_output(reference_scores(q, k, v, o, g), o, g);
}

namespace {

// Kernel parameters for the fused path; `keep` holds the buffers the raw
// pointers point into alive.
struct Fused {
  kernels::cpu::SdpaParams p;
  std::vector<Tensor> keep;
};

Fused fused_params(const Geometry& g, const SdpaOptions& o) {
  Fused f;
  auto& p = f.p;
  p.BH = g.B * g.Hq, p.Hq = g.Hq, p.G = g.Hq / g.Hk, p.L = g.L, p.S = g.S, p.E = g.E, p.Ev = g.Ev;
  p.scale = static_cast<float>(g.scale);
  p.softcap = static_cast<float>(o.softcap());
  p.causal = o.is_causal();
  p.diag = g.diag;
  p.win_left = o.window().left;
  p.win_right = o.window().right;
  p.global_tokens = o.global_tokens();
  p.stride = o.stride();
  if (o.alibi_slopes().defined()) {
    Tensor a = slopes2(o.alibi_slopes(), g).to(kFloat32).contiguous();
    f.keep.push_back(a);
    p.alibi = a.data<float>();
  }
  if (o.attn_mask().defined()) {
    Tensor m = mask4(o.attn_mask().detach(), g);
    f.keep.push_back(m);
    p.mask = m.raw_data();
    p.mask_is_bool = m.dtype() == kBool;
    p.mask_sb = m.stride(0), p.mask_sh = m.stride(1), p.mask_si = m.stride(2), p.mask_sj = m.stride(3);
  }
  if (o.key_lengths().defined()) {
    Tensor kl = o.key_lengths().reshape({g.B}).contiguous();
    f.keep.push_back(kl);
    p.key_lengths = kl.data<int64_t>();
  }
  return f;
}

Shape out_shape(const Geometry& g, int64_t last) {
  Shape s = g.batch;
  if (g.has_heads) s.push_back(g.Hq);
  s.push_back(g.L);
  if (last >= 0) s.push_back(last);
  return s;
}

// Where the heads of t (lead..., rows, cols) start, as element offsets from
// its data in the row-major order of its leading dims, and its row stride,
// when each row is contiguous; empty otherwise (the caller copies t).
std::vector<int64_t> head_offsets(const Tensor& t, int64_t& row) {
  const int64_t d = t.dim();
  if (d < 2 || t.numel() == 0 || (t.size(-1) > 1 && t.stride(-1) != 1)) return {};
  for (int64_t i = 0; i < d; ++i)
    if (t.stride(i) < 0) return {};
  row = t.stride(-2);
  const int64_t lead = d - 2;
  int64_t n = 1;
  for (int64_t i = 0; i < lead; ++i) n *= t.size(i);
  std::vector<int64_t> off(static_cast<size_t>(n));
  std::vector<int64_t> idx(static_cast<size_t>(lead), 0);
  int64_t cur = 0;
  for (int64_t h = 0; h < n; ++h) {
    off[static_cast<size_t>(h)] = cur;
    for (int64_t i = lead - 1; i >= 0; --i) {  // the next index, odometer style
      if (++idx[static_cast<size_t>(i)] < t.size(i)) {
        cur += t.stride(i);
        break;
      }
      cur -= t.stride(i) * (t.size(i) - 1);
      idx[static_cast<size_t>(i)] = 0;
    }
  }
  return off;
}

// Whether head offsets and a row stride from head_offsets describe a dense
// (heads, rows, cols) tensor.
bool dense_heads(const std::vector<int64_t>& off, int64_t row, int64_t rows, int64_t cols) {
  if (rows > 1 && row != cols) return false;
  for (size_t h = 0; h < off.size(); ++h)
    if (off[h] != static_cast<int64_t>(h) * rows * cols) return false;
  return true;
}

std::tuple<Tensor, Tensor> fused(const Tensor& q, const Tensor& k, const Tensor& v, const SdpaOptions& o,
                                 const Geometry& g) {
  Fused f = fused_params(g, o);
  if (o.dropout_p() > 0) {
    Generator& gen = o.generator() ? *o.generator() : default_generator();
    f.p.keep = 1.0 - o.dropout_p();
    f.p.seed = gen.seed();
    f.p.offset = dropout_offset(gen, g);
  }
  const Tensor& mask = o.attn_mask();
  const bool mask_grad = mask.defined() && mask.dtype() != kBool && mask.requires_grad();
  const bool grad = should_record({&q, &k, &v}) || (mask_grad && is_grad_enabled());
  Tensor out = Tensor::make({g.B * g.Hq, g.L, g.Ev}, kFloat32);
  Tensor lse = Tensor::make({g.B * g.Hq, g.L}, kFloat32);
  Tensor q3, k3, v3;
  // Without a gradient to record, q, k and v whose rows are contiguous are
  // read in place, wherever their heads are: the head views of a projection
  // (q, k and v interleaved in one (L, 3, H, D) buffer, Swin's windows), a KV
  // cache's storage narrowed to its length. Otherwise dense copies, which the
  // backward keeps.
  std::vector<int64_t> qo, ko, vo;
  int64_t qrow = 0, krow = 0, vrow = 0;
  if (!grad && o.stride() <= 0) {
    qo = head_offsets(q, qrow), ko = head_offsets(k, krow), vo = head_offsets(v, vrow);
  }
  if (!qo.empty() && !ko.empty() && !vo.empty()) {
    const bool dense = dense_heads(qo, qrow, g.L, g.E) && dense_heads(ko, krow, g.S, g.E) &&
                       dense_heads(vo, vrow, g.S, g.Ev);
    if (!dense || !sdpa_forward_by_modifiers(f.p, q.data<float>(), k.data<float>(), v.data<float>(), out, lse)) {
      kernels::cpu::SdpaParams p = f.p;
      p.q_rows = {qo.data(), qrow}, p.k_rows = {ko.data(), krow}, p.v_rows = {vo.data(), vrow};
      kernels::cpu::sdpa_forward(q.detach(), k.detach(), v.detach(), p, out, lse);
    }
  } else {
    q3 = q.detach().reshape({g.B * g.Hq, g.L, g.E}).contiguous();
    k3 = k.detach().reshape({g.B * g.Hk, g.S, g.E}).contiguous();
    v3 = v.detach().reshape({g.B * g.Hk, g.S, g.Ev}).contiguous();
    if (!sdpa_forward_by_modifiers(f.p, q3.data<float>(), k3.data<float>(), v3.data<float>(), out, lse))
      kernels::cpu::sdpa_forward(q3, k3, v3, f.p, out, lse);
  }
  Tensor result = out.reshape(out_shape(g, g.Ev));
  if (grad) {
    Shape qs = q.shape(), ks = k.shape(), vs = v.shape(), ms = mask_grad ? mask.shape() : Shape{};
    Tensor os = out, ls = lse;
    record("ScaledDotProductAttentionBackward", {q, k, v, mask_grad ? mask : Tensor()}, result,
           [f, q3, k3, v3, os, ls, qs, ks, vs, ms, g, mask_grad](const Tensor& grad, const std::vector<bool>&) {
             Tensor dq = Tensor::make(q3.shape(), kFloat32), dk = Tensor::make(k3.shape(), kFloat32);
             Tensor dv = Tensor::make(v3.shape(), kFloat32);
             Tensor dscores = mask_grad ? zeros({g.B * g.Hq, g.L, g.S}) : Tensor();
             Tensor dout = grad.reshape({g.B * g.Hq, g.L, g.Ev}).contiguous();
             if (mask_grad || !sdpa_backward_by_modifiers(f.p, dout, q3, k3, v3, os, ls, dq, dk, dv))
               kernels::cpu::sdpa_backward(dout, q3, k3, v3, os, ls, f.p, dq, dk, dv, dscores);
             Tensor dm;
             if (mask_grad) {
               Shape full = g.batch;
               if (g.has_heads) full.push_back(g.Hq);
               full.push_back(g.L);
               full.push_back(g.S);
               dm = sum_to(dscores.reshape(full), ms);
             }
             return std::vector<Tensor>{dq.reshape(qs), dk.reshape(ks), dv.reshape(vs), dm};
           });
  }
  return {result, lse.reshape(out_shape(g, -1))};
}

}  // namespace

std::tuple<Tensor, Tensor> scaled_dot_product_attention_with_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                                                 const SdpaOptions& o) {
  const Geometry g = check(q, k, v, o);
  if (q.dtype() == kFloat32) return fused(q, k, v, o, g);
  RefScores r = reference_scores(q, k, v, o, g);
  return {reference_output(r, o, g), r.lse.detach().reshape(out_shape(g, -1))};
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const SdpaOptions& o) {
  const Geometry g = check(q, k, v, o);
  if (q.dtype() == kFloat32) return std::get<0>(fused(q, k, v, o, g));
  return reference_output(reference_scores(q, k, v, o, g), o, g);
}

std::tuple<Tensor, Tensor, Tensor> scaled_dot_product_attention_backward(const Tensor& grad_out, const Tensor& q,
                                                                         const Tensor& k, const Tensor& v,
                                                                         const Tensor& out, const Tensor& lse,
                                                                         const SdpaOptions& o) {
  constexpr const char* op = "scaled_dot_product_attention_backward";
  const Geometry g = check(q, k, v, o);
  ATTN_CHECK(q.dtype() == kFloat32, op, ": runs the fused float32 kernel; query is ", dtype_name(q.dtype()));
  ATTN_CHECK(o.dropout_p() == 0.0, op, ": dropout is not supported (dropout_p = ", o.dropout_p(), ")");
  const Shape os = out_shape(g, g.Ev), ls = out_shape(g, -1);
  ATTN_CHECK(grad_out.shape() == os && grad_out.dtype() == kFloat32, op, ": grad_out must be float32 ",
             shape_str(os), ", got ", dtype_name(grad_out.dtype()), " ", shape_str(grad_out.shape()));
  ATTN_CHECK(out.shape() == os && out.dtype() == kFloat32, op, ": out must be float32 ", shape_str(os), ", got ",
             dtype_name(out.dtype()), " ", shape_str(out.shape()));
  ATTN_CHECK(lse.shape() == ls && lse.dtype() == kFloat32, op, ": lse must be float32 ", shape_str(ls), ", got ",
             dtype_name(lse.dtype()), " ", shape_str(lse.shape()));
  NoGradGuard ng;
  Fused f = fused_params(g, o);
  Tensor q3 = q.detach().reshape({g.B * g.Hq, g.L, g.E}).contiguous();
  Tensor k3 = k.detach().reshape({g.B * g.Hk, g.S, g.E}).contiguous();
  Tensor v3 = v.detach().reshape({g.B * g.Hk, g.S, g.Ev}).contiguous();
  Tensor dq = Tensor::make(q3.shape(), kFloat32), dk = Tensor::make(k3.shape(), kFloat32);
  Tensor dv = Tensor::make(v3.shape(), kFloat32);
  Tensor go3 = grad_out.detach().reshape({g.B * g.Hq, g.L, g.Ev}).contiguous();
  Tensor o3 = out.detach().reshape({g.B * g.Hq, g.L, g.Ev}).contiguous();
  Tensor l3 = lse.detach().reshape({g.B * g.Hq, g.L}).contiguous();
  if (!sdpa_backward_by_modifiers(f.p, go3, q3, k3, v3, o3, l3, dq, dk, dv))
    kernels::cpu::sdpa_backward(go3, q3, k3, v3, o3, l3, f.p, dq, dk, dv, Tensor());
  return {dq.reshape(q.shape()), dk.reshape(k.shape()), dv.reshape(v.shape())};
}

Tensor scaled_dot_product_attention_weights(const Tensor& q, const Tensor& k, const Tensor& lse,
                                            const SdpaOptions& o, bool average_heads) {
  const Geometry g = check(q, k, k, o);
  check_float(kOp, "lse", lse);
  ATTN_CHECK(lse.shape() == out_shape(g, -1), kOp, ": lse must be ", shape_str(out_shape(g, -1)), ", got ",
             shape_str(lse.shape()));
  NoGradGuard ng;
  const bool avg = average_heads && g.has_heads;
  Shape shape = out_shape(g, g.S);
  if (avg) shape.erase(shape.end() - 3);  // no head dim
  if (q.dtype() != kFloat32) {
    // Reference: exp(scores - lse) from the composed scores.
    RefScores r = reference_scores(q.detach(), k.detach(), Tensor(), o, g);
    Tensor p = r.p.reshape({g.B, g.Hq, g.L, g.S});
    return (avg ? sum(p, {1}) / static_cast<double>(g.Hq) : p).reshape(shape);
  }
  Fused f = fused_params(g, o);
  Tensor probs = Tensor::make({avg ? g.B : g.B * g.Hq, g.L, g.S}, kFloat32);
  kernels::cpu::sdpa_probs(q.detach().reshape({g.B * g.Hq, g.L, g.E}).contiguous(),
                           k.detach().reshape({g.B * g.Hk, g.S, g.E}).contiguous(),
                           lse.detach().to(kFloat32).reshape({g.B * g.Hq, g.L}).contiguous(), f.p, probs, avg);
  return probs.reshape(shape);
}

}  // namespace attn::nn::functional
