// Transformer layers as torch.nn: TransformerEncoderLayer,
// TransformerDecoderLayer, TransformerEncoder, TransformerDecoder and the full
// Transformer, with PyTorch's options, defaults, submodule names (so their
// state_dict keys are PyTorch's) and post-norm / pre-norm (norm_first) forms.
//
// Legend: B = batch, S = source length, T = target length, E = d_model.
//   src: (S, B, E) or (B, S, E) with batch_first, or (S, E) unbatched
//   tgt: (T, B, E) likewise; memory: the encoder output, as src
//   src_mask / tgt_mask / memory_mask: (S, S) / (T, T) / (T, S), or
//     (B * nhead, ., .); bool (**true = masked**) or float (added)
//   *_key_padding_mask: (B, S) or (B, T); bool (**true = masked**, padding) or float
// Masks and is_causal behave as in MultiheadAttention (see multihead_attention.h):
// fully masked query rows give 0 attention, not NaN.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "attn/nn/layers.h"
#include "attn/nn/module.h"
#include "attn/nn/multihead_attention.h"
#include "attn/tensor.h"

namespace attn::nn {

// The feed-forward activation: "relu", "gelu" or any unary function.
class TransformerActivation {
 public:
  TransformerActivation(const char* name) : TransformerActivation(std::string(name)) {}  // NOLINT
  TransformerActivation(const std::string& name);                                        // NOLINT
  TransformerActivation(std::function<Tensor(const Tensor&)> fn, std::string name = "custom");  // NOLINT
  Tensor operator()(const Tensor& x) const { return fn_(x); }
  const std::string& name() const { return name_; }

 private:
  std::function<Tensor(const Tensor&)> fn_;
  std::string name_;
};

struct TransformerEncoderLayerOptions {
  TransformerEncoderLayerOptions(int64_t d_model, int64_t nhead) : d_model_(d_model), nhead_(nhead) {}
  ATTN_ARG(int64_t, d_model);
  ATTN_ARG(int64_t, nhead);
  ATTN_ARG(int64_t, dim_feedforward) = 2048;
  ATTN_ARG(double, dropout) = 0.1;
  ATTN_ARG(TransformerActivation, activation) = "relu";
  ATTN_ARG(double, layer_norm_eps) = 1e-5;
  ATTN_ARG(bool, batch_first) = false;
  ATTN_ARG(bool, norm_first) = false;
  ATTN_ARG(bool, bias) = true;  // linear, attention and layer-norm biases (PyTorch 2.1's bias)
  ATTN_ARG(Generator*, generator) = nullptr;  // dropout draws (the default generator when null)
};
using TransformerDecoderLayerOptions = TransformerEncoderLayerOptions;

// Submodules: self_attn, linear1 (E -> ff), dropout, linear2 (ff -> E), norm1,
// norm2, dropout1, dropout2.
class TransformerEncoderLayer : public Module {
 public:
  explicit TransformerEncoderLayer(const TransformerEncoderLayerOptions& options);
  Tensor forward(const Tensor& src, const Tensor& src_mask = {}, const Tensor& src_key_padding_mask = {},
                 bool is_causal = false) const;
  TransformerEncoderLayerOptions options;
  MultiheadAttention self_attn;
  Linear linear1;
  Dropout dropout;
  Linear linear2;
  LayerNorm norm1, norm2;
  Dropout dropout1, dropout2;

 private:
  Tensor sa_block(const Tensor& x, const Tensor& mask, const Tensor& kpm, bool is_causal) const;
  Tensor ff_block(const Tensor& x) const;
};

// Per decoder layer, for incremental decoding: the self-attention keys and
// values of the steps so far, and the cross-attention ones of the memory
// (projected once, at the first step).
struct TransformerDecoderCache {
  KVCache self_attn, cross_attn;
};

// Submodules: self_attn, multihead_attn, linear1, dropout, linear2, norm1,
// norm2, norm3, dropout1, dropout2, dropout3.
class TransformerDecoderLayer : public Module {
 public:
  explicit TransformerDecoderLayer(const TransformerDecoderLayerOptions& options);
  Tensor forward(const Tensor& tgt, const Tensor& memory, const Tensor& tgt_mask = {},
                 const Tensor& memory_mask = {}, const Tensor& tgt_key_padding_mask = {},
                 const Tensor& memory_key_padding_mask = {}, bool tgt_is_causal = false,
                 bool memory_is_causal = false) const;
  // Incremental decoding: tgt (B, T_new, E) (layout as forward) are the next
  // steps; they attend causally to every step in cache.self_attn and to the
  // memory (cached at the first call). The outputs equal forward's rows for
  // these steps with a causal tgt mask.
  Tensor forward_cached(const Tensor& tgt, const Tensor& memory, TransformerDecoderCache& cache,
                        const Tensor& memory_key_padding_mask = {}) const;
  TransformerDecoderLayerOptions options;
  MultiheadAttention self_attn, multihead_attn;
  Linear linear1;
  Dropout dropout;
  Linear linear2;
  LayerNorm norm1, norm2, norm3;
  Dropout dropout1, dropout2, dropout3;

 private:
  // The three residual blocks around self-attention `sa` and cross-attention
  // `mha` (each with its dropout), post-norm or pre-norm.
  Tensor blocks(const Tensor& tgt, const std::function<Tensor(const Tensor&)>& sa,
                const std::function<Tensor(const Tensor&)>& mha) const;
  Tensor ff_block(const Tensor& x) const;
};

struct TransformerEncoderOptions {
  TransformerEncoderOptions(TransformerEncoderLayerOptions encoder_layer, int64_t num_layers)
      : encoder_layer_(std::move(encoder_layer)), num_layers_(num_layers) {}
  ATTN_ARG(TransformerEncoderLayerOptions, encoder_layer);
  ATTN_ARG(int64_t, num_layers);
  ATTN_ARG(std::optional<LayerNormOptions>, norm) = std::nullopt;  // a final LayerNorm ("norm")
};

// `layers.0` ... `layers.{n-1}` start as copies of one initialised layer (as
// PyTorch deep-copies its encoder_layer), then the optional final `norm`.
class TransformerEncoder : public Module {
 public:
  explicit TransformerEncoder(const TransformerEncoderOptions& options);
  Tensor forward(const Tensor& src, const Tensor& mask = {}, const Tensor& src_key_padding_mask = {},
                 bool is_causal = false) const;
  TransformerEncoderLayer& layer(size_t i) const { return layers.at<TransformerEncoderLayer>(i); }
  TransformerEncoderOptions options;
  ModuleList layers;
  std::unique_ptr<LayerNorm> norm;  // null without a final norm
};

struct TransformerDecoderOptions {
  TransformerDecoderOptions(TransformerDecoderLayerOptions decoder_layer, int64_t num_layers)
      : decoder_layer_(std::move(decoder_layer)), num_layers_(num_layers) {}
  ATTN_ARG(TransformerDecoderLayerOptions, decoder_layer);
  ATTN_ARG(int64_t, num_layers);
  ATTN_ARG(std::optional<LayerNormOptions>, norm) = std::nullopt;
};

class TransformerDecoder : public Module {
 public:
  explicit TransformerDecoder(const TransformerDecoderOptions& options);
  Tensor forward(const Tensor& tgt, const Tensor& memory, const Tensor& tgt_mask = {},
                 const Tensor& memory_mask = {}, const Tensor& tgt_key_padding_mask = {},
                 const Tensor& memory_key_padding_mask = {}, bool tgt_is_causal = false,
                 bool memory_is_causal = false) const;
  TransformerDecoderLayer& layer(size_t i) const { return layers.at<TransformerDecoderLayer>(i); }
  // Incremental decoding with one cache per layer (resized as needed): a step
  // costs O(steps so far), not a forward over the whole prefix.
  Tensor forward_cached(const Tensor& tgt, const Tensor& memory, std::vector<TransformerDecoderCache>& caches,
                        const Tensor& memory_key_padding_mask = {}) const;
  TransformerDecoderOptions options;
  ModuleList layers;
  std::unique_ptr<LayerNorm> norm;
};

struct TransformerOptions {
  TransformerOptions(int64_t d_model = 512, int64_t nhead = 8) : d_model_(d_model), nhead_(nhead) {}  // NOLINT
  ATTN_ARG(int64_t, d_model);
  ATTN_ARG(int64_t, nhead);
  ATTN_ARG(int64_t, num_encoder_layers) = 6;
  ATTN_ARG(int64_t, num_decoder_layers) = 6;
  ATTN_ARG(int64_t, dim_feedforward) = 2048;
  ATTN_ARG(double, dropout) = 0.1;
  ATTN_ARG(TransformerActivation, activation) = "relu";
  ATTN_ARG(double, layer_norm_eps) = 1e-5;
  ATTN_ARG(bool, batch_first) = false;
  ATTN_ARG(bool, norm_first) = false;
  ATTN_ARG(bool, bias) = true;
  ATTN_ARG(Generator*, generator) = nullptr;
};

// encoder (TransformerEncoder with a final norm) and decoder (likewise);
// every parameter of 2 or more dims is re-initialised xavier-uniform, as PyTorch.
class Transformer : public Module {
 public:
  explicit Transformer(const TransformerOptions& options = {});
  // src: (S, B, E), tgt: (T, B, E) (batch-first or unbatched likewise) -> (T, B, E).
  Tensor forward(const Tensor& src, const Tensor& tgt, const Tensor& src_mask = {}, const Tensor& tgt_mask = {},
                 const Tensor& memory_mask = {}, const Tensor& src_key_padding_mask = {},
                 const Tensor& tgt_key_padding_mask = {}, const Tensor& memory_key_padding_mask = {},
                 bool src_is_causal = false, bool tgt_is_causal = false, bool memory_is_causal = false) const;
  // (sz, sz) float: 0 on and below the diagonal, -inf above (a causal additive mask).
  static Tensor generate_square_subsequent_mask(int64_t sz, DType dtype = kFloat32);
  TransformerOptions options;
  TransformerEncoder encoder;
  TransformerDecoder decoder;
};

}  // namespace attn::nn
