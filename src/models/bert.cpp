// BERT in Hugging Face's layout (see attn/models/bert.h), built from attn's
// nn modules and the fused attention.
#include "attn/models/bert.h"

#include <cmath>

#include "attn/attention.h"
#include "attn/autograd.h"
#include "attn/error.h"
#include "models/hf.h"

namespace attn::models {

namespace {

constexpr const char* kOp = "BERT";

nn::LayerNormOptions norm(const BertConfig& c) { return nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps); }

// Linear layers and embeddings ~ N(0, 0.02), as BERT's initializer_range.
void init_normal(Tensor& w) {
  NoGradGuard ng;
  w.copy_(randn(w.shape()) * 0.02);
}

}  // namespace

BertConfig BertConfig::from_json(const std::string& text, const std::string& name) {
  const hf::json j = hf::parse_config(text, name, "bert");
  BertConfig c;
  c.vocab_size = hf::value<int64_t>(j, "vocab_size", c.vocab_size, name);
  c.hidden_size = hf::value<int64_t>(j, "hidden_size", c.hidden_size, name);
  c.num_hidden_layers = hf::value<int64_t>(j, "num_hidden_layers", c.num_hidden_layers, name);
  c.num_attention_heads = hf::value<int64_t>(j, "num_attention_heads", c.num_attention_heads, name);
  c.intermediate_size = hf::value<int64_t>(j, "intermediate_size", c.intermediate_size, name);
  c.max_position_embeddings = hf::value<int64_t>(j, "max_position_embeddings", c.max_position_embeddings, name);
  c.type_vocab_size = hf::value<int64_t>(j, "type_vocab_size", c.type_vocab_size, name);
  c.pad_token_id = hf::value<int64_t>(j, "pad_token_id", c.pad_token_id, name);
  c.hidden_act = hf::value<std::string>(j, "hidden_act", c.hidden_act, name);
  c.hidden_dropout_prob = hf::value<double>(j, "hidden_dropout_prob", c.hidden_dropout_prob, name);
  c.attention_probs_dropout_prob =
      hf::value<double>(j, "attention_probs_dropout_prob", c.attention_probs_dropout_prob, name);
  c.layer_norm_eps = hf::value<double>(j, "layer_norm_eps", c.layer_norm_eps, name);
  const std::string pos = hf::value<std::string>(j, "position_embedding_type", "absolute", name);
  ATTN_CHECK(pos == "absolute", name, ": position_embedding_type \"", pos,
             "\" is not supported (only \"absolute\")");
  ATTN_CHECK(!hf::value<bool>(j, "is_decoder", false, name) && !hf::value<bool>(j, "add_cross_attention", false, name),
             name, ": BERT as a decoder (is_decoder, add_cross_attention) is not supported");
  ATTN_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.num_hidden_layers >= 0 && c.num_attention_heads > 0 &&
                 c.intermediate_size > 0 && c.max_position_embeddings > 0 && c.type_vocab_size > 0,
             name, ": sizes must be positive");
  ATTN_CHECK(c.hidden_size % c.num_attention_heads == 0, name, ": hidden_size ", c.hidden_size,
             " is not divisible by num_attention_heads ", c.num_attention_heads);
  const std::string& a = c.hidden_act;
  ATTN_CHECK(a == "gelu" || a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "relu", name, ": hidden_act \"", a,
             "\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)");
  return c;
}

std::string BertConfig::to_json() const {
  const hf::json j = {{"model_type", "bert"},
                      {"architectures", {"BertForMaskedLM"}},
                      {"vocab_size", vocab_size},
                      {"hidden_size", hidden_size},
                      {"num_hidden_layers", num_hidden_layers},
                      {"num_attention_heads", num_attention_heads},
                      {"intermediate_size", intermediate_size},
                      {"hidden_act", hidden_act},
                      {"hidden_dropout_prob", hidden_dropout_prob},
                      {"attention_probs_dropout_prob", attention_probs_dropout_prob},
                      {"max_position_embeddings", max_position_embeddings},
                      {"type_vocab_size", type_vocab_size},
                      {"layer_norm_eps", layer_norm_eps},
                      {"pad_token_id", pad_token_id},
                      {"position_embedding_type", "absolute"}};
  return j.dump(2) + "\n";
}

BertEmbeddings::BertEmbeddings(const BertConfig& c)
    : Module("BertEmbeddings"),
      word_embeddings(nn::EmbeddingOptions(c.vocab_size, c.hidden_size).padding_idx(c.pad_token_id)),
      position_embeddings(nn::EmbeddingOptions(c.max_position_embeddings, c.hidden_size)),
      token_type_embeddings(nn::EmbeddingOptions(c.type_vocab_size, c.hidden_size)),
      LayerNorm(norm(c)),
      dropout(nn::DropoutOptions(c.hidden_dropout_prob)) {
  init_normal(word_embeddings.weight);
  init_normal(position_embeddings.weight);
  init_normal(token_type_embeddings.weight);
  register_module("word_embeddings", word_embeddings);
  register_module("position_embeddings", position_embeddings);
  register_module("token_type_embeddings", token_type_embeddings);
  register_module("LayerNorm", LayerNorm);
  register_module("dropout", dropout);
}

Tensor BertEmbeddings::forward(const Tensor& ids, const Tensor& types, const Tensor& pos) const {
  Tensor x = word_embeddings.forward(ids) + position_embeddings.forward(pos) + token_type_embeddings.forward(types);
  return dropout.forward(LayerNorm.forward(x));
}

BertSelfAttention::BertSelfAttention(const BertConfig& c)
    : Module("BertSelfAttention"),
      query(c.hidden_size, c.hidden_size),
      key(c.hidden_size, c.hidden_size),
      value(c.hidden_size, c.hidden_size),
      heads_(c.num_attention_heads),
      dropout_(c.attention_probs_dropout_prob) {
  for (nn::Linear* l : {&query, &key, &value}) {
    init_normal(l->weight);
    NoGradGuard ng;
    l->bias.zero_();
  }
  register_module("query", query);
  register_module("key", key);
  register_module("value", value);
}

Tensor BertSelfAttention::forward(const Tensor& x, const Tensor& key_mask) const {
  const int64_t B = x.size(0), T = x.size(1), E = x.size(2), H = heads_, D = E / H;
  auto heads = [&](const Tensor& t) { return t.reshape({B, T, H, D}).transpose(1, 2); };
  F::SdpaOptions o;
  if (key_mask.defined()) o.attn_mask(key_mask);
  if (is_training() && dropout_ > 0) o.dropout_p(dropout_);
  Tensor a =
      F::scaled_dot_product_attention(heads(query.forward(x)), heads(key.forward(x)), heads(value.forward(x)), o);
  return a.transpose(1, 2).reshape({B, T, E});
}

BertResidualOutput::BertResidualOutput(const char* type, int64_t in, int64_t hidden, const BertConfig& c)
    : Module(type), dense(in, hidden), LayerNorm(norm(c)), dropout(nn::DropoutOptions(c.hidden_dropout_prob)) {
  init_normal(dense.weight);
  {
    NoGradGuard ng;
    dense.bias.zero_();
  }
  register_module("dense", dense);
  register_module("LayerNorm", LayerNorm);
  register_module("dropout", dropout);
}

Tensor BertResidualOutput::forward(const Tensor& h, const Tensor& residual) const {
  return LayerNorm.forward(dropout.forward(dense.forward(h)) + residual);
}

BertAttention::BertAttention(const BertConfig& c)
    : Module("BertAttention"), self(c), output("BertSelfOutput", c.hidden_size, c.hidden_size, c) {
  register_module("self", self);
  register_module("output", output);
}

Tensor BertAttention::forward(const Tensor& x, const Tensor& key_mask) const {
  return output.forward(self.forward(x, key_mask), x);
}

BertIntermediate::BertIntermediate(const BertConfig& c)
    : Module("BertIntermediate"), dense(c.hidden_size, c.intermediate_size), act_(c.hidden_act) {
  init_normal(dense.weight);
  {
    NoGradGuard ng;
    dense.bias.zero_();
  }
  register_module("dense", dense);
}

Tensor BertIntermediate::forward(const Tensor& x) const { return hf::activation(dense.forward(x), act_); }

BertLayer::BertLayer(const BertConfig& c)
    : Module("BertLayer"), attention(c), intermediate(c), output("BertOutput", c.intermediate_size, c.hidden_size, c) {
  register_module("attention", attention);
  register_module("intermediate", intermediate);
  register_module("output", output);
}

Tensor BertLayer::forward(const Tensor& x, const Tensor& key_mask) const {
  Tensor a = attention.forward(x, key_mask);
  return output.forward(intermediate.forward(a), a);
}

BertModel::BertModel(const BertConfig& config, bool add_pooling_layer)
    : Module("BertModel"), embeddings(config), config_(config) {
  register_module("embeddings", embeddings);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layer.emplace_back<BertLayer>(config);
  encoder.add("layer", layer);
  register_module("encoder", encoder);
  if (add_pooling_layer) {
    pooler_dense = std::make_unique<nn::Linear>(config.hidden_size, config.hidden_size);
    init_normal(pooler_dense->weight);
    pooler.add("dense", *pooler_dense);
    register_module("pooler", pooler);
  }
}

BertOutputs BertModel::forward(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& token_type_ids,
                               const Tensor& position_ids) const {
  ATTN_CHECK(input_ids.defined() && input_ids.dim() == 2 && input_ids.dtype() == kInt64, kOp,
             ": input_ids must be int64 (B, T), got ",
             input_ids.defined() ? std::string(dtype_name(input_ids.dtype())) + " " + shape_str(input_ids.shape())
                                 : std::string("an undefined tensor"));
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  ATTN_CHECK(T > 0 && T <= config_.max_position_embeddings, kOp, ": T = ", T,
             " must be in [1, max_position_embeddings = ", config_.max_position_embeddings, "]");
  auto check_range = [&](const Tensor& t, const char* what, int64_t n) { hf::check_index_range(t, n, kOp, what); };
  check_range(input_ids, "input_ids", config_.vocab_size);
  Tensor types = token_type_ids.defined() ? token_type_ids : zeros({B, T}, kInt64);
  ATTN_CHECK(types.dtype() == kInt64 && types.shape() == input_ids.shape(), kOp,
             ": token_type_ids must be int64 like input_ids ", shape_str(input_ids.shape()), ", got ",
             dtype_name(types.dtype()), " ", shape_str(types.shape()));
  check_range(types, "token_type_ids", config_.type_vocab_size);
  Tensor pos = position_ids.defined() ? position_ids : arange(T).unsqueeze(0);
  ATTN_CHECK(pos.dtype() == kInt64 && pos.size(-1) == T && pos.dim() <= 2, kOp,
             ": position_ids must be int64 (B, T) or (T), got ", dtype_name(pos.dtype()), " ", shape_str(pos.shape()));
  check_range(pos, "position_ids", config_.max_position_embeddings);
  Tensor key_mask;
  if (attention_mask.defined()) {
    ATTN_CHECK(attention_mask.shape() == input_ids.shape(), kOp, ": attention_mask must be (B, T) = ",
               shape_str(input_ids.shape()), ", got ", shape_str(attention_mask.shape()));
    key_mask = ne(attention_mask.to(kFloat32), scalar_tensor(0.0)).reshape({B, 1, 1, T});
  }
  Tensor x = embeddings.forward(input_ids, types, pos);
  for (size_t i = 0; i < layer.size(); ++i) x = layer.at<BertLayer>(i).forward(x, key_mask);
  BertOutputs out;
  out.last_hidden_state = x;
  if (pooler_dense) out.pooler_output = F::tanh(pooler_dense->forward(x.select(1, 0)));
  return out;
}

BertForMaskedLM::BertForMaskedLM(const BertConfig& config, bool add_pooling_layer, bool add_mlm_head)
    : Module("BertForMaskedLM"), bert(config, add_pooling_layer) {
  register_module("bert", bert);
  if (add_mlm_head) {
    transform_dense = std::make_unique<nn::Linear>(config.hidden_size, config.hidden_size);
    init_normal(transform_dense->weight);
    transform_norm = std::make_unique<nn::LayerNorm>(norm(config));
    bias = zeros({config.vocab_size});
    transform.add("dense", *transform_dense);
    transform.add("LayerNorm", *transform_norm);
    predictions.add("transform", transform);
    predictions.add("bias", bias);
    cls.add("predictions", predictions);
    register_module("cls", cls);
  }
}

BertOutputs BertForMaskedLM::forward(const Tensor& input_ids, const Tensor& attention_mask,
                                     const Tensor& token_type_ids, const Tensor& position_ids) const {
  BertOutputs out = bert.forward(input_ids, attention_mask, token_type_ids, position_ids);
  if (transform_dense) {
    const Tensor t = hf::activation(transform_dense->forward(out.last_hidden_state), config().hidden_act);
    Tensor h = transform_norm->forward(t);
    out.logits = F::linear(h, bert.embeddings.word_embeddings.weight, bias);
  }
  return out;
}

namespace {

// Hugging Face's key variants to BertForMaskedLM's keys; buffers and the
// next-sentence head dropped.
nn::StateDict normalise_bert_keys(const nn::StateDict& state) {
  nn::StateDict s;
  Tensor decoder_bias;
  for (const auto& [key0, t] : state) {
    std::string key = key0;
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"LayerNorm.gamma", "LayerNorm.weight"},
                                   {"LayerNorm.beta", "LayerNorm.bias"}})
      if (key.size() >= from.size() && key.compare(key.size() - from.size(), from.size(), from) == 0)
        key = key.substr(0, key.size() - from.size()) + to;
    if (key.rfind("cls.", 0) != 0 && key.rfind("bert.", 0) != 0) key = "bert." + key;
    if (key == "bert.embeddings.position_ids" || key.rfind("cls.seq_relationship.", 0) == 0 ||
        key == "cls.predictions.decoder.weight")
      continue;
    if (key == "cls.predictions.decoder.bias") {
      decoder_bias = t;
      continue;
    }
    s[key] = t;
  }
  if (decoder_bias.defined() && !s.count("cls.predictions.bias")) s["cls.predictions.bias"] = decoder_bias;
  return s;
}

}  // namespace

void BertForMaskedLM::load_hf_state_dict(const nn::StateDict& state, const std::string& source) {
  try {
    load_state_dict(normalise_bert_keys(state));
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
}

std::unique_ptr<BertForMaskedLM> BertForMaskedLM::from_pretrained(const std::string& dir) {
  const BertConfig config = BertConfig::from_json(hf::read_config_text(dir), dir + "/config.json");
  std::string source;
  const nn::StateDict state = normalise_bert_keys(hf::read_weights(dir, source));
  bool pooler = false, mlm = false;
  for (const auto& [k, t] : state) {
    pooler = pooler || k.rfind("bert.pooler.", 0) == 0;
    mlm = mlm || k.rfind("cls.predictions.", 0) == 0;
  }
  auto model = std::make_unique<BertForMaskedLM>(config, pooler, mlm);
  try {
    model->load_state_dict(state);
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
  return model;
}

}  // namespace attn::models
