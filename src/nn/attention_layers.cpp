// Additive and Luong attention, attention pooling, cosine attention, RoPE and
// the seeds' hand-written attention modules. Scores are composed from ops and
// normalised by F::masked_softmax (no NaN for fully masked rows); the
// dot-product forms run through the fused scaled-dot-product attention.
#include "attn/nn/attention_layers.h"

#include "attn/flex.h"

#include <algorithm>
#include <cmath>

#include "attn/nn/init.h"
#include "attn/ops.h"

namespace attn::nn {

namespace {

struct Steps {
  Tensor q;        // (B, Lq, Dq)
  bool one_step;   // query was (B, Dq)
};

Steps check_query(const char* op, const Tensor& query, int64_t dq) {
  ATTN_CHECK(query.defined(), op, ": query is undefined");
  ATTN_CHECK(query.is_floating_point(), op, ": query must be float32 or float64, got ", dtype_name(query.dtype()));
  ATTN_CHECK((query.dim() == 2 || query.dim() == 3) && query.size(-1) == dq, op, ": query must be (B, ", dq,
             ") or (B, Lq, ", dq, "), got ", shape_str(query.shape()));
  return {query.dim() == 2 ? query.unsqueeze(1) : query, query.dim() == 2};
}

void check_keys(const char* op, const char* arg, const Tensor& t, int64_t B, int64_t d, int64_t S = -1) {
  ATTN_CHECK(t.defined(), op, ": ", arg, " is undefined");
  ATTN_CHECK(t.dim() == 3 && t.size(0) == B && (d < 0 || t.size(2) == d) && (S < 0 || t.size(1) == S), op, ": ",
             arg, " must be (", B, ", ", S < 0 ? std::string("S") : std::to_string(S), ", ",
             d < 0 ? std::string("D") : std::to_string(d), "), got ", shape_str(t.shape()));
}

// weights = masked softmax over the keys; context = weights @ values.
std::tuple<Tensor, Tensor> attend(const char* op, const Tensor& scores, const Tensor& values, const Tensor& kpm,
                                  bool one_step) {
  const int64_t B = scores.size(0), S = scores.size(2);
  Tensor mask;
  if (kpm.defined()) {
    ATTN_CHECK(kpm.dtype() == kBool && kpm.shape() == (Shape{B, S}), op, ": key_padding_mask must be bool (", B,
               ", ", S, ") (true = padding), got ", dtype_name(kpm.dtype()), " ", shape_str(kpm.shape()));
    mask = kpm.unsqueeze(1);
  }
  Tensor w = F::masked_softmax(scores, mask, -1);
  Tensor ctx = matmul(w, values);
  if (one_step) return {ctx.squeeze(1), w.squeeze(1)};
  return {ctx, w};
}

}  // namespace

// ---- Additive (Bahdanau) ------------------------------------------------------------
AdditiveAttention::AdditiveAttention(const AdditiveAttentionOptions& o)
    : Module("AdditiveAttention"),
      options(o),
      query_proj(LinearOptions(o.query_dim(), o.hidden_dim()).bias(false)),
      key_proj(LinearOptions(o.key_dim(), o.hidden_dim()).bias(o.bias())),
      v(LinearOptions(o.hidden_dim(), 1).bias(false)) {
  ATTN_CHECK(o.query_dim() > 0 && o.key_dim() > 0 && o.hidden_dim() > 0,
             "AdditiveAttention: query_dim, key_dim and hidden_dim must be positive");
  register_module("query_proj", query_proj);
  register_module("key_proj", key_proj);
  register_module("v", v);
}

Tensor AdditiveAttention::project_keys(const Tensor& keys) const {
  ATTN_CHECK(keys.defined() && keys.dim() == 3 && keys.size(2) == options.key_dim(),
             "AdditiveAttention: keys must be (B, S, ", options.key_dim(), "), got ",
             keys.defined() ? shape_str(keys.shape()) : std::string("undefined"));
  return key_proj.forward(keys);
}

std::tuple<Tensor, Tensor> AdditiveAttention::forward_projected(const Tensor& query, const Tensor& pk,
                                                                const Tensor& values, const Tensor& kpm) const {
  Steps s = check_query("AdditiveAttention", query, options.query_dim());
  const int64_t B = s.q.size(0);
  check_keys("AdditiveAttention", "projected_keys", pk, B, options.hidden_dim());
  check_keys("AdditiveAttention", "values", values, B, -1, pk.size(1));
  // (B, Lq, 1, H) + (B, 1, S, H) -> tanh -> v -> (B, Lq, S)
  Tensor e = tanh(query_proj.forward(s.q).unsqueeze(2) + pk.unsqueeze(1));
  Tensor scores = v.forward(e).squeeze(-1);
  return attend("AdditiveAttention", scores, values, kpm, s.one_step);
}

std::tuple<Tensor, Tensor> AdditiveAttention::forward(const Tensor& query, const Tensor& keys, const Tensor& values,
                                                      const Tensor& kpm) const {
  return forward_projected(query, project_keys(keys), values.defined() ? values : keys, kpm);
}

std::string AdditiveAttention::extra_repr() const {
  return "query_dim=" + std::to_string(options.query_dim()) + ", key_dim=" + std::to_string(options.key_dim()) +
         ", hidden_dim=" + std::to_string(options.hidden_dim());
}

// ---- Luong ----------------------------------------------------------------------------
LuongAttention::LuongAttention(const LuongAttentionOptions& o) : Module("LuongAttention"), options(o) {
  ATTN_CHECK(o.query_dim() > 0 && o.key_dim() > 0, "LuongAttention: query_dim and key_dim must be positive");
  if (o.score() == LuongScore::Dot)
    ATTN_CHECK(o.query_dim() == o.key_dim(), "LuongAttention: the dot score needs query_dim == key_dim, got ",
               o.query_dim(), " and ", o.key_dim());
  if (o.score() == LuongScore::General) {
    linear = std::make_unique<Linear>(LinearOptions(o.key_dim(), o.query_dim()).bias(false));
    register_module("linear", *linear);
  } else if (o.score() == LuongScore::Concat) {
    const int64_t H = o.hidden_dim() > 0 ? o.hidden_dim() : o.query_dim();
    options.hidden_dim(H);
    linear = std::make_unique<Linear>(LinearOptions(o.query_dim() + o.key_dim(), H).bias(false));
    v = std::make_unique<Linear>(LinearOptions(H, 1).bias(false));
    register_module("linear", *linear);
    register_module("v", *v);
  }
}

std::tuple<Tensor, Tensor> LuongAttention::forward(const Tensor& query, const Tensor& keys, const Tensor& values_in,
                                                   const Tensor& kpm) const {
  Steps s = check_query("LuongAttention", query, options.query_dim());
  const int64_t B = s.q.size(0), Dq = options.query_dim();
  check_keys("LuongAttention", "keys", keys, B, options.key_dim());
  Tensor values = values_in.defined() ? values_in : keys;
  check_keys("LuongAttention", "values", values, B, -1, keys.size(1));
  Tensor scores;
  switch (options.score()) {
    case LuongScore::Dot: scores = matmul(s.q, keys.transpose(1, 2)); break;
    case LuongScore::General: scores = matmul(s.q, linear->forward(keys).transpose(1, 2)); break;
    case LuongScore::Concat: {
      // W [q; k] = W_q q + W_k k, the two halves of linear.weight.
      Tensor wq = linear->weight.narrow(1, 0, Dq), wk = linear->weight.narrow(1, Dq, options.key_dim());
      Tensor e = tanh(F::linear(s.q, wq).unsqueeze(2) + F::linear(keys, wk).unsqueeze(1));
      scores = v->forward(e).squeeze(-1);
      break;
    }
  }
  if (options.scale() && options.score() != LuongScore::Concat)
    scores = scores / std::sqrt(static_cast<double>(Dq));
  return attend("LuongAttention", scores, values, kpm, s.one_step);
}

std::string LuongAttention::extra_repr() const {
  const char* names[] = {"dot", "general", "concat"};
  return std::string("score=") + names[static_cast<int>(options.score())] +
         ", query_dim=" + std::to_string(options.query_dim()) + ", key_dim=" + std::to_string(options.key_dim());
}

// ---- Attention pooling ---------------------------------------------------------------------
AttentionPooling::AttentionPooling(int64_t input_dim, bool bf)
    : Module("AttentionPooling"), batch_first(bf), attention(LinearOptions(input_dim, 1)) {
  register_module("attention", attention);
}

std::tuple<Tensor, Tensor> AttentionPooling::forward(const Tensor& x_in, const Tensor& kpm) const {
  ATTN_CHECK(x_in.defined() && x_in.dim() == 3, "AttentionPooling: x must be ", batch_first ? "(B, T, D)" : "(T, B, D)",
             ", got ", x_in.defined() ? shape_str(x_in.shape()) : std::string("undefined"));
  Tensor x = batch_first ? x_in : x_in.transpose(0, 1);  // (B, T, D)
  Tensor scores = attention.forward(x).squeeze(-1);      // (B, T)
  if (kpm.defined())
    ATTN_CHECK(kpm.dtype() == kBool && kpm.shape() == (Shape{x.size(0), x.size(1)}),
               "AttentionPooling: key_padding_mask must be bool (", x.size(0), ", ", x.size(1), "), got ",
               dtype_name(kpm.dtype()), " ", shape_str(kpm.shape()));
  Tensor w = F::masked_softmax(scores, kpm, 1);
  return {sum(x * w.unsqueeze(-1), {1}), w};
}

// ---- Cosine attention ------------------------------------------------------------------------
CosineAttention::CosineAttention(double initial_logit_scale) : Module("CosineAttention") {
  logit_scale = full({}, initial_logit_scale);
  register_parameter("logit_scale", logit_scale);
}

Tensor CosineAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask) const {
  ATTN_CHECK(q.defined() && k.defined() && v.defined(), "CosineAttention: q, k and v must be defined");
  Tensor t = exp(logit_scale.to(q.dtype()));
  return F::scaled_dot_product_attention(F::normalize(q) * t, F::normalize(k), v,
                                         F::SdpaOptions().attn_mask(attn_mask).scale(1.0));
}

// ---- RoPE ---------------------------------------------------------------------------------------
RotaryEmbedding::RotaryEmbedding(const RotaryEmbeddingOptions& o) : Module("RotaryEmbedding"), options(o) {
  ATTN_CHECK(o.dim() > 0 && o.dim() % 2 == 0, "RotaryEmbedding: dim must be positive and even, got ", o.dim());
}

Tensor RotaryEmbedding::forward(const Tensor& x, int64_t offset) const {
  ATTN_CHECK(x.defined() && x.dim() >= 2 && x.size(-1) == options.dim(), "RotaryEmbedding: x must be (..., L, ",
             options.dim(), "), got ", x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  return F::rotary_embedding(x, F::RotaryOptions().base(options.base()).layout(options.layout()).offset(offset));
}

// ---- Relative positions --------------------------------------------------------------------------
RelativeMultiheadAttention::RelativeMultiheadAttention(const RelativeMultiheadAttentionOptions& o)
    : Module("RelativeMultiheadAttention"),
      options(o),
      out_proj(LinearOptions(o.embed_dim() > 0 ? o.embed_dim() : 1, o.embed_dim() > 0 ? o.embed_dim() : 1).bias(o.bias())) {
  const int64_t E = o.embed_dim(), H = o.num_heads();
  ATTN_CHECK(E > 0 && H > 0 && E % H == 0, "RelativeMultiheadAttention: embed_dim (", E,
             ") must be positive and divisible by num_heads (", H, ")");
  ATTN_CHECK(o.max_relative_position() >= 0, "RelativeMultiheadAttention: max_relative_position must be >= 0");
  const int64_t R = 2 * o.max_relative_position() + 1, D = E / H;
  in_proj_weight = empty({3 * E, E});
  register_parameter("in_proj_weight", in_proj_weight);
  if (o.bias()) {
    in_proj_bias = zeros({3 * E});
    register_parameter("in_proj_bias", in_proj_bias);
  }
  relative_key = empty({R, D});
  register_parameter("relative_key", relative_key);
  if (o.relative_values()) {
    relative_value = empty({R, D});
    register_parameter("relative_value", relative_value);
  }
  register_module("out_proj", out_proj);
  init::xavier_uniform_(in_proj_weight);
  init::xavier_uniform_(relative_key);
  if (relative_value.defined()) init::xavier_uniform_(relative_value);
  if (out_proj.bias.defined()) init::zeros_(out_proj.bias);
}

std::tuple<Tensor, Tensor> RelativeMultiheadAttention::forward(const Tensor& query, const Tensor& key,
                                                               const Tensor& value, const Tensor& kpm,
                                                               bool need_weights, const Tensor& attn_mask) const {
  const char* op = "RelativeMultiheadAttention";
  const int64_t E = options.embed_dim(), H = options.num_heads(), D = E / H, K = options.max_relative_position();
  for (auto* t : {&query, &key, &value})
    ATTN_CHECK(t->defined() && t->dim() == 3 && t->size(2) == E, op, ": query, key and value must be 3-d with ", E,
               " features, got ", t->defined() ? shape_str(t->shape()) : std::string("undefined"));
  auto bf = [&](const Tensor& t) { return options.batch_first() ? t : t.transpose(0, 1); };
  Tensor q_in = bf(query), k_in = bf(key), v_in = bf(value);
  const int64_t B = q_in.size(0), L = q_in.size(1), S = k_in.size(1);
  ATTN_CHECK(k_in.size(0) == B && v_in.size(0) == B && v_in.size(1) == S, op, ": query ", shape_str(query.shape()),
             ", key ", shape_str(key.shape()), " and value ", shape_str(value.shape()), " do not agree");
  auto part = [&](int64_t i) { return in_proj_bias.defined() ? in_proj_bias.narrow(0, i * E, E) : Tensor(); };
  auto heads = [&](const Tensor& t) { return t.reshape({B, t.size(1), H, D}).transpose(1, 2); };  // (B, H, n, D)
  Tensor q = heads(F::linear(q_in, in_proj_weight.narrow(0, 0, E), part(0)));
  Tensor k = heads(F::linear(k_in, in_proj_weight.narrow(0, E, E), part(1)));
  Tensor v = heads(F::linear(v_in, in_proj_weight.narrow(0, 2 * E, E), part(2)));
  // q . a^K for each of the 2K + 1 clipped distances, one (B H L, D) x (D, 2K + 1)
  // product, then spread over the keys by distance.
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  Tensor qs = (q * scale).contiguous();
  Tensor rel = matmul(qs.reshape({B * H * L, D}), relative_key.t()).reshape({B, H, L, 2 * K + 1});
  if (!kpm.defined() && !attn_mask.defined() && !need_weights && (options.dropout() == 0 || !is_training())) {
    // The fused path: the key term read from `rel` by a score modifier (16
    // keys per call), the value term as per-distance sums of the
    // probabilities inside the tiles; no (L, S) matrix.
    F::flex::Captured key_term(rel);
    auto add_key_term = F::flex::vectorized([key_term, K](auto s, auto b, auto h, auto i, auto j) {
      using std::max;
      using std::min;
      return s + key_term(b, h, i, min(max(j - i, -K), K) + K);
    });
    Tensor out = F::flex_attention(q, k, v, add_key_term, F::flex::full,
                                   F::FlexOptions().relative_values(relative_value));
    out = out_proj.forward(out.transpose(1, 2).reshape({B, L, E}));
    if (!options.batch_first()) out = out.transpose(0, 1);
    return {out, Tensor()};
  }
  Tensor scores = matmul(qs, k.transpose(-2, -1)) + F::relative_position_expand(rel, S, K);
  // Masks: float ones added, bool ones (true = masked) removed.
  Tensor masked;
  auto add_mask = [&](const Tensor& m, const Shape& shape, const char* name) {
    ATTN_CHECK(m.dtype() == kBool || m.dtype() == scores.dtype(), op, ": ", name, " must be bool (true = masked) or ",
               dtype_name(scores.dtype()), ", got ", dtype_name(m.dtype()));
    Tensor r = m.reshape(shape);
    if (m.dtype() == kBool)
      masked = masked.defined() ? logical_or(masked, r) : r;
    else
      scores = scores + r;
  };
  if (kpm.defined()) {
    ATTN_CHECK(kpm.shape() == (Shape{B, S}), op, ": key_padding_mask must be (", B, ", ", S, "), got ",
               shape_str(kpm.shape()));
    add_mask(kpm, {B, 1, 1, S}, "key_padding_mask");
  }
  if (attn_mask.defined()) {
    ATTN_CHECK(attn_mask.shape() == (Shape{L, S}), op, ": attn_mask must be (", L, ", ", S, "), got ",
               shape_str(attn_mask.shape()));
    add_mask(attn_mask, {1, 1, L, S}, "attn_mask");
  }
  Tensor p = F::masked_softmax(scores, masked, -1);
  Tensor pd = F::dropout(p, options.dropout(), is_training(), options.generator());
  Tensor out = matmul(pd, v);
  if (relative_value.defined()) {
    // sum_j alpha_ij a^V_r(i,j): alpha summed per distance, then (2K + 1, D).
    Tensor per_distance = F::relative_position_sum(pd, K).reshape({B * H * L, 2 * K + 1});
    out = out + matmul(per_distance, relative_value).reshape({B, H, L, D});
  }
  out = out_proj.forward(out.transpose(1, 2).reshape({B, L, E}));
  if (!options.batch_first()) out = out.transpose(0, 1);
  return {out, need_weights ? mean(p, {1}) : Tensor()};
}

Tensor t5_relative_position_bucket(int64_t L, int64_t S, bool bidirectional, int64_t num_buckets,
                                   int64_t max_distance, int64_t query_offset) {
  ATTN_CHECK(L >= 0 && S >= 0, "t5_relative_position_bucket: sizes must be non-negative");
  ATTN_CHECK(num_buckets >= (bidirectional ? 4 : 2) && max_distance > 0,
             "t5_relative_position_bucket: num_buckets must be at least ", bidirectional ? 4 : 2,
             " and max_distance positive, got ", num_buckets, " and ", max_distance);
  std::vector<int64_t> out(static_cast<size_t>(L * S));
  const int64_t nb = bidirectional ? num_buckets / 2 : num_buckets, max_exact = nb / 2;
  ATTN_CHECK(max_distance > max_exact, "t5_relative_position_bucket: max_distance (", max_distance,
             ") must exceed the exact buckets (", max_exact, ")");
  // float32 arithmetic, as T5's reference computes the logarithmic buckets.
  const float denom = static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < S; ++j) {
      int64_t rp = j - (i + query_offset), bucket = 0;
      if (bidirectional) {
        bucket += rp > 0 ? nb : 0;
        rp = std::abs(rp);
      } else {
        rp = -std::min<int64_t>(rp, 0);
      }
      if (rp < max_exact) {
        bucket += rp;
      } else {
        const float f = std::log(static_cast<float>(rp) / static_cast<float>(max_exact)) / denom *
                        static_cast<float>(nb - max_exact);
        bucket += std::min<int64_t>(max_exact + static_cast<int64_t>(f), nb - 1);
      }
      out[i * S + j] = bucket;
    }
  return from_vector(out, {L, S});
}

T5RelativePositionBias::T5RelativePositionBias(const T5RelativePositionBiasOptions& o)
    : Module("T5RelativePositionBias"),
      options(o),
      relative_attention_bias(EmbeddingOptions(o.num_buckets() > 0 ? o.num_buckets() : 1, o.num_heads())) {
  ATTN_CHECK(o.num_heads() > 0, "T5RelativePositionBias: num_heads must be positive");
  register_module("relative_attention_bias", relative_attention_bias);
}

Tensor T5RelativePositionBias::forward(int64_t L, int64_t S, int64_t query_offset) const {
  Tensor buckets = t5_relative_position_bucket(L, S, options.bidirectional(), options.num_buckets(),
                                               options.max_distance(), query_offset);
  return relative_attention_bias.forward(buckets).permute({2, 0, 1}).unsqueeze(0);  // (1, H, L, S)
}

// ---- LSA and SPT -------------------------------------------------------------------------------
LocalitySelfAttention::LocalitySelfAttention(const LocalitySelfAttentionOptions& o)
    : Module("LocalitySelfAttention"),
      options(o),
      norm(LayerNormOptions({o.dim()})),
      to_qkv(LinearOptions(o.dim(), 3 * o.heads() * o.dim_head()).bias(false)) {
  ATTN_CHECK(o.dim() > 0 && o.heads() > 0 && o.dim_head() > 0,
             "LocalitySelfAttention: dim, heads and dim_head must be positive");
  temperature = full({}, std::log(1.0 / std::sqrt(static_cast<double>(o.dim_head()))));
  register_parameter("temperature", temperature);
  register_module("norm", norm);
  register_module("to_qkv", to_qkv);
  to_out.emplace_back<Linear>(LinearOptions(o.heads() * o.dim_head(), o.dim()));
  to_out.emplace_back<Dropout>(DropoutOptions(o.dropout()).generator(o.generator()));
  register_module("to_out", to_out);
}

Tensor LocalitySelfAttention::forward(const Tensor& x_in) const {
  ATTN_CHECK(x_in.defined() && x_in.dim() == 3 && x_in.size(2) == options.dim(),
             "LocalitySelfAttention: x must be (B, N, ", options.dim(), "), got ",
             x_in.defined() ? shape_str(x_in.shape()) : std::string("undefined"));
  const int64_t B = x_in.size(0), N = x_in.size(1), H = options.heads(), d = options.dim_head();
  auto qkv = chunk(to_qkv.forward(norm.forward(x_in)), 3, -1);
  auto heads = [&](const Tensor& t) { return t.reshape({B, N, H, d}).transpose(1, 2); };
  Tensor q = heads(qkv[0]) * exp(temperature.to(x_in.dtype())), k = heads(qkv[1]), v = heads(qkv[2]);
  Tensor off_diagonal = logical_not(eye(N, N, kBool));  // true = attend: every key but the token itself
  Tensor out = F::scaled_dot_product_attention(
      q, k, v,
      F::SdpaOptions().attn_mask(off_diagonal).scale(1.0).dropout_p(is_training() ? options.dropout() : 0.0)
          .generator(options.generator()));
  return to_out.forward(out.transpose(1, 2).reshape({B, N, H * d}));
}

namespace {
int64_t spt_patch_dim(const ShiftedPatchTokenizationOptions& o) {
  return o.patch_size() * o.patch_size() * 5 * o.in_channels();
}
}  // namespace

ShiftedPatchTokenization::ShiftedPatchTokenization(const ShiftedPatchTokenizationOptions& o)
    : Module("ShiftedPatchTokenization"),
      options(o),
      norm(LayerNormOptions({spt_patch_dim(o)})),
      proj(LinearOptions(spt_patch_dim(o), o.dim())) {
  ATTN_CHECK(o.in_channels() > 0 && o.patch_size() > 0 && o.dim() > 0,
             "ShiftedPatchTokenization: in_channels, patch_size and dim must be positive");
  register_module("norm", norm);
  register_module("proj", proj);
}

Tensor ShiftedPatchTokenization::forward(const Tensor& x) const {
  const int64_t C = options.in_channels(), p = options.patch_size();
  ATTN_CHECK(x.defined() && x.dim() == 4 && x.size(1) == C && x.size(2) % p == 0 && x.size(3) % p == 0,
             "ShiftedPatchTokenization: x must be (B, ", C, ", H, W) with H and W multiples of ", p, ", got ",
             x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  const int64_t B = x.size(0), Hh = x.size(2) / p, Ww = x.size(3) / p, s = p / 2;
  // (left, right, top, bottom) pads: the four diagonal moves by half a patch, zero filled.
  std::vector<Tensor> parts{x};
  for (auto [dx, dy] : {std::pair{1, 1}, std::pair{-1, 1}, std::pair{1, -1}, std::pair{-1, -1}})
    parts.push_back(pad(x, {dx * s, -dx * s, dy * s, -dy * s}));
  Tensor xs = cat(parts, 1);  // (B, 5C, H, W)
  // b c (h p1) (w p2) -> b (h w) (p1 p2 c)
  Tensor t = xs.reshape({B, 5 * C, Hh, p, Ww, p}).permute({0, 2, 4, 3, 5, 1}).reshape({B, Hh * Ww, p * p * 5 * C});
  return proj.forward(norm.forward(t));
}

// ---- The seeds' forms ---------------------------------------------------------------------------
namespace seeds {

AttentionLayer::AttentionLayer(int64_t input_dim, int64_t output_dim)
    : Module("AttentionLayer"),
      query(LinearOptions(input_dim, output_dim)),
      key(LinearOptions(input_dim, output_dim)),
      value(LinearOptions(input_dim, output_dim)) {
  register_module("query", query);
  register_module("key", key);
  register_module("value", value);
}

Tensor AttentionLayer::forward(const Tensor& q, const Tensor& k, const Tensor& v) const {
  return F::scaled_dot_product_attention(query.forward(q), key.forward(k), value.forward(v),
                                         F::SdpaOptions().scale(1.0));  // the seed does not scale
}

MultiHeadAttention::MultiHeadAttention(int64_t E, int64_t H)
    : Module("MultiHeadAttention"),
      embed_dim(E),
      num_heads(H),
      query(LinearOptions(E, E)),
      key(LinearOptions(E, E)),
      value(LinearOptions(E, E)),
      output(LinearOptions(E, E)) {
  ATTN_CHECK(H > 0 && E % H == 0, "MultiHeadAttention: embed_dim (", E, ") must be divisible by num_heads (", H, ")");
  register_module("query", query);
  register_module("key", key);
  register_module("value", value);
  register_module("output", output);
}

std::tuple<Tensor, Tensor> MultiHeadAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                                       const Tensor& mask) const {
  ATTN_CHECK(q.defined() && q.dim() == 3 && q.size(2) == embed_dim, "MultiHeadAttention: query must be (B, L, ",
             embed_dim, "), got ", q.defined() ? shape_str(q.shape()) : std::string("undefined"));
  for (const auto& [name, t] : {std::pair<const char*, const Tensor&>{"key", k}, {"value", v}})
    ATTN_CHECK(t.defined() && t.dim() == 3 && t.size(0) == q.size(0), "MultiHeadAttention: ", name,
               " must be (B, S, E) with the query's batch ", q.size(0), ", got ",
               t.defined() ? shape_str(t.shape()) : std::string("undefined"));
  if (mask.defined())
    ATTN_CHECK(mask.dtype() == kBool, "MultiHeadAttention: mask must be bool (true = attend), got ",
               dtype_name(mask.dtype()));
  const int64_t B = q.size(0), d = embed_dim / num_heads;
  auto heads = [&](const Tensor& t) { return t.reshape({B, -1, num_heads, d}).transpose(1, 2); };
  Tensor Q = heads(query.forward(q)), K = heads(key.forward(k)), V = heads(value.forward(v));
  F::SdpaOptions o = F::SdpaOptions().attn_mask(mask);
  auto [ctx, lse] = F::scaled_dot_product_attention_with_lse(Q, K, V, o);
  Tensor w = F::scaled_dot_product_attention_weights(Q.detach(), K.detach(), lse, o);
  return {output.forward(ctx.transpose(1, 2).reshape({B, -1, embed_dim})), w};
}

}  // namespace seeds

}  // namespace attn::nn
