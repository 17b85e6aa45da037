// Attention modules beyond nn::MultiheadAttention: additive (Bahdanau) and
// multiplicative (Luong) attention for recurrent encoder-decoders, attention
// pooling, cosine-similarity attention, rotary embeddings, and the seeds'
// hand-written forms (seeds::AttentionLayer, seeds::MultiHeadAttention).
//
// Legend: B = batch, Lq = query steps, S = keys (encoder steps), Dq / Dk / Dv
// = query / key / value features.
//   query: (B, Dq) for one decoder step, or (B, Lq, Dq)
//   keys: (B, S, Dk); values: (B, S, Dv), the keys when not given
//   key_padding_mask: (B, S) bool, **true = masked** (padding), as MultiheadAttention
//   returns (context (B, Dv) or (B, Lq, Dv), weights (B, S) or (B, Lq, S))
// A query whose keys are all masked gets weights 0 and context 0.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>

#include "attn/attention.h"
#include "attn/nn/layers.h"
#include "attn/nn/module.h"
#include "attn/tensor.h"

namespace attn::nn {

struct AdditiveAttentionOptions {
  AdditiveAttentionOptions(int64_t query_dim, int64_t key_dim, int64_t hidden_dim)
      : query_dim_(query_dim), key_dim_(key_dim), hidden_dim_(hidden_dim) {}
  ATTN_ARG(int64_t, query_dim);
  ATTN_ARG(int64_t, key_dim);
  ATTN_ARG(int64_t, hidden_dim);
  ATTN_ARG(bool, bias) = true;  // the bias of key_proj (the b in tanh(W q + U k + b))
};

// Bahdanau et al. 2015: score(q, k) = v^T tanh(query_proj(q) + key_proj(k)).
// Parameters query_proj.weight (H, Dq), key_proj.weight (H, Dk), key_proj.bias
// (H), v.weight (1, H). For step-by-step decoding, project the keys once with
// project_keys and pass them to forward_projected at every step.
class AdditiveAttention : public Module {
 public:
  explicit AdditiveAttention(const AdditiveAttentionOptions& options);
  std::tuple<Tensor, Tensor> forward(const Tensor& query, const Tensor& keys, const Tensor& values = {},
                                     const Tensor& key_padding_mask = {}) const;
  // key_proj(keys): (B, S, H), reusable across decoder steps.
  Tensor project_keys(const Tensor& keys) const;
  std::tuple<Tensor, Tensor> forward_projected(const Tensor& query, const Tensor& projected_keys,
                                               const Tensor& values, const Tensor& key_padding_mask = {}) const;
  std::string extra_repr() const override;
  AdditiveAttentionOptions options;
  Linear query_proj, key_proj, v;
};

enum class LuongScore { Dot, General, Concat };

struct LuongAttentionOptions {
  LuongAttentionOptions(int64_t query_dim, int64_t key_dim) : query_dim_(query_dim), key_dim_(key_dim) {}
  ATTN_ARG(int64_t, query_dim);
  ATTN_ARG(int64_t, key_dim);
  ATTN_ARG(LuongScore, score) = LuongScore::General;
  ATTN_ARG(int64_t, hidden_dim) = 0;  // concat only: 0 means query_dim
  ATTN_ARG(bool, scale) = false;      // divide dot/general scores by sqrt(Dq) (scaled dot product)
};

// Luong et al. 2015: dot q.k (Dq == Dk); general q.(W k), linear.weight (Dq, Dk);
// concat v^T tanh(W [q; k]), linear.weight (H, Dq + Dk), v.weight (1, H). No biases.
class LuongAttention : public Module {
 public:
  explicit LuongAttention(const LuongAttentionOptions& options);
  std::tuple<Tensor, Tensor> forward(const Tensor& query, const Tensor& keys, const Tensor& values = {},
                                     const Tensor& key_padding_mask = {}) const;
  std::string extra_repr() const override;
  LuongAttentionOptions options;
  std::unique_ptr<Linear> linear, v;  // general: linear; concat: linear and v; dot: neither
};

// The BiLSTM tagger's pooling: weights = softmax over time of attention(x)
// (a Linear(D, 1) named "attention"), pooled = sum over time of weights * x.
// x: (B, T, D) (or (T, B, D) with batch_first false); key_padding_mask (B, T)
// true = padding. Returns (pooled (B, D), weights (B, T)).
class AttentionPooling : public Module {
 public:
  explicit AttentionPooling(int64_t input_dim, bool batch_first = true);
  std::tuple<Tensor, Tensor> forward(const Tensor& x, const Tensor& key_padding_mask = {}) const;
  bool batch_first;
  Linear attention;
};

// Cosine-similarity attention: scores = exp(logit_scale) * cos(q_i, k_j), a
// learnable temperature (logit_scale, a 0-d parameter, starts at log(10)),
// computed through the fused attention. q (..., L, E), k (..., S, E), v (..., S, Ev);
// attn_mask as SdpaOptions (bool **true = attend**, or float). Returns the output.
class CosineAttention : public Module {
 public:
  explicit CosineAttention(double initial_logit_scale = 2.302585092994046);
  Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask = {}) const;
  Tensor logit_scale;
};

// RoPE as a module: forward(x, offset) = F::rotary_embedding of x (..., L, D).
struct RotaryEmbeddingOptions {
  RotaryEmbeddingOptions(int64_t dim) : dim_(dim) {}  // NOLINT
  ATTN_ARG(int64_t, dim);
  ATTN_ARG(double, base) = 10000.0;
  ATTN_ARG(F::RopeLayout, layout) = F::RopeLayout::HalfSplit;
};
class RotaryEmbedding : public Module {
 public:
  explicit RotaryEmbedding(const RotaryEmbeddingOptions& options);
  Tensor forward(const Tensor& x, int64_t offset = 0) const;
  RotaryEmbeddingOptions options;
};

// ---- Relative positions ------------------------------------------------------------------

struct RelativeMultiheadAttentionOptions {
  RelativeMultiheadAttentionOptions(int64_t embed_dim, int64_t num_heads) : embed_dim_(embed_dim), num_heads_(num_heads) {}
  ATTN_ARG(int64_t, embed_dim);
  ATTN_ARG(int64_t, num_heads);
  ATTN_ARG(int64_t, max_relative_position) = 16;  // k: distances are clipped to [-k, k]
  ATTN_ARG(bool, relative_values) = true;         // false: keys only (a^V = 0)
  ATTN_ARG(double, dropout) = 0.0;
  ATTN_ARG(bool, bias) = true;
  ATTN_ARG(bool, batch_first) = false;
  ATTN_ARG(Generator*, generator) = nullptr;
};

// Self-attention with relative position representations (Shaw, Uszkoreit,
// Vaswani 2018): e_ij = q_i . (k_j + a^K_r) / sqrt(D), z_i = sum_j alpha_ij
// (v_j + a^V_r), r = clip(j - i, -k, k), one learned a per distance shared by
// the heads. Computed with the paper's split: q_i . a^K_r for the 2k + 1
// distances, gathered into the scores; alpha summed per distance, times a^V;
// no (L, S, D) tensor. Inputs and masks as MultiheadAttention (key_padding_mask
// (B, S) and attn_mask (L, S), bool **true = masked** or float added).
// Without masks and with need_weights false (and no dropout in training) it
// runs fused: flex_attention with the key term as a score modifier and the
// value term as FlexOptions::relative_values, no (L, S) matrix.
// Parameters in_proj_weight (3E, E), in_proj_bias, out_proj, relative_key and
// relative_value (2k + 1, D).
class RelativeMultiheadAttention : public Module {
 public:
  explicit RelativeMultiheadAttention(const RelativeMultiheadAttentionOptions& options);
  std::tuple<Tensor, Tensor> forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                     const Tensor& key_padding_mask = {}, bool need_weights = true,
                                     const Tensor& attn_mask = {}) const;
  RelativeMultiheadAttentionOptions options;
  Tensor in_proj_weight, in_proj_bias, relative_key, relative_value;
  Linear out_proj;
};

// T5's bucket of a relative position j - i (Raffel et al. 2020): exact for
// small distances, logarithmic up to max_distance; separate buckets for
// either sign when bidirectional. (L, S) int64.
Tensor t5_relative_position_bucket(int64_t L, int64_t S, bool bidirectional = true, int64_t num_buckets = 32,
                                   int64_t max_distance = 128, int64_t query_offset = 0);

struct T5RelativePositionBiasOptions {
  T5RelativePositionBiasOptions(int64_t num_heads) : num_heads_(num_heads) {}  // NOLINT
  ATTN_ARG(int64_t, num_heads);
  ATTN_ARG(int64_t, num_buckets) = 32;
  ATTN_ARG(int64_t, max_distance) = 128;
  ATTN_ARG(bool, bidirectional) = true;
};

// T5's learned relative bias as an additive attention bias: forward(L, S)
// returns (1, H, L, S) float, to pass as SdpaOptions::attn_mask (its gradient
// reaches relative_attention_bias.weight (num_buckets, H) through the fused kernel).
class T5RelativePositionBias : public Module {
 public:
  explicit T5RelativePositionBias(const T5RelativePositionBiasOptions& options);
  Tensor forward(int64_t L, int64_t S, int64_t query_offset = 0) const;
  T5RelativePositionBiasOptions options;
  Embedding relative_attention_bias;
};

// ---- Vision transformers for small datasets (Lee, Lee, Song 2021, arXiv 2112.13492) ----

struct LocalitySelfAttentionOptions {
  LocalitySelfAttentionOptions(int64_t dim) : dim_(dim) {}  // NOLINT
  ATTN_ARG(int64_t, dim);
  ATTN_ARG(int64_t, heads) = 8;
  ATTN_ARG(int64_t, dim_head) = 64;
  ATTN_ARG(double, dropout) = 0.0;
  ATTN_ARG(Generator*, generator) = nullptr;
};

// Locality Self-Attention: the diagonal (a token attending to itself) is
// masked out and the softmax temperature is learned: scores = q.k *
// exp(temperature), temperature starting at log(dim_head^-1/2). x (B, N, dim),
// normalised first (norm), then to_qkv (no bias), heads, attention through the
// fused kernel, to_out. Parameter names as the authors' code (vit-pytorch):
// norm, to_qkv, to_out.0, temperature. A single token (N = 1) has no key left
// and gets attention output 0 (the reference code's -max fill lets it see itself).
class LocalitySelfAttention : public Module {
 public:
  explicit LocalitySelfAttention(const LocalitySelfAttentionOptions& options);
  Tensor forward(const Tensor& x) const;
  LocalitySelfAttentionOptions options;
  Tensor temperature;
  LayerNorm norm;
  Linear to_qkv;
  Sequential to_out;  // 0: Linear(heads * dim_head, dim), 1: Dropout
};

struct ShiftedPatchTokenizationOptions {
  ShiftedPatchTokenizationOptions(int64_t in_channels, int64_t patch_size, int64_t dim)
      : in_channels_(in_channels), patch_size_(patch_size), dim_(dim) {}
  ATTN_ARG(int64_t, in_channels);
  ATTN_ARG(int64_t, patch_size);
  ATTN_ARG(int64_t, dim);
};

// Shifted Patch Tokenization: the image and its four diagonal shifts by half
// a patch (zero filled) stacked on channels (5C), cut into patch_size^2
// patches flattened as (p1, p2, c), then norm (LayerNorm) and proj (Linear) to
// dim. x (B, C, H, W), H and W multiples of patch_size -> (B, H W / p^2, dim).
class ShiftedPatchTokenization : public Module {
 public:
  explicit ShiftedPatchTokenization(const ShiftedPatchTokenizationOptions& options);
  Tensor forward(const Tensor& x) const;
  ShiftedPatchTokenizationOptions options;
  LayerNorm norm;
  Linear proj;
};

namespace seeds {

// The seed's single-head AttentionLayer: softmax(query(q) key(k)^T) value(v),
// unscaled. Parameters query, key, value: Linear(input_dim, output_dim).
class AttentionLayer : public Module {
 public:
  AttentionLayer(int64_t input_dim, int64_t output_dim);
  // q (..., L, input_dim), k and v (..., S, input_dim) -> (..., L, output_dim)
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value) const;
  Linear query, key, value;
};

// The seeds' hand-written multi-head attention: query, key, value, output
// Linear(E, E); heads split from batch-first (B, L, E); softmax(QK^T / sqrt(E/H)) V.
// The same numbers as nn::MultiheadAttention(batch_first) with in_proj_weight =
// [query; key; value] and out_proj = output. mask: broadcastable to (B, H, L, S),
// bool **true = attend** (the seed fills mask == 0 with -inf). Returns (output,
// weights (B, H, L, S)).
class MultiHeadAttention : public Module {
 public:
  MultiHeadAttention(int64_t embed_dim, int64_t num_heads);
  std::tuple<Tensor, Tensor> forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                     const Tensor& mask = {}) const;
  int64_t embed_dim, num_heads;
  Linear query, key, value, output;
};

}  // namespace seeds

}  // namespace attn::nn
