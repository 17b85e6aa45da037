// nn::MultiheadAttention, as torch.nn.MultiheadAttention, computed through the
// fused scaled-dot-product attention (attn::F::scaled_dot_product_attention).
//
// Legend: B = batch, L = target (query) length, S = source (key) length,
// E = embed_dim, H = num_heads, D = E / H.
//   query: (L, B, E), or (B, L, E) with batch_first, or (L, E) unbatched
//   key: (S, B, kdim), value: (S, B, vdim) likewise
//   key_padding_mask: (B, S) or (S) unbatched; bool (**true = masked**, this
//     key is padding) or float (added to the scores)
//   attn_mask: (L, S) or (B * H, L, S), index b * H + h; bool (**true = masked**)
//     or float (added to the scores)
//   output: as query; weights: (B, L, S) averaged over heads, or (B, H, L, S)
//     with average_attn_weights = false; (L, S) / (H, L, S) unbatched.
// S counts the extra key of add_bias_kv and of add_zero_attn.
//
// Differences from PyTorch 1.13, on purpose:
// - a query whose keys are all masked gives output out_proj.bias (attention
//   output 0) and weights 0; PyTorch 1.13 gives NaN there;
// - the weights are the probabilities before dropout and carry no gradient
//   (they are computed tile by tile from the saved log-sum-exp, after the
//   output); PyTorch returns them after dropout;
// - is_causal applies the causal mask (query i sees keys j <= i) whether or
//   not attn_mask is given (PyTorch >= 2.0 takes it as a hint about attn_mask).
#pragma once

#include <cstdint>
#include <optional>
#include <tuple>

#include "attn/generator.h"
#include "attn/nn/layers.h"
#include "attn/nn/module.h"
#include "attn/tensor.h"

namespace attn::nn {

// Keys and values of past steps for incremental decoding, per head:
// (B, H, length, D) views of storage that grows by doubling, so appending a
// step copies only that step. For inference: no gradient flows into the cache.
class KVCache {
 public:
  void append(const Tensor& k, const Tensor& v);  // (B, H, n, D) each
  Tensor keys() const;    // (B, H, length, D), undefined when empty
  Tensor values() const;
  int64_t length() const { return length_; }
  // Forgets the steps past `length` (rewinding, e.g. for beam search); keeps the storage.
  void truncate(int64_t length);
  void clear();

 private:
  Tensor k_, v_;  // (B, H, capacity, D)
  int64_t length_ = 0;
};

struct MultiheadAttentionOptions {
  MultiheadAttentionOptions(int64_t embed_dim, int64_t num_heads) : embed_dim_(embed_dim), num_heads_(num_heads) {}
  ATTN_ARG(int64_t, embed_dim);
  ATTN_ARG(int64_t, num_heads);
  ATTN_ARG(double, dropout) = 0.0;  // on the attention probabilities, in training mode
  ATTN_ARG(bool, bias) = true;       // in_proj_bias and out_proj.bias
  ATTN_ARG(bool, add_bias_kv) = false;    // learned bias_k, bias_v appended as one more key/value
  ATTN_ARG(bool, add_zero_attn) = false;  // a zero key/value appended per head
  ATTN_ARG(std::optional<int64_t>, kdim) = std::nullopt;  // embed_dim
  ATTN_ARG(std::optional<int64_t>, vdim) = std::nullopt;  // embed_dim
  ATTN_ARG(bool, batch_first) = false;
  ATTN_ARG(Generator*, generator) = nullptr;  // dropout draws (the default generator when null)
};

// Parameters, as PyTorch: in_proj_weight (3E, E) when kdim == vdim == E,
// otherwise q_proj_weight (E, E), k_proj_weight (E, kdim), v_proj_weight
// (E, vdim) (xavier-uniform); in_proj_bias (3E) (zeros); out_proj.weight (E, E),
// out_proj.bias (E) (zeros); bias_k, bias_v (1, 1, E) (xavier-normal).
class MultiheadAttention : public Module {
 public:
  explicit MultiheadAttention(const MultiheadAttentionOptions& options);
  MultiheadAttention(int64_t embed_dim, int64_t num_heads)
      : MultiheadAttention(MultiheadAttentionOptions(embed_dim, num_heads)) {}
  void reset_parameters();

  // (output, weights); weights is undefined when need_weights is false.
  std::tuple<Tensor, Tensor> forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                     const Tensor& key_padding_mask = {}, bool need_weights = true,
                                     const Tensor& attn_mask = {}, bool average_attn_weights = true,
                                     bool is_causal = false) const;
  // Incremental decoding: query (B, L, E) (or (L, B, E), or (L, E) unbatched)
  // holds the new steps; key and value, when defined, are projected and
  // appended to `cache` (self-attention); undefined, the cache is used as it
  // is (cross-attention over a memory cached once). The new queries attend to
  // every cached key, with is_causal aligning them to the end (query i of L
  // new ones sees the keys up to length - L + i). Same options as forward
  // except add_bias_kv and add_zero_attn, which are refused. Returns (output,
  // weights averaged over heads or undefined).
  // key_padding_mask: (B, cache length after appending) bool, true = masked.
  std::tuple<Tensor, Tensor> forward_cached(const Tensor& query, const Tensor& key, const Tensor& value,
                                            KVCache& cache, const Tensor& key_padding_mask = {},
                                            bool is_causal = true, bool need_weights = false) const;
  std::string extra_repr() const override;
  bool qkv_same_embed_dim() const { return same_dim_; }

  MultiheadAttentionOptions options;
  Tensor in_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias, bias_k, bias_v;
  Linear out_proj;

 private:
  // x @ W^T + b for the query (0), key (1) or value (2) projection.
  Tensor project(const Tensor& x, int64_t which) const;
  bool same_dim_;
};

}  // namespace attn::nn
