// GPT-2 and BERT in Hugging Face's layouts against torch implementations
// written from the published definitions (tests/parity/gen_lm.py writes
// model directories with random weights at test time): logits, hidden
// states and the pooler output at every non-padding position within 1e-4 of
// the largest reference entry (float32 against float64), 32 greedy tokens
// through the KV cache, the gradients of a fine-tuning loss, the cache
// against full recomputation, and the errors of bad directories and inputs.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "support/op_table.h"

namespace attn {
namespace {

namespace fs = std::filesystem;
using models::BertForMaskedLM;
using models::GPT2LMHeadModel;

std::string dir() {
  const char* d = std::getenv("ATTN_LM_DIR");
  return d ? d : "";
}

const io::TensorMap& cases() {
  static const io::TensorMap m = io::load_safetensors(dir() + "/cases.safetensors");
  return m;
}
Tensor T(const std::string& key) {
  auto it = cases().find(key);
  if (it == cases().end()) throw std::runtime_error("no " + key + " in cases.safetensors");
  return it->second;
}
bool has(const std::string& key) { return cases().count(key) > 0; }

double max_abs(const Tensor& t) { return amax(abs(t.to(kFloat64)).reshape({-1}), {0}).item<double>(); }

// Within rel * max |ref| at the positions where mask (B, T) is 1.
void expect_close(const std::string& what, const Tensor& got, const Tensor& ref, const Tensor& mask, double rel) {
  Tensor m = mask.to(kFloat64);
  while (m.dim() < ref.dim()) m = m.unsqueeze(-1);
  Tensor g = got.to(kFloat64) * m, r = ref.to(kFloat64) * m;
  const double atol = rel * max_abs(r);
  testing::Comparison c = testing::compare(what, g, r, 0.0, atol);
  EXPECT_TRUE(c.ok) << c.message;
  std::printf("%s: max error %.3g of max |ref| %.3g (%.2g of the tolerance)\n", what.c_str(), c.max_abs, max_abs(r),
              c.max_abs / atol);
}

Tensor opt(const std::string& key) { return has(key) ? T(key) : Tensor(); }

TEST(GPT2, MatchesReference) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_LM_DIR is not set (ctest sets it)";
  int n = 0;
  for (const char* key : {"gpt2_a", "gpt2_b", "gpt2_c"}) {
    SCOPED_TRACE(key);
    auto model = GPT2LMHeadModel::from_pretrained(dir() + "/" + key);
    model->eval();
    NoGradGuard ng;
    const std::string k(key);
    Tensor mask = T(k + ".attention_mask");
    Tensor logits = model->forward(T(k + ".input_ids"), mask, opt(k + ".position_ids"));
    Tensor hidden = model->transformer.forward(T(k + ".input_ids"), mask, opt(k + ".position_ids"));
    expect_close(k + " logits", logits, T(k + ".logits"), mask, 1e-4);
    expect_close(k + " hidden", hidden, T(k + ".hidden"), mask, 1e-4);
    ++n;
  }
  EXPECT_EQ(n, 3);
}

TEST(GPT2, TiedAndUntiedHeads) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_LM_DIR is not set (ctest sets it)";
  auto tied = GPT2LMHeadModel::from_pretrained(dir() + "/gpt2_a");
  EXPECT_FALSE(tied->lm_head);
  EXPECT_EQ(tied->state_dict().count("lm_head.weight"), 0u);
  auto untied = GPT2LMHeadModel::from_pretrained(dir() + "/gpt2_b");
  ASSERT_TRUE(untied->lm_head);
  EXPECT_EQ(untied->config().activation_function, "gelu");
  EXPECT_TRUE(untied->config().scale_attn_by_inverse_layer_idx);
}

TEST(GPT2, GreedyThroughTheCache) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_LM_DIR is not set (ctest sets it)";
  auto model = GPT2LMHeadModel::from_pretrained(dir() + "/gpt2_a");
  model->eval();
  NoGradGuard ng;
  models::GPT2Cache cache;
  Tensor ids = T("gpt2_a.prompt");
  Tensor ref = T("gpt2_a.greedy");
  std::printf("gpt2_a greedy: smallest gap between the two best logits %.3g\n", T("gpt2_a.greedy_min_gap").item<double>());
  std::vector<int64_t> got;
  for (int step = 0; step < 32; ++step) {
    Tensor logits = model->forward(ids, {}, {}, &cache);
    const int64_t next = argmax(logits.select(1, logits.size(1) - 1).reshape({-1})).item<int64_t>();
    got.push_back(next);
    ids = full({1, 1}, static_cast<double>(next), kInt64);
  }
  EXPECT_EQ(cache.length(), 5 + 31);
  std::vector<int64_t> want(ref.numel());
  for (int64_t i = 0; i < ref.numel(); ++i) want[i] = ref.contiguous().data<int64_t>()[i];
  EXPECT_EQ(got, want);
}

TEST(GPT2, CacheEqualsFullRecomputation) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_LM_DIR is not set (ctest sets it)";
  auto model = GPT2LMHeadModel::from_pretrained(dir() + "/gpt2_b");
  model->eval();
  NoGradGuard ng;
  Generator g(3);
  const int64_t B = 2, Tn = 14;
  Tensor ids = randint(0, model->config().vocab_size, {B, Tn}, kInt64, &g);
  Tensor full_logits = model->forward(ids);
  models::GPT2Cache cache;
  // Prefill 5, then 1, 3 and 5 steps at a time.
  int64_t at = 0;
  for (int64_t n : {5, 1, 3, 5}) {
    Tensor part = model->forward(ids.narrow(1, at, n), {}, {}, &cache);
    expect_close("cached steps " + std::to_string(at) + ".." + std::to_string(at + n), part,
                 full_logits.narrow(1, at, n), ones({B, n}), 1e-5);
    at += n;
  }
  EXPECT_EQ(cache.length(), Tn);
}

TEST(GPT2, FineTuningGradients) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_LM_DIR is not set (ctest sets it)";
  auto model = GPT2LMHeadModel::from_pretrained(dir() + "/gpt2_a");
  model->eval();
  Tensor ids = T("gpt2_a.input_ids"), mask = T("gpt2_a.attention_mask");
  Tensor logits = model->forward(ids, mask);
  const int64_t Tn = ids.size(1), V = logits.size(2);
  // Next-token cross-entropy at unpadded positions (-100 elsewhere).
  Tensor labels = ids.narrow(1, 1, Tn - 1).clone();
  {
    NoGradGuard ng;
    Tensor pad = eq(mask.narrow(1, 1, Tn - 1), scalar_tensor(0.0, kInt64));
    labels = where(pad, full(labels.shape(), -100.0, kInt64), labels);
  }
  Tensor loss = F::cross_entropy(logits.narrow(1, 0, Tn - 1).reshape({-1, V}), labels.reshape({-1}),
                                 F::CrossEntropyFuncOptions().ignore_index(-100));
  loss.backward();
  EXPECT_NEAR(loss.item<float>(), T("gpt2_a.loss").item<double>(), 1e-4 * std::abs(T("gpt2_a.loss").item<double>()));
  const auto params = model->named_parameters();
  int checked = 0;
  for (const auto& [name, p] : params) {
    const std::string key = "gpt2_a.grad." + name;
    if (!has(key)) continue;
    ASSERT_TRUE(p.grad().defined()) << name;
    expect_close("d loss / d " + name, p.grad(), T(key), ones({1}), 1e-4);
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

TEST(Bert, MatchesReference) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_LM_DIR is not set (ctest sets it)";
  int n = 0, pooled = 0, mlm = 0;
  for (const char* key : {"bert_a", "bert_b", "bert_c"}) {
    SCOPED_TRACE(key);
    auto model = BertForMaskedLM::from_pretrained(dir() + "/" + key);
    model->eval();
    NoGradGuard ng;
    const std::string k(key);
    Tensor mask = T(k + ".attention_mask");
    models::BertOutputs out = model->forward(T(k + ".input_ids"), mask, T(k + ".token_type_ids"));
    expect_close(k + " last_hidden_state", out.last_hidden_state, T(k + ".last_hidden_state"), mask, 1e-4);
    EXPECT_EQ(out.pooler_output.defined(), has(k + ".pooler_output"));
    if (has(k + ".pooler_output")) {
      expect_close(k + " pooler_output", out.pooler_output, T(k + ".pooler_output"), ones({1}), 1e-4);
      ++pooled;
    }
    EXPECT_EQ(out.logits.defined(), has(k + ".logits"));
    if (has(k + ".logits")) {
      expect_close(k + " MLM logits", out.logits, T(k + ".logits"), mask, 1e-4);
      ++mlm;
    }
    ++n;
  }
  EXPECT_EQ(n, 3);
  EXPECT_EQ(pooled, 2);
  EXPECT_EQ(mlm, 2);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

void write(const fs::path& p, const std::string& s) {
  std::ofstream f(p);
  f << s;
}

TEST(LanguageModels, Errors) {
  const fs::path d = fs::temp_directory_path() / ("attn_lm_err_" + std::to_string(::getpid()));
  fs::create_directories(d);
  EXPECT_NE(error_of([&] { GPT2LMHeadModel::from_pretrained(d.string()); }).find("has no config.json"),
            std::string::npos);
  EXPECT_NE(error_of([&] { GPT2LMHeadModel::from_pretrained((d / "nothing").string()); }).find("not a directory"),
            std::string::npos);
  write(d / "config.json", R"({"model_type": "llama"})");
  EXPECT_NE(error_of([&] { GPT2LMHeadModel::from_pretrained(d.string()); }).find("model_type is \"llama\""),
            std::string::npos);
  write(d / "config.json", R"({"model_type": "gpt2", "reorder_and_upcast_attn": true})");
  EXPECT_NE(error_of([&] { GPT2LMHeadModel::from_pretrained(d.string()); }).find("reorder_and_upcast_attn"),
            std::string::npos);
  write(d / "config.json", R"({"model_type": "gpt2", "activation_function": "swish"})");
  EXPECT_NE(error_of([&] { GPT2LMHeadModel::from_pretrained(d.string()); }).find("\"swish\" is not supported"),
            std::string::npos);
  write(d / "config.json", R"({"model_type": "gpt2", "n_embd": 10, "n_head": 3})");
  EXPECT_NE(error_of([&] { GPT2LMHeadModel::from_pretrained(d.string()); }).find("not divisible"), std::string::npos);
  write(d / "config.json", R"({"model_type": "gpt2", "n_embd": "wide"})");
  EXPECT_NE(error_of([&] { GPT2LMHeadModel::from_pretrained(d.string()); }).find("\"n_embd\" has the wrong type"),
            std::string::npos);
  write(d / "config.json", R"({"model_type": "gpt2", "vocab_size": 50, "n_positions": 8, "n_embd": 8, "n_layer": 1, "n_head": 2})");
  EXPECT_NE(error_of([&] { GPT2LMHeadModel::from_pretrained(d.string()); }).find("has no weights"), std::string::npos);
  // Missing keys name the file.
  io::save_safetensors((d / "model.safetensors").string(), {{"wte.weight", zeros({50, 8})}});
  const std::string missing = error_of([&] { GPT2LMHeadModel::from_pretrained(d.string()); });
  EXPECT_NE(missing.find("model.safetensors"), std::string::npos) << missing;
  EXPECT_NE(missing.find("missing"), std::string::npos) << missing;
  write(d / "config.json", R"({"model_type": "bert", "position_embedding_type": "relative_key"})");
  EXPECT_NE(error_of([&] { BertForMaskedLM::from_pretrained(d.string()); }).find("relative_key"), std::string::npos);
  fs::remove_all(d);

  models::GPT2Config c;
  c.vocab_size = 20, c.n_positions = 8, c.n_embd = 8, c.n_layer = 1, c.n_head = 2;
  GPT2LMHeadModel m(c);
  m.eval();
  NoGradGuard ng;
  EXPECT_NE(error_of([&] { m.forward(full({1, 3}, 20.0, kInt64)); }).find("input_ids must be in [0, 20)"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m.forward(zeros({1, 9}, kInt64)); }).find("exceed n_positions 8"), std::string::npos);
  EXPECT_NE(error_of([&] { m.forward(zeros({1, 3})); }).find("input_ids must be int64"), std::string::npos);
  EXPECT_NE(error_of([&] { m.forward(zeros({1, 3}, kInt64), ones({1, 2}, kInt64)); }).find("attention_mask must be"),
            std::string::npos);
  models::GPT2Cache cache;
  m.forward(zeros({1, 6}, kInt64), {}, {}, &cache);
  EXPECT_NE(error_of([&] { m.forward(zeros({1, 3}, kInt64), {}, {}, &cache); }).find("6 cached + 3 new"),
            std::string::npos);
}

TEST(GPT2, SavePretrainedRoundTrip) {
  models::GPT2Config c;
  c.vocab_size = 30, c.n_positions = 16, c.n_embd = 16, c.n_layer = 2, c.n_head = 4;
  GPT2LMHeadModel m(c);
  m.eval();
  const fs::path d = fs::temp_directory_path() / ("attn_gpt2_save_" + std::to_string(::getpid()));
  m.save_pretrained(d.string());
  const io::SafetensorsFile f = io::read_safetensors((d / "model.safetensors").string());
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.tensors.count("transformer.wte.weight"), 1u);
  EXPECT_EQ(f.tensors.count("lm_head.weight"), 0u);
  auto again = GPT2LMHeadModel::from_pretrained(d.string());
  again->eval();
  NoGradGuard ng;
  Tensor ids = randint(0, 30, {2, 7}, kInt64);
  EXPECT_TRUE(equal(again->forward(ids), m.forward(ids)));
  fs::remove_all(d);
}

}  // namespace
}  // namespace attn
