// GPT-2 (Radford et al. 2019) in Hugging Face's layout: GPT2Config's keys in
// config.json, GPT2LMHeadModel's state_dict keys, so a directory written by
// save_pretrained (or OpenAI's weights converted by Hugging Face) runs here:
//   transformer.wte, transformer.wpe, transformer.h.N.{ln_1, attn.c_attn,
//   attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}, transformer.ln_f, lm_head
// with the Conv1D weights stored (in, out) as GPT-2 stores them.
//
//   auto gpt2 = attn::models::GPT2LMHeadModel::from_pretrained("gpt2/");  // config.json + weights
//   gpt2->eval();
//   attn::models::GPT2Cache cache;
//   attn::Tensor logits = gpt2->forward(ids, {}, {}, &cache);  // (B, T, vocab); the cache grows by T
//
// Loading accepts keys with or without the "transformer." prefix, ignores
// the attn.bias / attn.masked_bias buffers of older files, and ties lm_head
// to wte when the file has no lm_head (tie_word_embeddings, the default).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attn/nn.h"

namespace attn::models {

struct GPT2Config {
  int64_t vocab_size = 50257, n_positions = 1024, n_embd = 768, n_layer = 12, n_head = 12;
  std::optional<int64_t> n_inner;                  // 4 * n_embd
  std::string activation_function = "gelu_new";    // gelu_new (tanh), gelu_pytorch_tanh, gelu (erf), relu
  double resid_pdrop = 0.1, embd_pdrop = 0.1, attn_pdrop = 0.1;
  double layer_norm_epsilon = 1e-5;
  bool scale_attn_weights = true, scale_attn_by_inverse_layer_idx = false, tie_word_embeddings = true;
  int64_t bos_token_id = 50256, eos_token_id = 50256;

  // Hugging Face's GPT2Config keys; keys it does not know are ignored, and
  // what attn does not implement is refused (reorder_and_upcast_attn,
  // add_cross_attention, another model_type). attn::Error naming the file.
  static GPT2Config from_json_file(const std::string& path);
  static GPT2Config from_json(const std::string& text, const std::string& name = "config.json");
  std::string to_json() const;  // with model_type "gpt2" and architectures ["GPT2LMHeadModel"]
  int64_t inner() const { return n_inner.value_or(4 * n_embd); }
};

// Keys and values of the past steps, one KV cache per layer ((B, H, length, D)).
struct GPT2Cache {
  std::vector<nn::KVCache> layers;
  int64_t length() const { return layers.empty() ? 0 : layers[0].length(); }
  void clear() { layers.clear(); }
};

// GPT-2's linear layer: weight (in, out), bias (out); y = x weight + bias.
class Conv1D : public nn::Module {
 public:
  Conv1D(int64_t nf, int64_t nx);  // out features, in features (GPT-2's order)
  Tensor forward(const Tensor& x) const;
  std::string extra_repr() const override;
  Tensor weight, bias;
};

class GPT2Attention : public nn::Module {
 public:
  GPT2Attention(const GPT2Config& c, int64_t layer_idx);
  // x (B, T, E); key_mask (B, cache + T) bool, true = attend, or undefined.
  Tensor forward(const Tensor& x, const Tensor& key_mask, nn::KVCache* cache) const;
  Conv1D c_attn, c_proj;
  nn::Dropout resid_dropout;

 private:
  int64_t heads_, layer_idx_;
  double scale_, attn_pdrop_;
};

class GPT2MLP : public nn::Module {
 public:
  explicit GPT2MLP(const GPT2Config& c);
  Tensor forward(const Tensor& x) const;
  Conv1D c_fc, c_proj;
  nn::Dropout dropout;

 private:
  std::string act_;
};

class GPT2Block : public nn::Module {
 public:
  GPT2Block(const GPT2Config& c, int64_t layer_idx);
  Tensor forward(const Tensor& x, const Tensor& key_mask, nn::KVCache* cache) const;
  nn::LayerNorm ln_1;
  GPT2Attention attn;
  nn::LayerNorm ln_2;
  GPT2MLP mlp;
};

class GPT2Model : public nn::Module {
 public:
  explicit GPT2Model(const GPT2Config& config);
  // input_ids int64 (B, T); attention_mask (B, past + T) or (B, T) with no
  // cache, 1 = attend (left or right padding), any integer, bool or float
  // dtype; position_ids int64 (B, T) or (T), default past..past+T-1. With a
  // cache, T new steps are appended to it. Returns the last hidden state
  // (B, T, n_embd) after ln_f.
  Tensor forward(const Tensor& input_ids, const Tensor& attention_mask = {}, const Tensor& position_ids = {},
                 GPT2Cache* cache = nullptr) const;
  const GPT2Config& config() const { return config_; }

  nn::Embedding wte, wpe;
  nn::Dropout drop;
  nn::ModuleList h;
  nn::LayerNorm ln_f;

 private:
  GPT2Config config_;
};

class GPT2LMHeadModel : public nn::Module {
 public:
  explicit GPT2LMHeadModel(const GPT2Config& config);
  // Logits (B, T, vocab_size); arguments as GPT2Model::forward.
  Tensor forward(const Tensor& input_ids, const Tensor& attention_mask = {}, const Tensor& position_ids = {},
                 GPT2Cache* cache = nullptr) const;
  // The logits of the given hidden states (lm_head, or wte when tied).
  Tensor head(const Tensor& hidden) const;
  const GPT2Config& config() const { return transformer.config(); }

  // A Hugging Face directory: config.json and model.safetensors (or
  // pytorch_model.bin). attn::Error naming the directory and what is wrong.
  static std::unique_ptr<GPT2LMHeadModel> from_pretrained(const std::string& dir);
  // Loads a state_dict in any of the layouts above (strict).
  void load_hf_state_dict(const nn::StateDict& state, const std::string& source = "state_dict");
  // Writes config.json and model.safetensors (keys "transformer.*", lm_head
  // omitted when tied, metadata format "pt") as save_pretrained does.
  void save_pretrained(const std::string& dir) const;

  GPT2Model transformer;
  std::unique_ptr<nn::Linear> lm_head;  // untied only
};

}  // namespace attn::models
