// GPT-2 in Hugging Face's layout (see attn/models/gpt2.h), built from attn's
// nn modules and the fused attention.
#include "attn/models/gpt2.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "attn/attention.h"
#include "attn/autograd.h"
#include "attn/error.h"
#include "models/hf.h"

namespace attn::models {

namespace {

constexpr const char* kOp = "GPT2";

void check_config(const GPT2Config& c, const std::string& name) {
  ATTN_CHECK(c.vocab_size > 0 && c.n_positions > 0 && c.n_embd > 0 && c.n_layer >= 0 && c.n_head > 0 && c.inner() > 0,
             name, ": sizes must be positive (vocab_size ", c.vocab_size, ", n_positions ", c.n_positions, ", n_embd ",
             c.n_embd, ", n_layer ", c.n_layer, ", n_head ", c.n_head, ", n_inner ", c.inner(), ")");
  ATTN_CHECK(c.n_embd % c.n_head == 0, name, ": n_embd ", c.n_embd, " is not divisible by n_head ", c.n_head);
  const std::string& a = c.activation_function;
  ATTN_CHECK(a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu" || a == "relu", name,
             ": activation_function \"", a, "\" is not supported (gelu_new, gelu_pytorch_tanh, gelu, relu)");
  for (double p : {c.resid_pdrop, c.embd_pdrop, c.attn_pdrop})
    ATTN_CHECK(p >= 0 && p < 1, name, ": dropout probabilities must be in [0, 1), got ", p);
}

}  // namespace

// ---- config ---------------------------------------------------------------------------

GPT2Config GPT2Config::from_json(const std::string& text, const std::string& name) {
  const hf::json j = hf::parse_config(text, name, "gpt2");
  GPT2Config c;
  c.vocab_size = hf::value<int64_t>(j, "vocab_size", c.vocab_size, name);
  c.n_positions = hf::value<int64_t>(j, "n_positions", c.n_positions, name);
  c.n_embd = hf::value<int64_t>(j, "n_embd", c.n_embd, name);
  c.n_layer = hf::value<int64_t>(j, "n_layer", c.n_layer, name);
  c.n_head = hf::value<int64_t>(j, "n_head", c.n_head, name);
  if (j.contains("n_inner") && !j.at("n_inner").is_null()) c.n_inner = hf::value<int64_t>(j, "n_inner", 0, name);
  c.activation_function = hf::value<std::string>(j, "activation_function", c.activation_function, name);
  c.resid_pdrop = hf::value<double>(j, "resid_pdrop", c.resid_pdrop, name);
  c.embd_pdrop = hf::value<double>(j, "embd_pdrop", c.embd_pdrop, name);
  c.attn_pdrop = hf::value<double>(j, "attn_pdrop", c.attn_pdrop, name);
  c.layer_norm_epsilon = hf::value<double>(j, "layer_norm_epsilon", c.layer_norm_epsilon, name);
  c.scale_attn_weights = hf::value<bool>(j, "scale_attn_weights", c.scale_attn_weights, name);
  c.scale_attn_by_inverse_layer_idx =
      hf::value<bool>(j, "scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx, name);
  c.tie_word_embeddings = hf::value<bool>(j, "tie_word_embeddings", c.tie_word_embeddings, name);
  c.bos_token_id = hf::value<int64_t>(j, "bos_token_id", c.bos_token_id, name);
  c.eos_token_id = hf::value<int64_t>(j, "eos_token_id", c.eos_token_id, name);
  ATTN_CHECK(!hf::value<bool>(j, "reorder_and_upcast_attn", false, name), name,
             ": reorder_and_upcast_attn is not supported (attn computes attention in float32 throughout)");
  ATTN_CHECK(!hf::value<bool>(j, "add_cross_attention", false, name), name,
             ": add_cross_attention (GPT-2 as a decoder of an encoder) is not supported");
  check_config(c, name);
  return c;
}

GPT2Config GPT2Config::from_json_file(const std::string& path) {
  std::ifstream f(path);
  ATTN_CHECK(f.good(), "GPT2Config: cannot open ", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return from_json(ss.str(), path);
}

std::string GPT2Config::to_json() const {
  hf::json j = {{"model_type", "gpt2"},
                {"architectures", {"GPT2LMHeadModel"}},
                {"vocab_size", vocab_size},
                {"n_positions", n_positions},
                {"n_ctx", n_positions},
                {"n_embd", n_embd},
                {"n_layer", n_layer},
                {"n_head", n_head},
                {"n_inner", n_inner ? hf::json(*n_inner) : hf::json(nullptr)},
                {"activation_function", activation_function},
                {"resid_pdrop", resid_pdrop},
                {"embd_pdrop", embd_pdrop},
                {"attn_pdrop", attn_pdrop},
                {"layer_norm_epsilon", layer_norm_epsilon},
                {"initializer_range", 0.02},
                {"scale_attn_weights", scale_attn_weights},
                {"scale_attn_by_inverse_layer_idx", scale_attn_by_inverse_layer_idx},
                {"reorder_and_upcast_attn", false},
                {"tie_word_embeddings", tie_word_embeddings},
                {"use_cache", true},
                {"bos_token_id", bos_token_id},
                {"eos_token_id", eos_token_id}};
  return j.dump(2) + "\n";
}

// ---- modules --------------------------------------------------------------------------

Conv1D::Conv1D(int64_t nf, int64_t nx) : Module("Conv1D") {
  weight = randn({nx, nf}) * 0.02;  // GPT-2: normal(std=0.02)
  bias = zeros({nf});
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}

Tensor Conv1D::forward(const Tensor& x) const { return F::linear(x, weight.t(), bias); }

std::string Conv1D::extra_repr() const {
  return "nf=" + std::to_string(weight.size(1)) + ", nx=" + std::to_string(weight.size(0));
}

GPT2Attention::GPT2Attention(const GPT2Config& c, int64_t layer_idx)
    : Module("GPT2Attention"),
      c_attn(3 * c.n_embd, c.n_embd),
      c_proj(c.n_embd, c.n_embd),
      resid_dropout(nn::DropoutOptions(c.resid_pdrop)),
      heads_(c.n_head),
      layer_idx_(layer_idx),
      attn_pdrop_(c.attn_pdrop) {
  const double D = static_cast<double>(c.n_embd / c.n_head);
  scale_ = (c.scale_attn_weights ? 1.0 / std::sqrt(D) : 1.0) /
           (c.scale_attn_by_inverse_layer_idx ? static_cast<double>(layer_idx + 1) : 1.0);
  register_module("c_attn", c_attn);
  register_module("c_proj", c_proj);
  register_module("resid_dropout", resid_dropout);
}

Tensor GPT2Attention::forward(const Tensor& x, const Tensor& key_mask, nn::KVCache* cache) const {
  const int64_t B = x.size(0), T = x.size(1), E = x.size(2), H = heads_, D = E / H;
  Tensor qkv = c_attn.forward(x).reshape({B, T, 3, H, D});
  Tensor q = qkv.select(2, 0).transpose(1, 2), k = qkv.select(2, 1).transpose(1, 2),
         v = qkv.select(2, 2).transpose(1, 2);  // (B, H, T, D)
  if (cache) {
    cache->append(k, v);
    k = cache->keys(), v = cache->values();
  }
  F::SdpaOptions o;
  o.is_causal(true).causal_align(F::CausalAlign::BottomRight).scale(scale_);
  if (key_mask.defined()) o.attn_mask(key_mask.reshape({B, 1, 1, key_mask.size(1)}));
  if (is_training() && attn_pdrop_ > 0) o.dropout_p(attn_pdrop_);
  Tensor a = F::scaled_dot_product_attention(q, k, v, o);  // (B, H, T, D)
  return resid_dropout.forward(c_proj.forward(a.transpose(1, 2).reshape({B, T, E})));
}

GPT2MLP::GPT2MLP(const GPT2Config& c)
    : Module("GPT2MLP"),
      c_fc(c.inner(), c.n_embd),
      c_proj(c.n_embd, c.inner()),
      dropout(nn::DropoutOptions(c.resid_pdrop)),
      act_(c.activation_function) {
  register_module("c_fc", c_fc);
  register_module("c_proj", c_proj);
  register_module("dropout", dropout);
}

Tensor GPT2MLP::forward(const Tensor& x) const {
  return dropout.forward(c_proj.forward(hf::activation(c_fc.forward(x), act_)));
}

GPT2Block::GPT2Block(const GPT2Config& c, int64_t layer_idx)
    : Module("GPT2Block"),
      ln_1(nn::LayerNormOptions({c.n_embd}).eps(c.layer_norm_epsilon)),
      attn(c, layer_idx),
      ln_2(nn::LayerNormOptions({c.n_embd}).eps(c.layer_norm_epsilon)),
      mlp(c) {
  register_module("ln_1", ln_1);
  register_module("attn", attn);
  register_module("ln_2", ln_2);
  register_module("mlp", mlp);
}

Tensor GPT2Block::forward(const Tensor& input, const Tensor& key_mask, nn::KVCache* cache) const {
  Tensor x = input + attn.forward(ln_1.forward(input), key_mask, cache);
  return x + mlp.forward(ln_2.forward(x));
}

GPT2Model::GPT2Model(const GPT2Config& config)
    : Module("GPT2Model"),
      wte(nn::EmbeddingOptions((check_config(config, "GPT2Config"), config.vocab_size), config.n_embd)),
      wpe(nn::EmbeddingOptions(config.n_positions, config.n_embd)),
      drop(nn::DropoutOptions(config.embd_pdrop)),
      ln_f(nn::LayerNormOptions({config.n_embd}).eps(config.layer_norm_epsilon)),
      config_(config) {
  {
    NoGradGuard ng;
    wte.weight.mul_(0.02);  // GPT-2: normal(std=0.02); the position table std 0.01
    wpe.weight.mul_(0.01);
  }
  register_module("wte", wte);
  register_module("wpe", wpe);
  register_module("drop", drop);
  for (int64_t i = 0; i < config.n_layer; ++i) h.emplace_back<GPT2Block>(config, i);
  register_module("h", h);
  register_module("ln_f", ln_f);
}

Tensor GPT2Model::forward(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids,
                          GPT2Cache* cache) const {
  ATTN_CHECK(input_ids.defined() && input_ids.dim() == 2 && input_ids.dtype() == kInt64, kOp,
             ": input_ids must be int64 (B, T), got ",
             input_ids.defined() ? std::string(dtype_name(input_ids.dtype())) + " " + shape_str(input_ids.shape())
                                 : std::string("an undefined tensor"));
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const int64_t past = cache ? cache->length() : 0;
  ATTN_CHECK(T > 0, kOp, ": input_ids has no steps (T = 0)");
  ATTN_CHECK(past + T <= config_.n_positions, kOp, ": ", past + T, " positions (", past, " cached + ", T,
             " new) exceed n_positions ", config_.n_positions);
  hf::check_index_range(input_ids, config_.vocab_size, kOp, "input_ids");
  if (cache && !cache->layers.empty())
    ATTN_CHECK(cache->layers.size() == h.size(), kOp, ": the cache has ", cache->layers.size(), " layers, the model ",
               h.size());
  if (cache && cache->layers.empty()) cache->layers.resize(h.size());
  Tensor pos = position_ids;
  if (!pos.defined()) {
    pos = arange(past, past + T).unsqueeze(0);
  } else {
    const bool rows = pos.dim() == 2 && pos.size(1) == T && (pos.size(0) == B || pos.size(0) == 1);
    ATTN_CHECK(pos.dtype() == kInt64 && ((pos.dim() == 1 && pos.size(0) == T) || rows),
               kOp, ": position_ids must be int64 (B, T) or (T) with T = ", T, ", got ",
               dtype_name(pos.dtype()), " ", shape_str(pos.shape()));
    hf::check_index_range(pos, config_.n_positions, kOp, "position_ids");
    if (pos.dim() == 1) pos = pos.unsqueeze(0);
  }
  Tensor key_mask;
  if (attention_mask.defined()) {
    ATTN_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == past + T, kOp,
               ": attention_mask must be (B, past + T) = (", B, ", ", past + T, "), got ",
               shape_str(attention_mask.shape()));
    key_mask = ne(attention_mask.to(kFloat32), scalar_tensor(0.0));
  }
  Tensor x = drop.forward(wte.forward(input_ids) + wpe.forward(pos));
  for (size_t i = 0; i < h.size(); ++i)
    x = h.at<GPT2Block>(i).forward(x, key_mask, cache ? &cache->layers[i] : nullptr);
  return ln_f.forward(x);
}

GPT2LMHeadModel::GPT2LMHeadModel(const GPT2Config& config) : Module("GPT2LMHeadModel"), transformer(config) {
  register_module("transformer", transformer);
  if (!config.tie_word_embeddings) {
    lm_head = std::make_unique<nn::Linear>(nn::LinearOptions(config.n_embd, config.vocab_size).bias(false));
    register_module("lm_head", *lm_head);
  }
}

Tensor GPT2LMHeadModel::head(const Tensor& hidden) const {
  return lm_head ? lm_head->forward(hidden) : F::linear(hidden, transformer.wte.weight);
}

Tensor GPT2LMHeadModel::forward(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids,
                                GPT2Cache* cache) const {
  return head(transformer.forward(input_ids, attention_mask, position_ids, cache));
}

void GPT2LMHeadModel::load_hf_state_dict(const nn::StateDict& state, const std::string& source) {
  nn::StateDict s;
  auto ends_with = [](const std::string& k, const std::string& e) {
    return k.size() >= e.size() && k.compare(k.size() - e.size(), e.size(), e) == 0;
  };
  for (const auto& [key, t] : state) {
    if (ends_with(key, ".attn.bias") || ends_with(key, ".attn.masked_bias")) continue;  // old causal-mask buffers
    if (key == "lm_head.weight") {
      if (!lm_head) continue;  // tied: the head is wte
      s[key] = t;
      continue;
    }
    s[key.rfind("transformer.", 0) == 0 ? key : "transformer." + key] = t;
  }
  try {
    load_state_dict(s);
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
}

std::unique_ptr<GPT2LMHeadModel> GPT2LMHeadModel::from_pretrained(const std::string& dir) {
  auto model =
      std::make_unique<GPT2LMHeadModel>(GPT2Config::from_json(hf::read_config_text(dir), dir + "/config.json"));
  std::string source;
  io::TensorMap weights = hf::read_weights(dir, source);
  model->load_hf_state_dict(weights, source);
  return model;
}

void GPT2LMHeadModel::save_pretrained(const std::string& dir) const {
  hf::save(dir, config().to_json(), state_dict());
}

}  // namespace attn::models
