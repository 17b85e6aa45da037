// Transformer layers: post-norm x = norm(x + block(x)) or pre-norm
// x = x + block(norm(x)) around self-attention, cross-attention and the
// feed-forward block, as torch.nn.TransformerEncoderLayer / DecoderLayer.
#include "attn/nn/transformer.h"

#include <cmath>

#include "attn/nn/init.h"
#include "attn/ops.h"

namespace attn::nn {

TransformerActivation::TransformerActivation(const std::string& name) : name_(name) {
  if (name == "relu")
    fn_ = [](const Tensor& x) { return F::relu(x); };
  else if (name == "gelu")
    fn_ = [](const Tensor& x) { return F::gelu(x); };
  else
    throw Error(detail::str("Transformer: activation must be \"relu\" or \"gelu\" (or a function), got \"", name,
                            "\""));
}

TransformerActivation::TransformerActivation(std::function<Tensor(const Tensor&)> fn, std::string name)
    : fn_(std::move(fn)), name_(std::move(name)) {
  ATTN_CHECK(fn_ != nullptr, "Transformer: the activation function is empty");
}

namespace {
MultiheadAttentionOptions mha_options(const TransformerEncoderLayerOptions& o) {
  return MultiheadAttentionOptions(o.d_model(), o.nhead())
      .dropout(o.dropout())
      .bias(o.bias())
      .batch_first(o.batch_first())
      .generator(o.generator());
}
LayerNormOptions norm_options(const TransformerEncoderLayerOptions& o) {
  return LayerNormOptions({o.d_model()}).eps(o.layer_norm_eps()).bias(o.bias());
}
DropoutOptions drop(const TransformerEncoderLayerOptions& o) { return DropoutOptions(o.dropout()).generator(o.generator()); }
void check_layer(const char* name, const TransformerEncoderLayerOptions& o) {
  ATTN_CHECK(o.d_model() > 0 && o.nhead() > 0 && o.dim_feedforward() > 0, name,
             ": d_model, nhead and dim_feedforward must be positive, got ", o.d_model(), ", ", o.nhead(), " and ",
             o.dim_feedforward());
}
}  // namespace

// ---- Encoder layer -------------------------------------------------------------
TransformerEncoderLayer::TransformerEncoderLayer(const TransformerEncoderLayerOptions& o)
    : Module("TransformerEncoderLayer"),
      options((check_layer("TransformerEncoderLayer", o), o)),
      self_attn(mha_options(o)),
      linear1(LinearOptions(o.d_model(), o.dim_feedforward()).bias(o.bias())),
      dropout(drop(o)),
      linear2(LinearOptions(o.dim_feedforward(), o.d_model()).bias(o.bias())),
      norm1(norm_options(o)),
      norm2(norm_options(o)),
      dropout1(drop(o)),
      dropout2(drop(o)) {
  register_module("self_attn", self_attn);
  register_module("linear1", linear1);
  register_module("dropout", dropout);
  register_module("linear2", linear2);
  register_module("norm1", norm1);
  register_module("norm2", norm2);
  register_module("dropout1", dropout1);
  register_module("dropout2", dropout2);
}

Tensor TransformerEncoderLayer::sa_block(const Tensor& x, const Tensor& mask, const Tensor& kpm,
                                         bool is_causal) const {
  auto [y, w] = self_attn.forward(x, x, x, kpm, false, mask, true, is_causal);
  return dropout1.forward(y);
}

Tensor TransformerEncoderLayer::ff_block(const Tensor& x) const {
  return dropout2.forward(linear2.forward(dropout.forward(options.activation()(linear1.forward(x)))));
}

Tensor TransformerEncoderLayer::forward(const Tensor& src, const Tensor& src_mask, const Tensor& kpm,
                                        bool is_causal) const {
  Tensor x = src;
  if (options.norm_first()) {
    x = x + sa_block(norm1.forward(x), src_mask, kpm, is_causal);
    x = x + ff_block(norm2.forward(x));
  } else {
    x = norm1.forward(x + sa_block(x, src_mask, kpm, is_causal));
    x = norm2.forward(x + ff_block(x));
  }
  return x;
}

// ---- Decoder layer -------------------------------------------------------------
TransformerDecoderLayer::TransformerDecoderLayer(const TransformerDecoderLayerOptions& o)
    : Module("TransformerDecoderLayer"),
      options((check_layer("TransformerDecoderLayer", o), o)),
      self_attn(mha_options(o)),
      multihead_attn(mha_options(o)),
      linear1(LinearOptions(o.d_model(), o.dim_feedforward()).bias(o.bias())),
      dropout(drop(o)),
      linear2(LinearOptions(o.dim_feedforward(), o.d_model()).bias(o.bias())),
      norm1(norm_options(o)),
      norm2(norm_options(o)),
      norm3(norm_options(o)),
      dropout1(drop(o)),
      dropout2(drop(o)),
      dropout3(drop(o)) {
  register_module("self_attn", self_attn);
  register_module("multihead_attn", multihead_attn);
  register_module("linear1", linear1);
  register_module("dropout", dropout);
  register_module("linear2", linear2);
  register_module("norm1", norm1);
  register_module("norm2", norm2);
  register_module("norm3", norm3);
  register_module("dropout1", dropout1);
  register_module("dropout2", dropout2);
  register_module("dropout3", dropout3);
}

Tensor TransformerDecoderLayer::blocks(const Tensor& tgt, const std::function<Tensor(const Tensor&)>& sa,
                                       const std::function<Tensor(const Tensor&)>& mha) const {
  Tensor x = tgt;
  if (options.norm_first()) {
    x = x + sa(norm1.forward(x));
    x = x + mha(norm2.forward(x));
    x = x + ff_block(norm3.forward(x));
  } else {
    x = norm1.forward(x + sa(x));
    x = norm2.forward(x + mha(x));
    x = norm3.forward(x + ff_block(x));
  }
  return x;
}

Tensor TransformerDecoderLayer::ff_block(const Tensor& x) const {
  return dropout3.forward(linear2.forward(dropout.forward(options.activation()(linear1.forward(x)))));
}

Tensor TransformerDecoderLayer::forward(const Tensor& tgt, const Tensor& memory, const Tensor& tgt_mask,
                                        const Tensor& memory_mask, const Tensor& tgt_kpm, const Tensor& mem_kpm,
                                        bool tgt_is_causal, bool memory_is_causal) const {
  auto sa = [&](const Tensor& x) {
    return dropout1.forward(std::get<0>(self_attn.forward(x, x, x, tgt_kpm, false, tgt_mask, true, tgt_is_causal)));
  };
  auto mha = [&](const Tensor& x) {
    return dropout2.forward(
        std::get<0>(multihead_attn.forward(x, memory, memory, mem_kpm, false, memory_mask, true, memory_is_causal)));
  };
  return blocks(tgt, sa, mha);
}

Tensor TransformerDecoderLayer::forward_cached(const Tensor& tgt, const Tensor& memory, TransformerDecoderCache& cache,
                                               const Tensor& mem_kpm) const {
  auto sa = [&](const Tensor& x) {
    return dropout1.forward(std::get<0>(self_attn.forward_cached(x, x, x, cache.self_attn, {}, true)));
  };
  auto mha = [&](const Tensor& x) {
    const bool first = cache.cross_attn.length() == 0;
    return dropout2.forward(std::get<0>(multihead_attn.forward_cached(
        x, first ? memory : Tensor(), first ? memory : Tensor(), cache.cross_attn, mem_kpm, false)));
  };
  return blocks(tgt, sa, mha);
}

// ---- Stacks ---------------------------------------------------------------------------
namespace {
template <class Layer, class Options>
void build_stack(const char* name, ModuleList& layers, const Options& layer_options, int64_t n) {
  ATTN_CHECK(n >= 1, name, ": num_layers must be at least 1, got ", n);
  auto& first = layers.emplace_back<Layer>(layer_options);
  StateDict s = first.state_dict();
  for (int64_t i = 1; i < n; ++i) layers.emplace_back<Layer>(layer_options).load_state_dict(s);
}
}  // namespace

TransformerEncoder::TransformerEncoder(const TransformerEncoderOptions& o) : Module("TransformerEncoder"), options(o) {
  build_stack<TransformerEncoderLayer>("TransformerEncoder", layers, o.encoder_layer(), o.num_layers());
  register_module("layers", layers);
  if (o.norm()) {
    norm = std::make_unique<LayerNorm>(*o.norm());
    register_module("norm", *norm);
  }
}

Tensor TransformerEncoder::forward(const Tensor& src, const Tensor& mask, const Tensor& kpm, bool is_causal) const {
  Tensor x = src;
  for (size_t i = 0; i < layers.size(); ++i) x = layer(i).forward(x, mask, kpm, is_causal);
  return norm ? norm->forward(x) : x;
}

TransformerDecoder::TransformerDecoder(const TransformerDecoderOptions& o) : Module("TransformerDecoder"), options(o) {
  build_stack<TransformerDecoderLayer>("TransformerDecoder", layers, o.decoder_layer(), o.num_layers());
  register_module("layers", layers);
  if (o.norm()) {
    norm = std::make_unique<LayerNorm>(*o.norm());
    register_module("norm", *norm);
  }
}

Tensor TransformerDecoder::forward(const Tensor& tgt, const Tensor& memory, const Tensor& tgt_mask,
                                   const Tensor& memory_mask, const Tensor& tgt_kpm, const Tensor& mem_kpm,
                                   bool tgt_is_causal, bool memory_is_causal) const {
  Tensor x = tgt;
  for (size_t i = 0; i < layers.size(); ++i)
    x = layer(i).forward(x, memory, tgt_mask, memory_mask, tgt_kpm, mem_kpm, tgt_is_causal, memory_is_causal);
  return norm ? norm->forward(x) : x;
}

Tensor TransformerDecoder::forward_cached(const Tensor& tgt, const Tensor& memory,
                                          std::vector<TransformerDecoderCache>& caches, const Tensor& mem_kpm) const {
  caches.resize(layers.size());
  Tensor x = tgt;
  for (size_t i = 0; i < layers.size(); ++i) x = layer(i).forward_cached(x, memory, caches[i], mem_kpm);
  return norm ? norm->forward(x) : x;
}

// ---- Transformer ---------------------------------------------------------------------------
namespace {
TransformerEncoderLayerOptions layer_options(const TransformerOptions& o) {
  return TransformerEncoderLayerOptions(o.d_model(), o.nhead())
      .dim_feedforward(o.dim_feedforward())
      .dropout(o.dropout())
      .activation(o.activation())
      .layer_norm_eps(o.layer_norm_eps())
      .batch_first(o.batch_first())
      .norm_first(o.norm_first())
      .bias(o.bias())
      .generator(o.generator());
}
}  // namespace

Transformer::Transformer(const TransformerOptions& o)
    : Module("Transformer"),
      options(o),
      encoder(TransformerEncoderOptions(layer_options(o), o.num_encoder_layers())
                  .norm(LayerNormOptions({o.d_model()}).eps(o.layer_norm_eps()).bias(o.bias()))),
      decoder(TransformerDecoderOptions(layer_options(o), o.num_decoder_layers())
                  .norm(LayerNormOptions({o.d_model()}).eps(o.layer_norm_eps()).bias(o.bias()))) {
  register_module("encoder", encoder);
  register_module("decoder", decoder);
  for (auto& p : parameters())
    if (p.dim() > 1) init::xavier_uniform_(p);
}

Tensor Transformer::forward(const Tensor& src, const Tensor& tgt, const Tensor& src_mask, const Tensor& tgt_mask,
                            const Tensor& memory_mask, const Tensor& src_kpm, const Tensor& tgt_kpm,
                            const Tensor& mem_kpm, bool src_is_causal, bool tgt_is_causal,
                            bool memory_is_causal) const {
  ATTN_CHECK(src.defined() && tgt.defined(), "Transformer: src and tgt must be defined");
  ATTN_CHECK(src.dim() == tgt.dim(), "Transformer: src ", shape_str(src.shape()), " and tgt ",
             shape_str(tgt.shape()), " must both be batched (3-d) or both unbatched (2-d)");
  if (src.dim() == 3) {
    const int64_t bd = options.batch_first() ? 0 : 1;
    ATTN_CHECK(src.size(bd) == tgt.size(bd), "Transformer: the batch size of src ", shape_str(src.shape()),
               " and tgt ", shape_str(tgt.shape()), " must be equal");
  }
  ATTN_CHECK(src.size(-1) == options.d_model() && tgt.size(-1) == options.d_model(),
             "Transformer: the feature size of src ", shape_str(src.shape()), " and tgt ", shape_str(tgt.shape()),
             " must equal d_model (", options.d_model(), ")");
  Tensor memory = encoder.forward(src, src_mask, src_kpm, src_is_causal);
  return decoder.forward(tgt, memory, tgt_mask, memory_mask, tgt_kpm, mem_kpm, tgt_is_causal, memory_is_causal);
}

Tensor Transformer::generate_square_subsequent_mask(int64_t sz, DType dtype) {
  ATTN_CHECK(sz >= 0, "Transformer.generate_square_subsequent_mask: sz must be non-negative, got ", sz);
  ATTN_CHECK(dtype == kFloat32 || dtype == kFloat64,
             "Transformer.generate_square_subsequent_mask: dtype must be float32 or float64, got ", dtype_name(dtype));
  return triu(full({sz, sz}, -INFINITY, dtype), 1);
}

}  // namespace attn::nn
