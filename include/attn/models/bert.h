// BERT (Devlin et al. 2019) in Hugging Face's layout: BertConfig's keys in
// config.json and BertModel / BertForMaskedLM's state_dict keys:
//   bert.embeddings.{word_embeddings, position_embeddings,
//   token_type_embeddings, LayerNorm}, bert.encoder.layer.N.{attention.self.
//   {query, key, value}, attention.output.{dense, LayerNorm},
//   intermediate.dense, output.{dense, LayerNorm}}, bert.pooler.dense,
//   cls.predictions.{transform.dense, transform.LayerNorm, bias} (the decoder
//   tied to the word embeddings).
//
//   auto bert = attn::models::BertForMaskedLM::from_pretrained("bert/");
//   bert->eval();
//   attn::models::BertOutputs out = bert->forward(ids, mask, types);  // out.last_hidden_state, ...
//
// Loading accepts keys with or without the "bert." prefix and the older
// LayerNorm.gamma / LayerNorm.beta names; it ignores the
// embeddings.position_ids buffer and the next-sentence head
// (cls.seq_relationship). The pooler and the MLM head exist when the file
// has their weights.
#pragma once

#include <memory>
#include <string>

#include "attn/nn.h"

namespace attn::models {

struct BertConfig {
  int64_t vocab_size = 30522, hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12,
          intermediate_size = 3072, max_position_embeddings = 512, type_vocab_size = 2, pad_token_id = 0;
  std::string hidden_act = "gelu";  // gelu (erf), gelu_new / gelu_pytorch_tanh (tanh), relu
  double hidden_dropout_prob = 0.1, attention_probs_dropout_prob = 0.1, layer_norm_eps = 1e-12;

  // Hugging Face's BertConfig keys; unknown keys are ignored; a
  // position_embedding_type other than "absolute", is_decoder and another
  // model_type are refused. attn::Error naming the file.
  static BertConfig from_json(const std::string& text, const std::string& name = "config.json");
  std::string to_json() const;
};

struct BertOutputs {
  Tensor last_hidden_state;  // (B, T, hidden)
  Tensor pooler_output;      // (B, hidden), when the model has a pooler
  Tensor logits;             // (B, T, vocab), when it has the MLM head
};

// A module that only names its children and tensors, for Hugging Face's
// nesting (encoder.layer, pooler.dense, cls.predictions.transform).
class Submodules : public nn::Module {
 public:
  explicit Submodules(std::string type) : Module(std::move(type)) {}
  void add(const std::string& name, nn::Module& child) { add_child(name, &child); }
  void add(const std::string& name, Tensor& parameter) { register_parameter(name, parameter); }
};

class BertEmbeddings : public nn::Module {
 public:
  explicit BertEmbeddings(const BertConfig& c);
  Tensor forward(const Tensor& input_ids, const Tensor& token_type_ids, const Tensor& position_ids) const;
  nn::Embedding word_embeddings, position_embeddings, token_type_embeddings;
  nn::LayerNorm LayerNorm;
  nn::Dropout dropout;
};

class BertSelfAttention : public nn::Module {
 public:
  explicit BertSelfAttention(const BertConfig& c);
  Tensor forward(const Tensor& x, const Tensor& key_mask) const;  // key_mask (B, 1, 1, T) bool, true = attend
  nn::Linear query, key, value;

 private:
  int64_t heads_;
  double dropout_;
};

// dense, dropout, then LayerNorm(. + residual): BertSelfOutput and BertOutput.
class BertResidualOutput : public nn::Module {
 public:
  BertResidualOutput(const char* type, int64_t in, int64_t hidden, const BertConfig& c);
  Tensor forward(const Tensor& h, const Tensor& residual) const;
  nn::Linear dense;
  nn::LayerNorm LayerNorm;
  nn::Dropout dropout;
};

class BertAttention : public nn::Module {
 public:
  explicit BertAttention(const BertConfig& c);
  Tensor forward(const Tensor& x, const Tensor& key_mask) const;
  BertSelfAttention self;
  BertResidualOutput output;
};

class BertIntermediate : public nn::Module {
 public:
  explicit BertIntermediate(const BertConfig& c);
  Tensor forward(const Tensor& x) const;  // act(dense(x))
  nn::Linear dense;

 private:
  std::string act_;
};

class BertLayer : public nn::Module {
 public:
  explicit BertLayer(const BertConfig& c);
  Tensor forward(const Tensor& x, const Tensor& key_mask) const;
  BertAttention attention;
  BertIntermediate intermediate;
  BertResidualOutput output;
};

class BertModel : public nn::Module {
 public:
  BertModel(const BertConfig& config, bool add_pooling_layer = true);
  // input_ids int64 (B, T); attention_mask (B, T), 1 = attend (any integer,
  // bool or float dtype); token_type_ids int64 (B, T), default 0;
  // position_ids int64 (B, T) or (T), default 0..T-1.
  BertOutputs forward(const Tensor& input_ids, const Tensor& attention_mask = {}, const Tensor& token_type_ids = {},
                      const Tensor& position_ids = {}) const;
  const BertConfig& config() const { return config_; }
  bool has_pooler() const { return pooler_dense != nullptr; }

  BertEmbeddings embeddings;
  Submodules encoder{"BertEncoder"};
  nn::ModuleList layer;  // encoder.layer
  Submodules pooler{"BertPooler"};
  std::unique_ptr<nn::Linear> pooler_dense;  // pooler.dense

 private:
  BertConfig config_;
};

// BertModel with the masked-language-model head (cls.predictions), its
// decoder tied to the word embeddings.
class BertForMaskedLM : public nn::Module {
 public:
  BertForMaskedLM(const BertConfig& config, bool add_pooling_layer = false, bool add_mlm_head = true);
  BertOutputs forward(const Tensor& input_ids, const Tensor& attention_mask = {}, const Tensor& token_type_ids = {},
                      const Tensor& position_ids = {}) const;
  const BertConfig& config() const { return bert.config(); }
  bool has_mlm_head() const { return transform_dense != nullptr; }

  // A Hugging Face directory (config.json, model.safetensors or
  // pytorch_model.bin); the pooler and the MLM head are built when the
  // weights hold them.
  static std::unique_ptr<BertForMaskedLM> from_pretrained(const std::string& dir);
  void load_hf_state_dict(const nn::StateDict& state, const std::string& source = "state_dict");

  BertModel bert;
  Submodules cls{"BertOnlyMLMHead"}, predictions{"BertLMPredictionHead"}, transform{"BertPredictionHeadTransform"};
  std::unique_ptr<nn::Linear> transform_dense;
  std::unique_ptr<nn::LayerNorm> transform_norm;
  Tensor bias;  // cls.predictions.bias (vocab)
};

}  // namespace attn::models
