// MultiheadAttention: projections by GEMM (one (3E, E) product when query,
// key and value are the same tensor), heads as a view, attention through the
// fused SDPA with the masks translated to its polarity (true = attend), and
// the weights, when asked for, from the saved log-sum-exp tile by tile.
#include "attn/nn/multihead_attention.h"

#include <cmath>

#include "attn/attention.h"
#include "attn/autograd.h"
#include "attn/nn/init.h"
#include "attn/ops.h"

namespace attn::nn {

MultiheadAttention::MultiheadAttention(const MultiheadAttentionOptions& o)
    : Module("MultiheadAttention"),
      options(o),
      out_proj(LinearOptions(o.embed_dim() > 0 ? o.embed_dim() : 0, o.embed_dim() > 0 ? o.embed_dim() : 0)
                   .bias(o.bias())) {
  const int64_t E = o.embed_dim(), H = o.num_heads();
  ATTN_CHECK(E > 0 && H > 0, "MultiheadAttention: embed_dim and num_heads must be positive, got ", E, " and ", H);
  ATTN_CHECK(E % H == 0, "MultiheadAttention: embed_dim (", E, ") must be divisible by num_heads (", H, ")");
  ATTN_CHECK(o.dropout() >= 0.0 && o.dropout() <= 1.0, "MultiheadAttention: dropout must be in [0, 1], got ",
             o.dropout());
  const int64_t kdim = o.kdim().value_or(E), vdim = o.vdim().value_or(E);
  ATTN_CHECK(kdim > 0 && vdim > 0, "MultiheadAttention: kdim and vdim must be positive, got ", kdim, " and ", vdim);
  options.kdim(kdim).vdim(vdim);
  same_dim_ = kdim == E && vdim == E;
  if (same_dim_) {
    in_proj_weight = empty({3 * E, E});
    register_parameter("in_proj_weight", in_proj_weight);
  } else {
    q_proj_weight = empty({E, E});
    k_proj_weight = empty({E, kdim});
    v_proj_weight = empty({E, vdim});
    register_parameter("q_proj_weight", q_proj_weight);
    register_parameter("k_proj_weight", k_proj_weight);
    register_parameter("v_proj_weight", v_proj_weight);
  }
  if (o.bias()) {
    in_proj_bias = empty({3 * E});
    register_parameter("in_proj_bias", in_proj_bias);
  }
  if (o.add_bias_kv()) {
    bias_k = empty({1, 1, E});
    bias_v = empty({1, 1, E});
    register_parameter("bias_k", bias_k);
    register_parameter("bias_v", bias_v);
  }
  register_module("out_proj", out_proj);
  reset_parameters();
}

void MultiheadAttention::reset_parameters() {
  if (same_dim_) {
    init::xavier_uniform_(in_proj_weight);
  } else {
    init::xavier_uniform_(q_proj_weight);
    init::xavier_uniform_(k_proj_weight);
    init::xavier_uniform_(v_proj_weight);
  }
  if (in_proj_bias.defined()) {
    init::zeros_(in_proj_bias);
    init::zeros_(out_proj.bias);
  }
  if (bias_k.defined()) {
    init::xavier_normal_(bias_k);
    init::xavier_normal_(bias_v);
  }
}

Tensor MultiheadAttention::project(const Tensor& x, int64_t which) const {
  const int64_t E = options.embed_dim();
  const Tensor& separate = which == 0 ? q_proj_weight : which == 1 ? k_proj_weight : v_proj_weight;
  return F::linear(x, same_dim_ ? in_proj_weight.narrow(0, which * E, E) : separate,
                   in_proj_bias.defined() ? in_proj_bias.narrow(0, which * E, E) : Tensor());
}

std::string MultiheadAttention::extra_repr() const {
  return "embed_dim=" + std::to_string(options.embed_dim()) + ", num_heads=" + std::to_string(options.num_heads());
}

namespace {

const char* kOp = "MultiheadAttention";

// Pads the last dim of a mask with one entry that masks nothing (false / 0).
Tensor pad_key(const Tensor& m) {
  if (!m.defined()) return m;
  std::vector<int64_t> pads(static_cast<size_t>(2 * m.dim()), 0);
  pads[1] = 1;  // pad (left, right) of the last dim, as F.pad(m, (0, 1))
  if (m.dtype() == kBool) return pad(m.to(kFloat32), pads, 0.0).to(kBool);
  return pad(m, pads, 0.0);
}

// A bool mask (true = masked) as an additive float mask (-inf where masked).
Tensor to_additive(const Tensor& m, DType dt) {
  return m.dtype() == kBool ? where(m, -INFINITY, zeros({}, dt)) : m;
}

// If every row of a bool key padding mask (B, S) is `false` then `true`
// (padding only at the end), the per-batch key counts; otherwise undefined.
Tensor suffix_lengths(const Tensor& kpm) {
  Tensor c = kpm.contiguous();
  const bool* p = c.data<bool>();
  const int64_t B = c.size(0), S = c.size(1);
  std::vector<int64_t> len(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    int64_t n = 0;
    while (n < S && !p[b * S + n]) ++n;
    for (int64_t j = n; j < S; ++j)
      if (!p[b * S + j]) return Tensor();
    len[b] = n;
  }
  return from_vector(len, {B});
}

void check_mask_dtype(const char* arg, const Tensor& m, DType dt) {
  ATTN_CHECK(m.dtype() == kBool || m.dtype() == dt, kOp, ": ", arg, " must be bool (true = masked) or ",
             dtype_name(dt), " (added to the scores), got ", dtype_name(m.dtype()));
}

}  // namespace

std::tuple<Tensor, Tensor> MultiheadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                                       const Tensor& key_padding_mask, bool need_weights,
                                                       const Tensor& attn_mask, bool average_attn_weights,
                                                       bool is_causal_in) const {
  bool is_causal = is_causal_in;
  const int64_t E = options.embed_dim(), H = options.num_heads(), D = E / H;
  const int64_t kdim = *options.kdim(), vdim = *options.vdim();
  for (auto [t, n] : {std::pair{&query, "query"}, std::pair{&key, "key"}, std::pair{&value, "value"}}) {
    ATTN_CHECK(t->defined(), kOp, ": ", n, " is undefined");
    ATTN_CHECK(t->is_floating_point(), kOp, ": ", n, " must be float32 or float64, got ", dtype_name(t->dtype()));
  }
  const DType dt = out_proj.weight.dtype();
  for (auto [t, n] : {std::pair{&query, "query"}, std::pair{&key, "key"}, std::pair{&value, "value"}})
    ATTN_CHECK(t->dtype() == dt, kOp, ": ", n, " is ", dtype_name(t->dtype()), " but the weights are ",
               dtype_name(dt), "; convert one with to()");
  ATTN_CHECK(query.dim() == 2 || query.dim() == 3, kOp, ": query must be 3-d (",
             options.batch_first() ? "B, L, E" : "L, B, E", ") or 2-d (L, E) unbatched, got ",
             shape_str(query.shape()));
  const bool batched = query.dim() == 3;
  ATTN_CHECK(key.dim() == query.dim() && value.dim() == query.dim(), kOp, ": query ", shape_str(query.shape()),
             ", key ", shape_str(key.shape()), " and value ", shape_str(value.shape()),
             " must all be batched (3-d) or all unbatched (2-d)");
  // Batch-first working layout: q (B, L, E), k (B, S, kdim), v (B, S, vdim).
  auto bf = [&](const Tensor& t) {
    return !batched ? t.unsqueeze(0) : options.batch_first() ? t : t.transpose(0, 1);
  };
  Tensor q_in = bf(query), k_in = bf(key), v_in = bf(value);
  const int64_t B = q_in.size(0), L = q_in.size(1), S0 = k_in.size(1);
  ATTN_CHECK(q_in.size(2) == E, kOp, ": query ", shape_str(query.shape()), " must have embed_dim ", E,
             " in its last dim");
  ATTN_CHECK(k_in.size(2) == kdim && v_in.size(2) == vdim, kOp, ": key ", shape_str(key.shape()), " and value ",
             shape_str(value.shape()), " must have ", kdim, " and ", vdim, " features (kdim, vdim)");
  ATTN_CHECK(k_in.size(0) == B && v_in.size(0) == B, kOp, ": query, key and value must have the same batch size, ",
             "got ", shape_str(query.shape()), ", ", shape_str(key.shape()), " and ", shape_str(value.shape()));
  ATTN_CHECK(v_in.size(1) == S0, kOp, ": key ", shape_str(key.shape()), " and value ", shape_str(value.shape()),
             " must have the same sequence length");

  // Masks, checked against PyTorch's shapes.
  Tensor kpm = key_padding_mask, am = attn_mask;
  if (kpm.defined()) {
    check_mask_dtype("key_padding_mask", kpm, dt);
    Shape want = batched ? Shape{B, S0} : Shape{S0};
    ATTN_CHECK(kpm.shape() == want, kOp, ": key_padding_mask must be ", shape_str(want), ", got ",
               shape_str(kpm.shape()));
    if (!batched) kpm = kpm.unsqueeze(0);
  }
  if (am.defined()) {
    check_mask_dtype("attn_mask", am, dt);
    if (am.dim() == 2) {
      ATTN_CHECK(am.shape() == (Shape{L, S0}), kOp, ": the 2-d attn_mask is ", shape_str(am.shape()),
                 " but should be ", shape_str({L, S0}));
      am = am.reshape({1, 1, L, S0});
    } else if (am.dim() == 3) {
      ATTN_CHECK(am.shape() == (Shape{B * H, L, S0}), kOp, ": the 3-d attn_mask is ", shape_str(am.shape()),
                 " but should be ", shape_str({B * H, L, S0}), " (batch * num_heads, L, S)");
      am = am.reshape({B, H, L, S0});
    } else {
      throw Error(detail::str(kOp, ": attn_mask must be 2-d (L, S) or 3-d (B * num_heads, L, S), got ",
                              shape_str(am.shape())));
    }
  }

  // With an extra key (bias_kv, zero attention) the causal mask is made
  // explicit over the given keys first, so the extra key stays visible to every
  // query (as an attn_mask would, padded with "not masked").
  if (is_causal && (options.add_bias_kv() || options.add_zero_attn())) {
    Tensor causal = triu(ones({L, S0}, kBool), 1).reshape({1, 1, L, S0});  // true = masked
    if (!am.defined())
      am = causal;
    else if (am.dtype() == kBool)
      am = logical_or(am, causal);
    else
      am = masked_fill(am, causal, -INFINITY);
    is_causal = false;
  }

  // Input projections.
  Tensor q, k, v;
  if (same_dim_ && query.is_same(key) && key.is_same(value)) {
    auto qkv = chunk(F::linear(q_in, in_proj_weight, in_proj_bias), 3, -1);
    q = qkv[0], k = qkv[1], v = qkv[2];
  } else if (same_dim_ && key.is_same(value)) {
    q = project(q_in, 0);
    auto kv = chunk(F::linear(k_in, in_proj_weight.narrow(0, E, 2 * E),
                              in_proj_bias.defined() ? in_proj_bias.narrow(0, E, 2 * E) : Tensor()),
                    2, -1);
    k = kv[0], v = kv[1];
  } else {
    q = project(q_in, 0), k = project(k_in, 1), v = project(v_in, 2);
  }
  if (bias_k.defined()) {
    k = cat({k, bias_k.expand({B, 1, E})}, 1);
    v = cat({v, bias_v.expand({B, 1, E})}, 1);
    am = pad_key(am);
    kpm = pad_key(kpm);
  }
  // Heads: (B, S, E) -> (B, H, S, D).
  auto heads = [&](const Tensor& t) { return t.reshape({B, t.size(1), H, D}).transpose(1, 2); };
  q = heads(q), k = heads(k), v = heads(v);
  if (options.add_zero_attn()) {
    k = cat({k, zeros({B, H, 1, D}, dt)}, 2);
    v = cat({v, zeros({B, H, 1, D}, dt)}, 2);
    am = pad_key(am);
    kpm = pad_key(kpm);
  }
  const int64_t S = k.size(2);  // with the extra keys

  // Masks in SDPA's terms: bool true = attend, float added. A bool padding
  // mask that only pads the end becomes key_lengths (padded tiles are skipped).
  F::SdpaOptions so;
  so.is_causal(is_causal).dropout_p(is_training() ? options.dropout() : 0.0).generator(options.generator());
  Tensor kmask;  // (B, 1, 1, S)
  if (kpm.defined()) {
    Tensor lens = kpm.dtype() == kBool ? suffix_lengths(kpm) : Tensor();
    if (lens.defined())
      so.key_lengths(lens);
    else
      kmask = kpm.reshape({B, 1, 1, S});
  }
  if (am.defined() && kmask.defined()) {
    if (am.dtype() == kBool && kmask.dtype() == kBool)
      so.attn_mask(logical_not(logical_or(am, kmask)));
    else
      so.attn_mask(to_additive(am, dt) + to_additive(kmask, dt));
  } else if (am.defined() || kmask.defined()) {
    Tensor m = am.defined() ? am : kmask;
    so.attn_mask(m.dtype() == kBool ? logical_not(m) : m);
  }

  Tensor attn, weights;
  if (need_weights) {
    auto [o, lse] = F::scaled_dot_product_attention_with_lse(q, k, v, so);
    attn = o;
    // (B, L, S) averaged over heads, or (B, H, L, S)
    weights = F::scaled_dot_product_attention_weights(q.detach(), k.detach(), lse, so, average_attn_weights);
    if (!batched) weights = weights.squeeze(0);
  } else {
    attn = F::scaled_dot_product_attention(q, k, v, so);
  }
  // (B, H, L, D) -> (B, L, E) -> out_proj.
  Tensor out = out_proj.forward(attn.transpose(1, 2).reshape({B, L, E}));
  if (!batched)
    out = out.squeeze(0);
  else if (!options.batch_first())
    out = out.transpose(0, 1);
  return {out, weights};
}

// ---- Incremental decoding ------------------------------------------------------------
void KVCache::append(const Tensor& k, const Tensor& v) {
  ATTN_CHECK(k.defined() && v.defined() && k.dim() == 4 && v.dim() == 4 && k.size(2) == v.size(2),
             "KVCache.append: k and v must be (B, H, n, D) with the same n");
  const int64_t n = k.size(2);
  if (k_.defined()) {
    ATTN_CHECK(k.size(0) == k_.size(0) && k.size(1) == k_.size(1) && k.size(3) == k_.size(3) &&
                   v.size(3) == v_.size(3) && k.dtype() == k_.dtype(),
               "KVCache.append: the new keys ", shape_str(k.shape()), " do not match the cache's ",
               shape_str(k_.shape()), " (", dtype_name(k_.dtype()), "); clear() it first");
  }
  NoGradGuard ng;
  if (!k_.defined() || length_ + n > k_.size(2)) {
    int64_t cap = k_.defined() ? k_.size(2) : 16;
    while (cap < length_ + n) cap *= 2;
    Tensor nk = zeros({k.size(0), k.size(1), cap, k.size(3)}, k.dtype());
    Tensor nv = zeros({v.size(0), v.size(1), cap, v.size(3)}, v.dtype());
    if (length_ > 0) {
      Tensor dk = nk.narrow(2, 0, length_), dv = nv.narrow(2, 0, length_);
      dk.copy_(keys());
      dv.copy_(values());
    }
    k_ = nk, v_ = nv;
  }
  Tensor dk = k_.narrow(2, length_, n), dv = v_.narrow(2, length_, n);
  dk.copy_(k.detach());
  dv.copy_(v.detach());
  length_ += n;
}

Tensor KVCache::keys() const { return length_ ? k_.narrow(2, 0, length_) : Tensor(); }
Tensor KVCache::values() const { return length_ ? v_.narrow(2, 0, length_) : Tensor(); }

void KVCache::truncate(int64_t length) {
  ATTN_CHECK(length >= 0 && length <= length_, "KVCache.truncate: length must be in [0, ", length_, "], got ", length);
  length_ = length;
}

void KVCache::clear() {
  k_ = Tensor(), v_ = Tensor();
  length_ = 0;
}

std::tuple<Tensor, Tensor> MultiheadAttention::forward_cached(const Tensor& query, const Tensor& key,
                                                              const Tensor& value, KVCache& cache,
                                                              const Tensor& key_padding_mask, bool is_causal,
                                                              bool need_weights) const {
  const int64_t E = options.embed_dim(), H = options.num_heads(), D = E / H;
  ATTN_CHECK(!options.add_bias_kv() && !options.add_zero_attn(), kOp,
             ".forward_cached: add_bias_kv and add_zero_attn are not supported with a cache");
  ATTN_CHECK(query.defined() && (query.dim() == 2 || query.dim() == 3) && query.size(-1) == E, kOp,
             ".forward_cached: query must be (B, L, ", E, "), (L, B, ", E, ") or (L, ", E, "), got ",
             query.defined() ? shape_str(query.shape()) : std::string("undefined"));
  ATTN_CHECK(key.defined() == value.defined(), kOp, ".forward_cached: give both key and value or neither");
  const bool batched = query.dim() == 3;
  auto bf = [&](const Tensor& t) {
    return !batched ? t.unsqueeze(0) : options.batch_first() ? t : t.transpose(0, 1);
  };
  Tensor q_in = bf(query);
  const int64_t B = q_in.size(0), L = q_in.size(1);
  auto heads = [&](const Tensor& t) { return t.reshape({B, t.size(1), H, D}).transpose(1, 2); };
  Tensor q = heads(project(q_in, 0));
  // Every check before the cache changes: a refused call leaves it as it was.
  const int64_t S = cache.length() + (key.defined() ? bf(key).size(1) : 0);
  Tensor kpm;
  if (key_padding_mask.defined()) {
    ATTN_CHECK(key_padding_mask.dtype() == kBool &&
                   key_padding_mask.shape() == (batched ? Shape{B, S} : Shape{S}),
               kOp, ".forward_cached: key_padding_mask must be bool ", shape_str(batched ? Shape{B, S} : Shape{S}),
               " (true = masked), got ", dtype_name(key_padding_mask.dtype()), " ",
               shape_str(key_padding_mask.shape()));
    kpm = key_padding_mask.reshape({B, S});
  }
  if (key.defined()) {
    ATTN_CHECK(key.dim() == query.dim() && value.dim() == query.dim(), kOp,
               ".forward_cached: query, key and value must all be batched or all unbatched");
    Tensor k_in = bf(key), v_in = bf(value);
    ATTN_CHECK(k_in.size(0) == B && v_in.size(0) == B && k_in.size(1) == v_in.size(1) &&
                   k_in.size(2) == *options.kdim() && v_in.size(2) == *options.vdim(),
               kOp, ".forward_cached: key ", shape_str(key.shape()), " and value ", shape_str(value.shape()),
               " do not match query ", shape_str(query.shape()));
    cache.append(heads(project(k_in, 1)), heads(project(v_in, 2)));
  }
  ATTN_CHECK(cache.length() > 0, kOp, ".forward_cached: the cache is empty and no key/value was given");
  ATTN_CHECK(cache.keys().size(0) == B, kOp, ".forward_cached: the cache holds batch ", cache.keys().size(0),
             " but the query has ", B);
  F::SdpaOptions so;
  so.is_causal(is_causal).causal_align(F::CausalAlign::BottomRight);
  if (key_padding_mask.defined()) {
    Tensor lens = suffix_lengths(kpm);
    if (lens.defined())
      so.key_lengths(lens);
    else
      so.attn_mask(logical_not(kpm).reshape({B, 1, 1, cache.length()}));
  }
  Tensor attn, weights;
  if (need_weights) {
    auto [o, lse] = F::scaled_dot_product_attention_with_lse(q, cache.keys(), cache.values(), so);
    attn = o;
    weights = F::scaled_dot_product_attention_weights(q.detach(), cache.keys(), lse, so, true);
    if (!batched) weights = weights.squeeze(0);
  } else {
    attn = F::scaled_dot_product_attention(q, cache.keys(), cache.values(), so);
  }
  Tensor out = out_proj.forward(attn.transpose(1, 2).reshape({B, L, E}));
  if (!batched)
    out = out.squeeze(0);
  else if (!options.batch_first())
    out = out.transpose(0, 1);
  return {out, weights};
}

}  // namespace attn::nn
