// nn unit tests: the module system (names, state_dict, load errors, dtype,
// containers, files), default initialisations, finite-difference gradients of
// every module in float64, train-mode dropout statistics, fully masked
// attention rows, and bad input. PyTorch parity is in test_nn_parity.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <set>

#include <attn/attn.h>

#include "support/module_check.h"

namespace attn {
namespace {

using namespace attn::nn;
using testing::expect_error;

std::vector<std::string> names(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (auto& [n, t] : v) out.push_back(n);
  return out;
}


// ---- Module system -------------------------------------------------------------------
TEST(Module, PyTorchNamesInRegistrationOrder) {
  TransformerEncoderLayer layer(TransformerEncoderLayerOptions(8, 2).dim_feedforward(16));
  std::vector<std::string> want = {
      "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
      "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias", "norm1.weight", "norm1.bias",
      "norm2.weight", "norm2.bias"};
  EXPECT_EQ(names(layer.named_parameters()), want);
  LSTM lstm(LSTMOptions(3, 4).num_layers(2).bidirectional(true));
  auto n = names(lstm.named_parameters());
  ASSERT_EQ(n.size(), 16u);
  EXPECT_EQ(n[0], "weight_ih_l0");
  EXPECT_EQ(n[4], "weight_ih_l0_reverse");
  EXPECT_EQ(n[15], "bias_hh_l1_reverse");
  EXPECT_EQ(lstm.named_parameters()[8].second.shape(), (Shape{16, 8}));  // layer 1 sees both directions
  BatchNorm1d bn(BatchNormOptions(3));
  EXPECT_EQ(names(bn.named_buffers()), (std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"}));
  auto sd = bn.state_dict();
  EXPECT_EQ(sd.size(), 5u);
  EXPECT_EQ(sd.at("num_batches_tracked").dtype(), kInt64);
  MultiheadAttention mha(MultiheadAttentionOptions(6, 2).kdim(4).add_bias_kv(true).bias(false));
  EXPECT_EQ(names(mha.named_parameters()), (std::vector<std::string>{"q_proj_weight", "k_proj_weight",
                                                                      "v_proj_weight", "bias_k", "bias_v",
                                                                      "out_proj.weight"}));
  Transformer t(TransformerOptions(8, 2).num_encoder_layers(2).num_decoder_layers(1).dim_feedforward(8));
  auto tn = names(t.named_parameters());
  EXPECT_EQ(tn.front(), "encoder.layers.0.self_attn.in_proj_weight");
  EXPECT_EQ(tn.back(), "decoder.norm.bias");
  EXPECT_TRUE(std::find(tn.begin(), tn.end(), "decoder.layers.0.multihead_attn.out_proj.weight") != tn.end());
  EXPECT_TRUE(std::find(tn.begin(), tn.end(), "encoder.layers.1.norm2.weight") != tn.end());
}

TEST(Module, StateDictRoundTripAndLoadErrors) {
  Linear a(LinearOptions(3, 2)), b(LinearOptions(3, 2));
  EXPECT_FALSE(equal(a.weight, b.weight));
  b.load_state_dict(a.state_dict());
  EXPECT_TRUE(equal(a.weight, b.weight));
  EXPECT_TRUE(equal(a.bias, b.bias));
  EXPECT_TRUE(b.weight.requires_grad());
  EXPECT_TRUE(b.weight.is_leaf());

  StateDict sd = a.state_dict();
  Tensor before = b.weight.clone();
  StateDict missing{{"weight", randn({2, 3})}};
  expect_error([&] { b.load_state_dict(missing); }, {"Linear.load_state_dict", "missing keys: 'bias'"});
  EXPECT_TRUE(equal(b.weight, before)) << "a failed load must change nothing";
  b.load_state_dict(missing, false);  // non-strict: loads what is there
  EXPECT_TRUE(equal(b.weight, missing.at("weight")));
  StateDict extra = sd;
  extra["scale"] = ones({1});
  expect_error([&] { b.load_state_dict(extra); }, {"unexpected keys: 'scale'"});
  b.load_state_dict(extra, false);
  // A state_dict saved from DataParallel, and one of another model: the error says which.
  StateDict prefixed;
  for (auto& [k, t] : sd) prefixed["module." + k] = t;
  expect_error([&] { b.load_state_dict(prefixed); }, {"unexpected keys: 'module.bias'", "DataParallel"});
  StateDict foreign;
  for (int i = 0; i < 12; ++i) foreign["layer" + std::to_string(i) + ".w"] = ones({1});
  expect_error([&] { b.load_state_dict(foreign); }, {"... (12 in all)", "another architecture"});
  StateDict bad = sd;
  bad["weight"] = zeros({3, 2});
  expect_error([&] { b.load_state_dict(bad, false); }, {"'weight' has shape (3, 2) in the state_dict but (2, 3)"});
  StateDict f64 = sd;
  f64["weight"] = sd.at("weight").to(kFloat64);
  b.load_state_dict(f64);  // dtypes are converted
  EXPECT_EQ(b.weight.dtype(), kFloat32);
  StateDict ints = sd;
  ints["weight"] = zeros({2, 3}, kInt64);
  expect_error([&] { b.load_state_dict(ints); }, {"'weight' is int64 in the state_dict but float32"});
}

TEST(Module, ToDtypeZeroGradTrainEval) {
  Sequential seq;
  seq.emplace_back<Linear>(LinearOptions(4, 3));
  seq.emplace_back<ReLU>();
  seq.emplace_back<Dropout>(DropoutOptions(0.5));
  seq.emplace_back<Linear>(LinearOptions(3, 1));
  EXPECT_EQ(names(seq.named_parameters()), (std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias"}));
  seq.eval();
  for (auto& [n, m] : seq.named_modules()) EXPECT_FALSE(m->is_training()) << n;
  Tensor x = randn({5, 4});
  Tensor y1 = seq.forward(x), y2 = seq.forward(x);
  EXPECT_TRUE(equal(y1, y2)) << "eval mode: dropout is the identity";
  seq.train();
  EXPECT_TRUE(seq[2].is_training());
  seq.to(kFloat64);
  for (auto& p : seq.parameters()) {
    EXPECT_EQ(p.dtype(), kFloat64);
    EXPECT_TRUE(p.requires_grad());
    EXPECT_TRUE(p.is_leaf());
  }
  seq.eval();
  seq.forward(x.to(kFloat64)).sum().backward();
  for (auto& p : seq.parameters()) EXPECT_TRUE(p.grad().defined());
  seq.zero_grad(false);
  for (auto& p : seq.parameters()) EXPECT_EQ(attn::abs(p.grad()).sum().item<double>(), 0.0);
  seq.zero_grad();
  for (auto& p : seq.parameters()) EXPECT_FALSE(p.grad().defined());
  expect_error([&] { seq.to(kInt64); }, {"Sequential.to", "int64"});
}

TEST(Module, Containers) {
  ModuleList list;
  list.emplace_back<Linear>(LinearOptions(2, 2));
  list.push_back(std::make_unique<LayerNorm>(LayerNormOptions({2})));
  EXPECT_EQ(list.size(), 2u);
  EXPECT_EQ(list.at<LayerNorm>(1).weight.size(0), 2);
  expect_error([&] { list.at<Linear>(1); }, {"ModuleList.at", "LayerNorm"});
  expect_error([&] { list[5]; }, {"ModuleList", "out of range"});
  ModuleDict dict;
  dict.emplace<Linear>("enc", LinearOptions(2, 3));
  dict.emplace<GELU>("act");
  EXPECT_TRUE(dict.contains("enc"));
  EXPECT_EQ(dict.keys(), (std::vector<std::string>{"enc", "act"}));
  EXPECT_EQ(names(dict.named_parameters()), (std::vector<std::string>{"enc.weight", "enc.bias"}));
  expect_error([&] { dict.emplace<ReLU>("enc"); }, {"ModuleDict", "already present"});
  expect_error([&] { dict["nope"]; }, {"ModuleDict", "'nope'"});
  std::string r = dict.repr();
  EXPECT_NE(r.find("(enc): Linear(in_features=2, out_features=3, bias=True)"), std::string::npos) << r;
}

TEST(Module, SaveAndLoadSafetensors) {
  std::string path = ::testing::TempDir() + "/attn_nn_module.safetensors";
  LSTM a(LSTMOptions(3, 5).num_layers(2)), b(LSTMOptions(3, 5).num_layers(2));
  a.save(path, {{"model", "lstm"}});
  b.load(path);
  for (auto& [n, p] : a.named_parameters()) EXPECT_TRUE(equal(p, b.state_dict().at(n))) << n;
  auto meta = io::read_safetensors(path).metadata;
  EXPECT_EQ(meta.at("model"), "lstm");
  LSTM c(LSTMOptions(3, 6));
  expect_error([&] { c.load(path); }, {"LSTM.load_state_dict", "unexpected keys", "weight_ih_l1"});
  std::remove(path.c_str());
}

TEST(Module, TransformerStackLayersStartIdentical) {
  TransformerEncoder enc(TransformerEncoderOptions(TransformerEncoderLayerOptions(8, 2).dim_feedforward(8), 3));
  ASSERT_EQ(enc.layers.size(), 3u);
  auto s0 = enc.layer(0).state_dict(), s2 = enc.layer(2).state_dict();
  for (auto& [k, v] : s0) EXPECT_TRUE(equal(v, s2.at(k))) << k;
  EXPECT_FALSE(enc.layer(0).linear1.weight.is_same(enc.layer(2).linear1.weight)) << "copies, not shared";
}

// ---- Initialisation (PyTorch's distributions) ------------------------------------------
TEST(Init, DefaultDistributions) {
  Linear lin(LinearOptions(400, 300));
  const double bound = 1.0 / std::sqrt(400.0);
  EXPECT_LE(attn::max(attn::abs(lin.weight)).item<float>(), bound);
  EXPECT_GT(attn::max(attn::abs(lin.weight)).item<float>(), 0.99 * bound);
  EXPECT_NEAR(attn::var(lin.weight).item<float>(), bound * bound / 3, 0.02 * bound * bound);  // U(-b, b)
  MultiheadAttention mha(MultiheadAttentionOptions(64, 4));
  const double xb = std::sqrt(6.0 / (64 + 192));  // xavier on (3E, E)
  EXPECT_LE(attn::max(attn::abs(mha.in_proj_weight)).item<float>(), xb);
  EXPECT_GT(attn::max(attn::abs(mha.in_proj_weight)).item<float>(), 0.99 * xb);
  EXPECT_EQ(attn::abs(mha.in_proj_bias).sum().item<float>(), 0.0f);
  EXPECT_EQ(attn::abs(mha.out_proj.bias).sum().item<float>(), 0.0f);
  Embedding emb(EmbeddingOptions(1000, 64).padding_idx(-1));
  EXPECT_EQ(*emb.options.padding_idx(), 999);
  EXPECT_NEAR(attn::var(emb.weight).item<float>(), 1.0, 0.02);
  EXPECT_EQ(attn::abs(emb.weight.select(0, 999)).sum().item<float>(), 0.0f);
  Conv2d conv(Conv2dOptions(8, 16, 3));
  EXPECT_LE(attn::max(attn::abs(conv.weight)).item<float>(), 1.0 / std::sqrt(72.0));
  Transformer t(TransformerOptions(16, 2).num_encoder_layers(1).num_decoder_layers(1).dim_feedforward(32));
  // Transformer re-initialises every matrix xavier-uniform, including out_proj.
  const double tb = std::sqrt(6.0 / (16 + 16));
  EXPECT_LE(attn::max(attn::abs(t.encoder.layer(0).self_attn.out_proj.weight)).item<float>(), tb);
  EXPECT_GT(attn::max(attn::abs(t.encoder.layer(0).self_attn.out_proj.weight)).item<float>(), 0.9 * tb);
  EXPECT_NEAR(init::calculate_gain("leaky_relu", std::sqrt(5.0)), std::sqrt(2.0 / 6.0), 1e-12);
  Tensor w = empty({50, 60});
  init::kaiming_normal_(w, 0, init::FanMode::FanOut, "relu");
  EXPECT_NEAR(attn::std(w, {0, 1}).item<float>(), std::sqrt(2.0 / 50), 0.01);
}

// ---- Finite-difference gradients (float64) -------------------------------------------
// float64 central differences of every input and parameter gradient (support/module_check).
void gradcheck(const std::string& label, Module& m, std::vector<Tensor> inputs,
               const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f) {
  testing::module_gradcheck(label, m, std::move(inputs), f, 7);
}

TEST(NnGradcheck, Layers) {
  {
    Linear m(LinearOptions(3, 2));
    gradcheck("Linear", m, {randn({2, 3})}, [&](auto& x) { return std::vector<Tensor>{m.forward(x[0])}; });
  }
  {
    Bilinear m(BilinearOptions(2, 3, 2));
    gradcheck("Bilinear", m, {randn({2, 2}), randn({2, 3})},
              [&](auto& x) { return std::vector<Tensor>{m.forward(x[0], x[1])}; });
  }
  {
    LayerNorm m(LayerNormOptions({4}));
    gradcheck("LayerNorm", m, {randn({3, 4})}, [&](auto& x) { return std::vector<Tensor>{m.forward(x[0])}; });
  }
  {
    BatchNorm2d m(BatchNormOptions(2).momentum(std::nullopt));
    gradcheck("BatchNorm2d train", m, {randn({3, 2, 2, 2})},
              [&](auto& x) { return std::vector<Tensor>{m.forward(x[0])}; });
    m.eval();
    gradcheck("BatchNorm2d eval", m, {randn({3, 2, 2, 2})},
              [&](auto& x) { return std::vector<Tensor>{m.forward(x[0])}; });
  }
  {
    Conv2d m(Conv2dOptions(2, 2, 2).padding(1).groups(2));
    gradcheck("Conv2d", m, {randn({1, 2, 3, 3})}, [&](auto& x) { return std::vector<Tensor>{m.forward(x[0])}; });
  }
  {
    Embedding m(EmbeddingOptions(5, 3).padding_idx(0));
    gradcheck("Embedding", m, {from_vector(std::vector<int>{1, 2, 2, 4}, {2, 2})},
              [&](auto& x) { return std::vector<Tensor>{m.forward(x[0])}; });
  }
}

TEST(NnGradcheck, Recurrent) {
  for (bool packed : {false, true}) {
    LSTM m(LSTMOptions(2, 3).num_layers(2).bidirectional(true));
    gradcheck(packed ? "LSTM packed" : "LSTM", m, {randn({4, 3, 2}), randn({4, 3, 3}), randn({4, 3, 3})},
              [&](auto& x) {
                if (!packed) {
                  auto [o, s] = m.forward(x[0], {x[1], x[2]});
                  return std::vector<Tensor>{o, std::get<0>(s), std::get<1>(s)};
                }
                auto ps = pack_padded_sequence(x[0], std::vector<int64_t>{2, 4, 1}, false, false);
                auto [o, s] = m.forward(ps, {x[1], x[2]});
                return std::vector<Tensor>{std::get<0>(pad_packed_sequence(o)), std::get<0>(s), std::get<1>(s)};
              });
  }
  {
    GRU m(GRUOptions(2, 3).batch_first(true));
    gradcheck("GRU", m, {randn({2, 3, 2}), randn({1, 2, 3})}, [&](auto& x) {
      auto [o, h] = m.forward(x[0], x[1]);
      return std::vector<Tensor>{o, h};
    });
  }
  {
    RNN m(RNNOptions(2, 3).nonlinearity(kReLU).bias(false));
    gradcheck("RNN relu", m, {randn({3, 2})}, [&](auto& x) {
      auto [o, h] = m.forward(x[0]);
      return std::vector<Tensor>{o, h};
    });
  }
  {
    LSTMCell m(LSTMCellOptions(2, 3));
    gradcheck("LSTMCell", m, {randn({2, 2}), randn({2, 3}), randn({2, 3})}, [&](auto& x) {
      auto [h, c] = m.forward(x[0], {x[1], x[2]});
      return std::vector<Tensor>{h, c};
    });
    GRUCell g(GRUCellOptions(2, 3));
    gradcheck("GRUCell", g, {randn({2}), randn({3})}, [&](auto& x) { return std::vector<Tensor>{g.forward(x[0], x[1])}; });
  }
}

TEST(NnGradcheck, Attention) {
  {
    MultiheadAttention m(MultiheadAttentionOptions(4, 2).add_bias_kv(true).kdim(3).batch_first(true));
    Tensor kpm = from_vector(std::vector<int>{0, 0, 1, 0, 1, 0}, {2, 3}).to(kBool);
    gradcheck("MultiheadAttention", m, {randn({2, 3, 4}), randn({2, 3, 3}), randn({2, 3, 4}), randn({3, 3})},
              [&](auto& x) {
                return std::vector<Tensor>{std::get<0>(m.forward(x[0], x[1], x[2], kpm, false, x[3]))};
              });
  }
  {
    TransformerEncoderLayer m(TransformerEncoderLayerOptions(4, 2).dim_feedforward(6).norm_first(true).activation("gelu"));
    m.eval();
    gradcheck("TransformerEncoderLayer", m, {randn({3, 2, 4})},
              [&](auto& x) { return std::vector<Tensor>{m.forward(x[0], {}, {}, true)}; });
  }
  {
    TransformerDecoderLayer m(TransformerDecoderLayerOptions(4, 1).dim_feedforward(5));
    m.eval();
    gradcheck("TransformerDecoderLayer", m, {randn({2, 4}), randn({3, 4})},
              [&](auto& x) { return std::vector<Tensor>{m.forward(x[0], x[1])}; });
  }
}

// ---- Train mode -------------------------------------------------------------------------
TEST(NnTrainMode, DropoutStatistics) {
  Generator gen(11);
  Dropout d(DropoutOptions(0.3).generator(&gen));
  Tensor y = d.forward(ones({100000}));
  double kept = (y > 0.0).to(kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 0.7, 0.005);
  EXPECT_NEAR(attn::max(y).item<float>(), 1 / 0.7, 1e-6);
  EXPECT_NEAR(y.mean().item<float>(), 1.0, 0.01);
}

TEST(NnTrainMode, AttentionDropoutIsUnbiased) {
  // out = (P * M / (1 - p)) V W_o^T + b is linear in the dropout mask, so its
  // mean over many draws tends to the eval-mode output.
  Generator gen(5);
  MultiheadAttention m(MultiheadAttentionOptions(8, 2).dropout(0.25).generator(&gen));
  Tensor x = randn({6, 1, 8});
  NoGradGuard ng;
  m.eval();
  Tensor ref = std::get<0>(m.forward(x, x, x, {}, false));
  m.train();
  Tensor acc = zeros(ref.shape());
  const int n = 4000;
  for (int i = 0; i < n; ++i) acc = acc + std::get<0>(m.forward(x, x, x, {}, false));
  Tensor mean_out = acc / static_cast<double>(n);
  EXPECT_FALSE(equal(std::get<0>(m.forward(x, x, x, {}, false)), ref));
  EXPECT_LT(attn::max(attn::abs((mean_out - ref))).item<float>(), 0.05);
  // Same seed, same draws.
  Generator g1(9), g2(9);
  TransformerEncoderLayer a(TransformerEncoderLayerOptions(8, 2).dim_feedforward(16).generator(&g1));
  TransformerEncoderLayer b(TransformerEncoderLayerOptions(8, 2).dim_feedforward(16).generator(&g2));
  b.load_state_dict(a.state_dict());
  EXPECT_TRUE(equal(a.forward(x), b.forward(x)));
  a.eval();
  EXPECT_FALSE(equal(a.forward(x), b.forward(x)));
}

TEST(NnTrainMode, RecurrentDropoutBetweenLayers) {
  Generator gen(3);
  GRU m(GRUOptions(3, 4).num_layers(2).dropout(0.5).generator(&gen));
  Tensor x = randn({5, 2, 3});
  NoGradGuard ng;
  Tensor t1 = std::get<0>(m.forward(x)), t2 = std::get<0>(m.forward(x));
  EXPECT_FALSE(equal(t1, t2));
  m.eval();
  EXPECT_TRUE(equal(std::get<0>(m.forward(x)), std::get<0>(m.forward(x))));
}

TEST(NnTrainMode, BatchNormCumulativeAverage) {
  BatchNorm1d bn(BatchNormOptions(2).momentum(std::nullopt));
  Tensor a = randn({8, 2}), b = randn({8, 2});
  bn.forward(a);
  bn.forward(b);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 2);
  Tensor want = (a.mean({0}) + b.mean({0})) / 2.0;
  EXPECT_LT(attn::max(attn::abs((bn.running_mean - want))).item<float>(), 1e-6);
  expect_error([&] { bn.forward(randn({1, 2})); }, {"batch_norm", "more than 1 value per channel"});
}

// ---- Fully masked rows and packed sequences ---------------------------------------------------
TEST(NnAttention, FullyMaskedRowsGiveBiasAndZeroWeights) {
  MultiheadAttention m(MultiheadAttentionOptions(4, 2));
  {
    NoGradGuard ng;
    m.out_proj.bias.copy_(from_vector(std::vector<float>{1, 2, 3, 4}, {4}));
  }
  Tensor x = randn({3, 2, 4}).requires_grad_(true);
  Tensor am = zeros({3, 3}, kBool);
  {
    NoGradGuard ng;
    am.select(0, 1).fill_(1.0);  // query 1 sees no key
  }
  auto [out, w] = m.forward(x, x, x, {}, true, am);
  EXPECT_TRUE(equal(out.select(0, 1), m.out_proj.bias.detach().expand({2, 4})));
  EXPECT_EQ(attn::abs(w.select(1, 1)).sum().item<float>(), 0.0f);
  EXPECT_NEAR(w.select(1, 0).sum().item<float>(), 2.0, 1e-5);  // other rows sum to 1 per batch
  out.sum().backward();
  EXPECT_TRUE(bool((x.grad() == x.grad()).to(kInt64).sum().item<int64_t>() == x.numel())) << "no NaN gradient";
}

TEST(NnRecurrent, PackedFinalStatesAtEachLength) {
  // The packed run of each sequence equals running it alone, unpadded.
  LSTM m(LSTMOptions(2, 3).bidirectional(true));
  Tensor x = randn({4, 3, 2});
  std::vector<int64_t> lens{2, 4, 1};
  auto [po, st] = m.forward(pack_padded_sequence(x, lens, false, false));
  auto [padded, out_lens] = pad_packed_sequence(po);
  EXPECT_TRUE(equal(out_lens, from_vector(lens, {3})));
  for (int64_t b = 0; b < 3; ++b) {
    Tensor xb = x.select(1, b).narrow(0, 0, lens[b]);  // unbatched (T_b, 2)
    auto [ob, sb] = m.forward(xb);
    EXPECT_LT(attn::max(attn::abs((padded.select(1, b).narrow(0, 0, lens[b]) - ob))).item<float>(), 1e-6) << b;
    if (lens[b] < 4) {
      EXPECT_EQ(attn::abs(padded.select(1, b).narrow(0, lens[b], 4 - lens[b])).sum().item<float>(), 0.0f);
    }
    EXPECT_LT(attn::max(attn::abs((std::get<0>(st).select(1, b) - std::get<0>(sb)))).item<float>(), 1e-6) << b;
    EXPECT_LT(attn::max(attn::abs((std::get<1>(st).select(1, b) - std::get<1>(sb)))).item<float>(), 1e-6) << b;
  }
  expect_error([&] { pack_padded_sequence(x, lens, false, true); }, {"pack_padded_sequence", "sorted", "decreasing"});
  expect_error([&] { pack_padded_sequence(x, std::vector<int64_t>{5, 1, 1}); }, {"pack_padded_sequence", "[1, 4]"});
}

TEST(NnAttention, GenerateSquareSubsequentMask) {
  Tensor m = Transformer::generate_square_subsequent_mask(3);
  EXPECT_EQ(m.select(0, 0).select(0, 0).item<float>(), 0.0f);
  EXPECT_TRUE(std::isinf(m.select(0, 0).select(0, 1).item<float>()));
  EXPECT_EQ(m.select(0, 2).sum().item<float>(), 0.0f);
}

// ---- Empty dimensions: empty results where PyTorch gives them -----------------------------
TEST(NnEmpty, ZeroSizeDimsGiveEmptyResults) {
  MultiheadAttention mha(MultiheadAttentionOptions(8, 2));
  Tensor q0 = zeros({0, 2, 8}).requires_grad_(true), kv = randn({3, 2, 8});
  auto [o, w] = mha.forward(q0, kv, kv);
  EXPECT_EQ(o.shape(), (Shape{0, 2, 8}));
  EXPECT_EQ(w.shape(), (Shape{2, 0, 3}));
  (o.sum() + std::get<0>(mha.forward(kv, kv, kv)).sum()).backward();
  EXPECT_EQ(q0.grad().shape(), (Shape{0, 2, 8}));
  // No keys: attention output 0, so out_proj.bias (PyTorch gives the same here).
  auto [os, ws] = mha.forward(randn({3, 2, 8}), zeros({0, 2, 8}), zeros({0, 2, 8}));
  EXPECT_TRUE(equal(os, mha.out_proj.bias.detach().expand({3, 2, 8})));
  EXPECT_EQ(ws.shape(), (Shape{2, 3, 0}));
  EXPECT_EQ(std::get<0>(mha.forward(zeros({3, 0, 8}), zeros({3, 0, 8}), zeros({3, 0, 8}))).shape(), (Shape{3, 0, 8}));
  TransformerEncoderLayer enc(TransformerEncoderLayerOptions(8, 2).dim_feedforward(8));
  EXPECT_EQ(enc.forward(zeros({0, 2, 8})).shape(), (Shape{0, 2, 8}));
  EXPECT_EQ(enc.forward(zeros({3, 0, 8})).shape(), (Shape{3, 0, 8}));
  LSTM lstm(LSTMOptions(3, 4).bidirectional(true));
  auto [lo, ls] = lstm.forward(zeros({5, 0, 3}));
  EXPECT_EQ(lo.shape(), (Shape{5, 0, 8}));
  EXPECT_EQ(std::get<0>(ls).shape(), (Shape{2, 0, 4}));
  expect_error([&] { lstm.forward(zeros({0, 2, 3})); }, {"LSTM:", "sequence length larger than 0"});
  EXPECT_EQ(GRUCell(GRUCellOptions(2, 3)).forward(zeros({0, 2})).shape(), (Shape{0, 3}));
  EXPECT_EQ(Linear(4, 3).forward(zeros({0, 4})).shape(), (Shape{0, 3}));
  EXPECT_EQ(LayerNorm(LayerNormOptions({4})).forward(zeros({0, 4})).shape(), (Shape{0, 4}));
  BatchNorm1d bn(BatchNormOptions(3));
  EXPECT_EQ(bn.forward(zeros({0, 3})).shape(), (Shape{0, 3}));
  EXPECT_TRUE(equal(bn.running_mean, zeros({3}))) << "an empty batch leaves the running statistics alone";
}

// ---- Bad input ----------------------------------------------------------------------------
TEST(NnErrors, ClearMessages) {
  int n = 0;
  auto check = [&](const std::function<void()>& f, const std::vector<std::string>& parts) {
    expect_error(f, parts);
    ++n;
  };
  Linear lin(LinearOptions(3, 2));
  check([&] { lin.forward(randn({2, 4})); }, {"linear:", "input.size(-1) must equal weight.size(1)"});
  check([&] { lin.forward(randn({2, 3}, kFloat64)); }, {"linear:", "float32", "float64"});
  check([] { Conv2d c(Conv2dOptions(3, 4, 3).groups(2)); }, {"Conv2d:", "divisible by groups"});
  check([] { Embedding e(EmbeddingOptions(4, 2).padding_idx(4)); }, {"Embedding:", "padding_idx"});
  check([] { MultiheadAttention m(MultiheadAttentionOptions(6, 4)); }, {"MultiheadAttention:", "divisible"});
  MultiheadAttention mha(MultiheadAttentionOptions(4, 2));
  Tensor x = randn({3, 2, 4});
  check([&] { mha.forward(x, x, x, zeros({2, 4}, kBool)); }, {"MultiheadAttention:", "key_padding_mask must be (2, 3)"});
  check([&] { mha.forward(x, x, x, {}, true, zeros({3, 4}, kBool)); }, {"2-d attn_mask is (3, 4)", "(3, 3)"});
  check([&] { mha.forward(x, x, x, {}, true, zeros({3, 3, 3}, kBool)); }, {"3-d attn_mask", "(4, 3, 3)"});
  check([&] { mha.forward(x, x, x, {}, true, zeros({3, 3}, kInt64)); }, {"attn_mask must be bool", "int64"});
  check([&] { mha.forward(randn({3, 2, 5}), x, x); }, {"MultiheadAttention:", "embed_dim 4"});
  check([&] { mha.forward(x, randn({3, 4}), x); }, {"MultiheadAttention:", "all be batched"});
  check([&] { mha.forward(x, randn({3, 1, 4}), randn({3, 1, 4})); }, {"same batch size"});
  LSTM lstm(LSTMOptions(3, 4).num_layers(2));
  check([&] { lstm.forward(randn({5, 2, 2})); }, {"LSTM:", "input_size is 3"});
  check([&] { lstm.forward(randn({5, 2, 3}), {zeros({1, 2, 4}), zeros({1, 2, 4})}); }, {"LSTM:", "h_0 must be (2, 2, 4)"});
  check([&] { lstm.forward(randn({5, 2, 3}), {zeros({2, 2, 4}), Tensor()}); }, {"LSTM:", "both h_0 and c_0"});
  check([&] { lstm.forward(randn({2, 5, 2, 3})); }, {"LSTM:", "3-d"});
  GRUCell cell(GRUCellOptions(3, 4));
  check([&] { cell.forward(randn({2, 3}), randn({3, 4})); }, {"GRUCell:", "hx must be (2, 4)"});
  BatchNorm2d bn(BatchNormOptions(3));
  check([&] { bn.forward(randn({2, 3, 4})); }, {"BatchNorm2d:", "4-d"});
  check([&] { bn.forward(randn({2, 4, 2, 2})); }, {"BatchNorm2d:", "num_features is 3"});
  LayerNorm ln(LayerNormOptions({4}));
  check([&] { ln.forward(randn({2, 3})); }, {"layer_norm:", "does not end with normalized_shape"});
  TransformerEncoderLayer enc(TransformerEncoderLayerOptions(4, 2).dim_feedforward(8));
  check([&] { enc.forward(randn({3, 2, 5})); }, {"MultiheadAttention:", "embed_dim 4"});
  check([] { TransformerEncoderLayerOptions(4, 2).activation("swish"); }, {"activation", "swish"});
  Transformer t(TransformerOptions(4, 2).num_encoder_layers(1).num_decoder_layers(1).dim_feedforward(4));
  check([&] { t.forward(randn({3, 2, 4}), randn({3, 3, 4})); }, {"Transformer:", "batch size"});
  check([] {
    Tensor t = zeros({3});
    init::xavier_uniform_(t);
  }, {"init:", "2 or more dims"});
  std::printf("nn errors: %d bad-input cases\n", n);
}

}  // namespace
}  // namespace attn
