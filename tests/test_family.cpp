// The attention family beyond MultiheadAttention: finite-difference gradients
// in float64, fully masked rows, step-by-step decoding, the seeds' forms
// against nn::MultiheadAttention, RoPE's and ALiBi's properties, bad input.
// PyTorch parity for the same modules is in test_nn_parity (gen_family.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <tuple>

#include <attn/attn.h>

#include "support/module_check.h"

namespace attn {
namespace {

using namespace attn::nn;
using testing::expect_error;

// float64 central differences of every input and parameter gradient (support/module_check).
void gradcheck(const std::string& label, Module& m, std::vector<Tensor> inputs,
               const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f) {
  testing::module_gradcheck(label, m, std::move(inputs), f, 17);
}

std::vector<std::string> names_of(const Module& m) {
  std::vector<std::string> out;
  for (auto& [n, t] : m.named_parameters()) out.push_back(n);
  return out;
}

Tensor padding(const std::vector<int>& v, int64_t B, int64_t S) { return from_vector(v, {B, S}).to(kBool); }

TEST(FamilyGradcheck, AdditiveLuongPoolingCosineRope) {
  Tensor kpm = padding({0, 0, 1, 0, 1, 0, 0, 0}, 2, 4);
  {
    AdditiveAttention m(AdditiveAttentionOptions(3, 2, 4));
    gradcheck("Additive", m, {randn({2, 2, 3}), randn({2, 4, 2}), randn({2, 4, 3})}, [&](auto& x) {
      auto [c, w] = m.forward(x[0], x[1], x[2], kpm);
      return std::vector<Tensor>{c, w};
    });
  }
  for (auto sc : {LuongScore::Dot, LuongScore::General, LuongScore::Concat}) {
    LuongAttention m(LuongAttentionOptions(3, sc == LuongScore::Dot ? 3 : 2).score(sc).scale(true));
    gradcheck("Luong", m, {randn({2, 3}), randn({2, 4, sc == LuongScore::Dot ? 3 : 2})}, [&](auto& x) {
      auto [c, w] = m.forward(x[0], x[1], {}, kpm);
      return std::vector<Tensor>{c, w};
    });
  }
  {
    AttentionPooling m(3, false);
    gradcheck("AttentionPooling", m, {randn({4, 2, 3})}, [&](auto& x) {
      auto [p, w] = m.forward(x[0], kpm);
      return std::vector<Tensor>{p, w};
    });
  }
  {
    CosineAttention m(0.7);
    gradcheck("CosineAttention", m, {randn({2, 3, 4}), randn({2, 5, 4}), randn({2, 5, 2})},
              [&](auto& x) { return std::vector<Tensor>{m.forward(x[0], x[1], x[2])}; });
  }
  for (auto layout : {F::RopeLayout::HalfSplit, F::RopeLayout::Interleaved}) {
    RotaryEmbedding m(RotaryEmbeddingOptions(6).layout(layout));
    gradcheck("RoPE", m, {randn({2, 3, 6})}, [&](auto& x) { return std::vector<Tensor>{m.forward(x[0], 5)}; });
  }
  {
    CosineAttention m(0.3);  // E = 1: the gradient through normalize is 0 (kept out of the float32 parity)
    gradcheck("CosineAttention E=1", m, {randn({3, 1}), randn({4, 1}), randn({4, 2})},
              [&](auto& x) { return std::vector<Tensor>{m.forward(x[0], x[1], x[2])}; });
  }
  {
    BatchNorm1d m(BatchNormOptions(3));  // 2 values per channel (kept out of the float32 parity)
    gradcheck("BatchNorm1d N=2", m, {randn({2, 3})}, [&](auto& x) { return std::vector<Tensor>{m.forward(x[0])}; });
  }
  {
    LocalitySelfAttention m(LocalitySelfAttentionOptions(4).heads(2).dim_head(3));
    gradcheck("LocalitySelfAttention", m, {randn({2, 3, 4})}, [&](auto& x) { return std::vector<Tensor>{m.forward(x[0])}; });
  }
  {
    ShiftedPatchTokenization m(ShiftedPatchTokenizationOptions(1, 2, 3));
    gradcheck("ShiftedPatchTokenization", m, {randn({1, 1, 4, 2})},
              [&](auto& x) { return std::vector<Tensor>{m.forward(x[0])}; });
  }
  {
    seeds::MultiHeadAttention m(4, 2);
    gradcheck("seeds::MultiHeadAttention", m, {randn({2, 3, 4}), randn({2, 2, 4}), randn({2, 2, 4})},
              [&](auto& x) { return std::vector<Tensor>{std::get<0>(m.forward(x[0], x[1], x[2]))}; });
  }
}

TEST(Family, FullyMaskedRowsGiveZeros) {
  AdditiveAttention m(AdditiveAttentionOptions(3, 2, 4));
  Tensor q = randn({2, 3}).requires_grad_(true), keys = randn({2, 3, 2}).requires_grad_(true);
  Tensor kpm = padding({1, 1, 1, 0, 1, 0}, 2, 3);  // batch 0: every key is padding
  auto [ctx, w] = m.forward(q, keys, {}, kpm);
  EXPECT_EQ(attn::abs(ctx.select(0, 0)).sum().item<float>(), 0.0f);
  EXPECT_EQ(attn::abs(w.select(0, 0)).sum().item<float>(), 0.0f);
  EXPECT_NEAR(w.select(0, 1).sum().item<float>(), 1.0f, 1e-6);
  EXPECT_EQ(w.select(0, 1).select(0, 1).item<float>(), 0.0f);
  (ctx.sum() + w.sum()).backward();
  for (const Tensor& g : {q.grad(), keys.grad()})
    EXPECT_EQ((g != g).to(kInt64).sum().item<int64_t>(), 0) << "NaN in a gradient";
}

TEST(Family, StepByStepDecodingEqualsAllQueriesAtOnce) {
  // An LSTMCell decoder over padded encoder outputs: attention per step with
  // the keys projected once gives the same context as all queries at once.
  AdditiveAttention att(AdditiveAttentionOptions(5, 4, 6));
  LSTMCell cell(LSTMCellOptions(4, 5));
  Tensor enc = randn({2, 6, 4});
  Tensor kpm = padding({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, 2, 6);
  Tensor pk = att.project_keys(enc);
  Tensor h = zeros({2, 5}), c = zeros({2, 5});
  std::vector<Tensor> hs, ctxs;
  for (int t = 0; t < 4; ++t) {
    auto [ctx, w] = att.forward_projected(h, pk, enc, kpm);
    EXPECT_EQ(attn::abs(w.select(0, 1).narrow(0, 4, 2)).sum().item<float>(), 0.0f) << "padding gets no weight";
    ctxs.push_back(ctx);
    hs.push_back(h);
    std::tie(h, c) = cell.forward(ctx, {h, c});
  }
  auto [all, w_all] = att.forward(stack(hs, 1), enc, {}, kpm);
  EXPECT_LT(attn::max(attn::abs(all - stack(ctxs, 1))).item<float>(), 1e-6);
}

TEST(Family, SeedMultiHeadAttentionEqualsMultiheadAttention) {
  seeds::MultiHeadAttention seed(8, 2);
  MultiheadAttention mha(MultiheadAttentionOptions(8, 2).batch_first(true));
  StateDict sd{{"in_proj_weight", cat({seed.query.weight, seed.key.weight, seed.value.weight}, 0).detach()},
               {"in_proj_bias", cat({seed.query.bias, seed.key.bias, seed.value.bias}, 0).detach()},
               {"out_proj.weight", seed.output.weight.detach()},
               {"out_proj.bias", seed.output.bias.detach()}};
  mha.load_state_dict(sd);
  Tensor q = randn({2, 5, 8}), kv = randn({2, 7, 8});
  auto [a, wa] = seed.forward(q, kv, kv);
  auto [b, wb] = mha.forward(q, kv, kv, {}, true, {}, false);
  EXPECT_LT(attn::max(attn::abs(a - b)).item<float>(), 1e-5);
  EXPECT_LT(attn::max(attn::abs(wa - wb)).item<float>(), 1e-6);
  seeds::AttentionLayer layer(8, 3);
  Tensor out = layer.forward(q, kv, kv);
  Tensor ref = matmul(F::softmax(matmul(layer.query.forward(q), layer.key.forward(kv).transpose(-2, -1)), -1),
                      layer.value.forward(kv));
  EXPECT_LT(attn::max(attn::abs(out - ref)).item<float>(), 1e-5) << "unscaled, as the seed";
}

TEST(Family, RopeAndAlibiProperties) {
  // Rotations keep norms, and q.k after RoPE depends only on the offset between positions.
  Tensor q = randn({1, 8}), k = randn({1, 8});
  for (auto layout : {F::RopeLayout::HalfSplit, F::RopeLayout::Interleaved}) {
    auto dot = [&](int64_t i, int64_t j) {
      Tensor qi = F::rotary_embedding(q, F::RotaryOptions().layout(layout).offset(i));
      Tensor kj = F::rotary_embedding(k, F::RotaryOptions().layout(layout).offset(j));
      return (qi * kj).sum().item<double>();
    };
    EXPECT_NEAR(dot(3, 1), dot(12, 10), 1e-4);
    EXPECT_NEAR(dot(0, 0), (q * k).sum().item<double>(), 1e-5);
    Tensor r = F::rotary_embedding(q, F::RotaryOptions().layout(layout).offset(7));
    EXPECT_NEAR((r * r).sum().item<double>(), (q * q).sum().item<double>(), 1e-4);
  }
  Tensor pos = from_vector(std::vector<int>{4, 9}, {2});
  Tensor x = randn({2, 4});
  Tensor a = F::rotary_embedding(x, F::RotaryOptions().positions(pos));
  EXPECT_TRUE(allclose(a.select(0, 1), F::rotary_embedding(x.narrow(0, 1, 1), F::RotaryOptions().offset(9)).select(0, 0)));
  // float32 slopes are the float64 ones rounded; 8 heads: 1/2, 1/4, ..., 1/256.
  for (int64_t n : {1, 5, 8, 12})
    EXPECT_TRUE(equal(F::alibi_slopes(n), F::alibi_slopes(n, kFloat64).to(kFloat32))) << n;
  EXPECT_EQ(F::alibi_slopes(8).select(0, 7).item<float>(), 1.0f / 256);
  // They plug into the fused attention.
  Tensor qq = randn({1, 8, 5, 4}), kk = randn({1, 8, 5, 4});
  EXPECT_EQ(F::scaled_dot_product_attention(qq, kk, kk, F::SdpaOptions().alibi_slopes(F::alibi_slopes(8))).shape(),
            (Shape{1, 8, 5, 4}));
}

TEST(Family, MaskedSoftmaxAndNormalize) {
  Tensor x = from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor m = from_vector(std::vector<int>{0, 1, 0, 1, 1, 1}, {2, 3}).to(kBool);
  Tensor p = F::masked_softmax(x, m);
  EXPECT_TRUE(allclose(p.select(0, 0), F::softmax(from_vector(std::vector<float>{1, 0, 3}, {3}) +
                                                       from_vector(std::vector<float>{0, -1e30f, 0}, {3}), 0)));
  EXPECT_EQ(attn::abs(p.select(0, 1)).sum().item<float>(), 0.0f);
  Tensor z = zeros({2, 3}, kFloat64).requires_grad_(true);
  F::normalize(z).sum().backward();
  EXPECT_EQ((z.grad() != z.grad()).to(kInt64).sum().item<int64_t>(), 0) << "normalize of 0 has a finite gradient";
}

TEST(Family, LocalityAndShiftedPatches) {
  // Parameter names as the authors' code; the temperature starts at log(dim_head^-1/2).
  LocalitySelfAttention lsa(LocalitySelfAttentionOptions(4).heads(1).dim_head(4));
  EXPECT_EQ(names_of(lsa), (std::vector<std::string>{"temperature", "norm.weight", "norm.bias", "to_qkv.weight",
                                                      "to_out.0.weight", "to_out.0.bias"}));
  EXPECT_NEAR(lsa.temperature.item<float>(), std::log(0.5f), 1e-6);
  // SPT: (B, C, H, W) -> (B, H W / p^2, dim).
  ShiftedPatchTokenization spt(ShiftedPatchTokenizationOptions(3, 4, 8));
  EXPECT_EQ(spt.forward(randn({2, 3, 8, 12})).shape(), (Shape{2, 6, 8}));
  expect_error([&] { spt.forward(randn({2, 3, 8, 10})); }, {"ShiftedPatchTokenization:", "multiples of 4"});
}

TEST(Family, LinearAttention) {
  Identity none;
  for (bool causal : {false, true}) {
    gradcheck(causal ? "linear_attention causal" : "linear_attention", none,
              {randn({2, 5, 3}), randn({2, 5, 3}), randn({2, 5, 2})}, [&](auto& x) {
                return std::vector<Tensor>{F::linear_attention(x[0], x[1], x[2],
                                                               F::LinearAttentionOptions().causal(causal).chunk(2))};
              });
  }
  // The chunk size changes only the order of the sums.
  Tensor q = randn({3, 50, 8}), k = randn({3, 50, 8}), v = randn({3, 50, 4});
  Tensor a = F::linear_attention(q, k, v, F::LinearAttentionOptions().causal(true).chunk(1));
  for (int64_t c : {7, 64})
    EXPECT_LT(attn::max(attn::abs(a - F::linear_attention(q, k, v, F::LinearAttentionOptions().causal(true).chunk(c))))
                  .item<float>(), 1e-5) << c;
  // Causal: row i ignores keys after i.
  Tensor k2 = k.clone(), v2 = v.clone();
  {
    NoGradGuard ng;
    k2.narrow(1, 30, 20).fill_(3.0);
    v2.narrow(1, 30, 20).fill_(-2.0);
  }
  Tensor b = F::linear_attention(q, k2, v2, F::LinearAttentionOptions().causal(true));
  EXPECT_TRUE(allclose(a.narrow(1, 0, 30), b.narrow(1, 0, 30), 1e-5, 1e-6));
  expect_error([] { F::linear_attention(randn({4, 2}), randn({5, 2}), randn({5, 2}), F::LinearAttentionOptions().causal(true)); },
               {"linear_attention:", "L == S"});
}

// ---- Relative positions ----------------------------------------------------------------------------
TEST(Relative, ShawAttention) {
  RelativeMultiheadAttention m(RelativeMultiheadAttentionOptions(4, 2).max_relative_position(2).batch_first(true));
  Tensor pad = padding({0, 0, 1, 0, 0, 0}, 2, 3);
  gradcheck("RelativeMultiheadAttention", m, {randn({2, 4, 4}), randn({2, 3, 4}), randn({2, 3, 4})}, [&](auto& x) {
    return std::vector<Tensor>{std::get<0>(m.forward(x[0], x[1], x[2], pad))};
  });
  // Without masks and weights the fused path runs (flex_attention with the key
  // term as a modifier and the value term summed per distance in the tiles):
  // float64 gradients against finite differences, and the composed path's
  // values and gradients in float32 at a length past the distances.
  gradcheck("RelativeMultiheadAttention (fused)", m, {randn({2, 4, 4}), randn({2, 3, 4}), randn({2, 3, 4})},
            [&](auto& x) { return std::vector<Tensor>{std::get<0>(m.forward(x[0], x[1], x[2], {}, false))}; });
  {
    RelativeMultiheadAttention f(RelativeMultiheadAttentionOptions(16, 4).max_relative_position(5).batch_first(true));
    Tensor x = randn({2, 150, 16}).requires_grad_(), dout = randn({2, 150, 16});
    auto grads = [&](bool weights) {
      f.zero_grad();
      x.set_grad({});
      Tensor out = std::get<0>(f.forward(x, x, x, {}, weights));
      out.backward(dout);
      std::vector<Tensor> r = {out.detach(), x.grad()};
      for (auto& [name, prm] : f.named_parameters()) r.push_back(prm.grad().clone());
      return r;
    };
    auto fused = grads(false), composed = grads(true);
    for (size_t i = 0; i < fused.size(); ++i) {
      const double scale = std::max(1.0, max(abs(composed[i])).item<double>());
      EXPECT_LT(max(abs(fused[i] - composed[i])).item<double>(), 2e-5 * scale) << "fused vs composed, tensor " << i;
    }
  }
  // With the distance tables at zero it is plain multi-head attention.
  RelativeMultiheadAttention r(RelativeMultiheadAttentionOptions(8, 2).max_relative_position(3));
  MultiheadAttention plain(MultiheadAttentionOptions(8, 2));
  {
    NoGradGuard ng;
    r.relative_key.zero_();
    r.relative_value.zero_();
    r.in_proj_bias.copy_(randn({24}));
  }
  StateDict sd = r.state_dict();
  sd.erase("relative_key");
  sd.erase("relative_value");
  plain.load_state_dict(sd);
  Tensor q = randn({5, 2, 8}), kv = randn({6, 2, 8});
  auto [a, wa] = r.forward(q, kv, kv);
  auto [b, wb] = plain.forward(q, kv, kv);
  EXPECT_LT(attn::max(attn::abs(a - b)).item<float>(), 1e-5);
  EXPECT_LT(attn::max(attn::abs(wa - wb)).item<float>(), 1e-6);
}

TEST(Relative, ExpandAndSumAgainstAnIndexAndFiniteDifferences) {
  // The index-free ops against gather / scatter_add with the explicit
  // (L, S) index clip(j - i, -K, K) + K, over L < S, L > S and K beyond both.
  for (auto [L, S, K] : {std::tuple<int64_t, int64_t, int64_t>{5, 9, 2}, {9, 4, 3}, {3, 3, 7}, {6, 6, 0}}) {
    SCOPED_TRACE(detail::str("L ", L, " S ", S, " K ", K));
    std::vector<int64_t> rel;
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < S; ++j) rel.push_back(std::clamp<int64_t>(j - i, -K, K) + K);
    Tensor idx = from_vector(rel, {1, L, S}).expand({2, L, S}).contiguous();
    Tensor r = randn({2, L, 2 * K + 1}), p = randn({2, L, S});
    EXPECT_TRUE(equal(F::relative_position_expand(r, S, K), gather(r, 2, idx)));
    EXPECT_TRUE(allclose(F::relative_position_sum(p, K), scatter_add(zeros({2, L, 2 * K + 1}), 2, idx, p), 1e-6, 1e-6));
  }
  Identity none;
  gradcheck("relative_position_expand", none, {randn({2, 4, 5})},
            [&](auto& x) { return std::vector<Tensor>{F::relative_position_expand(x[0], 7, 2)}; });
  gradcheck("relative_position_sum", none, {randn({2, 4, 7})},
            [&](auto& x) { return std::vector<Tensor>{F::relative_position_sum(x[0], 2)}; });
  expect_error([] { F::relative_position_expand(randn({3, 4}), 5, 2); }, {"relative_position_expand:", "(..., L, 5)"});
  expect_error([] { F::relative_position_sum(randn({3}), 2); }, {"relative_position_sum:", "(..., L, S)"});
}

TEST(Relative, T5Buckets) {
  // Exact buckets near 0, one per sign when bidirectional, logarithmic beyond,
  // the last bucket for everything past max_distance.
  Tensor b = t5_relative_position_bucket(1, 300, true, 32, 128);  // j - i = 0 .. 299
  auto at = [&](int64_t j) { return b.select(0, 0).select(0, j).item<int64_t>(); };
  for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(at(j), j == 0 ? 0 : 16 + j);
  EXPECT_EQ(at(299), 31);
  for (int64_t j = 1; j < 300; ++j) EXPECT_GE(at(j), at(j - 1));
  Tensor neg = t5_relative_position_bucket(300, 1, true, 32, 128);  // j - i = 0 .. -299
  EXPECT_EQ(neg.select(0, 5).select(0, 0).item<int64_t>(), 5);
  EXPECT_EQ(neg.select(0, 299).select(0, 0).item<int64_t>(), 15);
  Tensor uni = t5_relative_position_bucket(1, 5, false, 32, 128);  // future keys share bucket 0
  EXPECT_EQ(attn::max(uni.to(kFloat64)).item<double>(), 0.0);
  T5RelativePositionBias bias(T5RelativePositionBiasOptions(4));
  Tensor q = randn({1, 4, 7, 8}), k = randn({1, 4, 9, 8});
  Tensor out = F::scaled_dot_product_attention(q, k, k, F::SdpaOptions().attn_mask(bias.forward(7, 9)));
  out.sum().backward();
  EXPECT_TRUE(bias.relative_attention_bias.weight.grad().defined()) << "the bias learns through the fused kernel";
  expect_error([] { t5_relative_position_bucket(2, 2, true, 32, 5); }, {"t5_relative_position_bucket", "max_distance"});
}

// ---- Graph attention ------------------------------------------------------------------------------
TEST(Graph, GatGradientsAndSegmentSoftmax) {
  Tensor ei = from_vector(std::vector<int>{0, 1, 2, 2, 3, 1, /**/ 1, 2, 0, 2, 1, 1}, {2, 6});
  for (bool v2 : {false, true}) {
    auto o = GATConvOptions(3, 2).heads(2).concat(!v2);
    if (v2) {
      GATv2Conv m(o.share_weights(true));
      gradcheck("GATv2Conv", m, {randn({4, 3})}, [&](auto& x) { return std::vector<Tensor>{m.forward(x[0], ei)}; });
    } else {
      GATConv m(o);
      gradcheck("GATConv", m, {randn({4, 3})}, [&](auto& x) { return std::vector<Tensor>{m.forward(x[0], ei)}; });
    }
  }
  // Coefficients sum to 1 over each target's incoming edges; the self-loop
  // rule leaves exactly one loop per node; a node nothing points to gets the bias.
  GATConv m(GATConvOptions(3, 2).heads(3));
  {
    NoGradGuard ng;
    m.bias.copy_(from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {6}));
  }
  auto [out, att] = m.forward_with_attention(randn({5, 3}), ei);
  auto [used, alpha] = att;
  EXPECT_EQ(used.size(1), 4 + 5);  // 6 edges minus 2 self-loops, plus one per node
  Tensor sums = index_add(zeros({5, 3}), 0, used.select(0, 1).contiguous(), alpha);
  EXPECT_TRUE(allclose(sums, ones({5, 3}), 1e-6, 1e-6));
  GATConv no_loops(GATConvOptions(3, 2).add_self_loops(false));
  {
    NoGradGuard ng;
    no_loops.bias.fill_(0.5);
  }
  Tensor y = no_loops.forward(randn({5, 3}), ei);
  EXPECT_TRUE(equal(y.select(0, 4), full({2}, 0.5))) << "node 4 has no incoming edge";
  EXPECT_TRUE(equal(y.select(0, 3), full({2}, 0.5))) << "nor node 3";
  // share_weights: PyG's state_dict lists the shared projection under both names.
  GATv2Conv shared(GATv2ConvOptions(3, 2).share_weights(true));
  EXPECT_EQ(shared.state_dict().count("lin_r.weight"), 1u);
  EXPECT_EQ(shared.named_parameters().size(), 4u);  // att, bias, lin_l.weight, lin_l.bias
}

TEST(Graph, SeedDenseGat) {
  seeds::GAT gat(4, 3, 2, 0.5, 0.2, 2);
  auto names = names_of(gat);
  EXPECT_EQ(names.front(), "attention_0.W");
  EXPECT_EQ(names.back(), "out_attention.a");
  Tensor adj = from_vector(std::vector<float>{1, 1, 0, 0, 1, 1, 0, 0, 1}, {3, 3});
  gat.eval();
  Tensor y = gat.forward(randn({3, 4}), adj);
  EXPECT_TRUE(allclose(sum(exp(y), {1}), ones({3}), 1e-5, 1e-6));  // log-probabilities
  seeds::GraphAttentionLayer layer(3, 2, 0.0, 0.2);
  gradcheck("seeds::GraphAttentionLayer", layer, {randn({3, 3})},
            [&](auto& x) { return std::vector<Tensor>{layer.forward(x[0], adj)}; });
}

TEST(Graph, IndexAddAndIndexReduce) {
  Tensor a = zeros({3, 2}, kFloat64).requires_grad_(true);
  Tensor src = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}, {4, 2}).requires_grad_(true);
  Tensor idx = from_vector(std::vector<int>{2, 0, 2, 1});
  Tensor out = index_add(a, 0, idx, src);
  EXPECT_TRUE(equal(out.detach(), from_vector(std::vector<double>{3, 4, 7, 8, 6, 8}, {3, 2})));
  (out * from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2})).sum().backward();
  EXPECT_TRUE(equal(src.grad(), from_vector(std::vector<double>{5, 6, 1, 2, 5, 6, 3, 4}, {4, 2})));
  EXPECT_TRUE(equal(a.grad(), from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2})));
  Tensor m = index_reduce(full({3, 2}, -INFINITY, kFloat64), 0, idx, src.detach());
  EXPECT_TRUE(equal(m, from_vector(std::vector<double>{3, 4, 7, 8, 5, 6}, {3, 2})));
  Tensor keep = index_reduce(full({3, 2}, 9.0, kFloat64), 0, from_vector(std::vector<int>{0, 0, 0, 0}), src.detach(),
                             "amax", false);
  EXPECT_TRUE(equal(keep.select(0, 1), full({2}, 9.0, kFloat64))) << "untouched slices keep their value";
  EXPECT_TRUE(equal(keep.select(0, 0), from_vector(std::vector<double>{7, 8}, {2})));
  expect_error([&] { index_reduce(a, 0, idx, src); }, {"index_reduce:", "not differentiable"});
  expect_error([&] { index_add(a, 0, from_vector(std::vector<int>{0, 3, 0, 0}), src); },
               {"index_add:", "index 3 is out of range"});
  expect_error([&] { index_add(a, 0, idx, zeros({3, 2}, kFloat64)); }, {"index_add:", "source must be (4, 2)"});
  GATConv g(GATConvOptions(3, 2));
  expect_error([&] { g.forward(randn({4, 3}), from_vector(std::vector<int>{0, 5}, {2, 1})); },
               {"GATConv:", "out of range for 4 nodes"});
  expect_error([&] { g.forward(randn({4, 3}), from_vector(std::vector<int>{0, 1, 2}, {3, 1})); },
               {"GATConv:", "edge_index must be int64 (2, E)"});
}

// ---- KV cache ---------------------------------------------------------------------------------
TEST(KVCache, StepsEqualTheFullCausalForward) {
  for (bool bf : {false, true}) {
    MultiheadAttention m(MultiheadAttentionOptions(8, 2).batch_first(bf));
    const int64_t B = 2, T = 37;  // past the cache's first capacity (16), so it grows twice
    Tensor x = bf ? randn({B, T, 8}) : randn({T, B, 8});
    NoGradGuard ng;
    Tensor full = std::get<0>(m.forward(x, x, x, {}, false, {}, true, /*is_causal=*/true));
    KVCache cache;
    std::vector<Tensor> outs;
    for (int64_t t = 0; t < T;) {
      const int64_t n = t % 3 == 0 ? 1 : 2;  // single steps and pairs of steps
      const int64_t len = std::min(n, T - t);
      Tensor xt = x.narrow(bf ? 1 : 0, t, len);
      outs.push_back(std::get<0>(m.forward_cached(xt, xt, xt, cache)));
      t += len;
    }
    EXPECT_EQ(cache.length(), T);
    EXPECT_LT(attn::max(attn::abs(cat(outs, bf ? 1 : 0) - full)).item<float>(), 1e-5) << bf;
  }
}

TEST(KVCache, DecoderGreedyDecodingMatchesFullForward) {
  // A tiny Transformer decoder with an embedding and an output head, greedy
  // decoding: the cached steps give the same logits as the full forward over
  // the prefix at every step, and so the same tokens.
  const int64_t V = 11, E = 16, B = 2, S = 5;
  Generator gen(21);
  Embedding embed(EmbeddingOptions(V, E));
  Linear head(LinearOptions(E, V));
  TransformerDecoder dec(TransformerDecoderOptions(
      TransformerDecoderLayerOptions(E, 4).dim_feedforward(32).batch_first(true).norm_first(true), 2)
      .norm(LayerNormOptions({E})));
  dec.eval();
  Tensor memory = randn({B, S, E}, kFloat32, &gen);
  Tensor mem_pad = padding({0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, B, S);
  NoGradGuard ng;
  std::vector<TransformerDecoderCache> caches;
  std::vector<int64_t> tokens(B, 1);  // BOS = 1
  Tensor prefix = from_vector(tokens, {B, 1});
  for (int step = 0; step < 12; ++step) {
    Tensor last = prefix.narrow(1, prefix.size(1) - 1, 1);
    Tensor cached = head.forward(dec.forward_cached(embed.forward(last), memory, caches, mem_pad)).select(1, 0);
    Tensor full = head.forward(dec.forward(embed.forward(prefix), memory, {}, {}, {}, mem_pad, /*tgt_is_causal=*/true));
    full = full.select(1, full.size(1) - 1);
    ASSERT_LT(attn::max(attn::abs(cached - full)).item<float>(), 2e-5) << "step " << step;
    Tensor next = argmax(cached, 1, true);
    EXPECT_TRUE(equal(next, argmax(full, 1, true)));
    prefix = cat({prefix, next}, 1);
  }
  EXPECT_EQ(caches.size(), 2u);
  EXPECT_EQ(caches[0].self_attn.length(), 12);
  EXPECT_EQ(caches[1].cross_attn.length(), S);
}

TEST(KVCache, BadInput) {
  MultiheadAttention bkv(MultiheadAttentionOptions(4, 2).add_bias_kv(true));
  KVCache c;
  Tensor x = randn({1, 2, 4});
  expect_error([&] { bkv.forward_cached(x, x, x, c); }, {"forward_cached", "add_bias_kv"});
  MultiheadAttention m(MultiheadAttentionOptions(4, 2));
  expect_error([&] { m.forward_cached(x, {}, {}, c); }, {"forward_cached", "cache is empty"});
  m.forward_cached(x, x, x, c);
  Tensor y = randn({1, 3, 4});
  expect_error([&] { m.forward_cached(y, y, y, c); }, {"KVCache.append", "clear()"});
  expect_error([&] { m.forward_cached(x, x, x, c, zeros({2, 5}, kBool)); }, {"key_padding_mask must be bool (2, 2)"});
  EXPECT_EQ(c.length(), 1) << "refused calls leave the cache as it was";
}

TEST(Family, BadInput) {
  AdditiveAttention add(AdditiveAttentionOptions(3, 2, 4));
  expect_error([&] { add.forward(randn({2, 4}), randn({2, 5, 2})); }, {"AdditiveAttention:", "query must be (B, 3)"});
  expect_error([&] { add.forward(randn({2, 3}), randn({2, 5, 3})); }, {"AdditiveAttention:", "keys must be (B, S, 2)"});
  expect_error([&] { add.forward(randn({2, 3}), randn({2, 5, 2}), {}, zeros({2, 4}, kBool)); },
               {"AdditiveAttention:", "key_padding_mask must be bool (2, 5)"});
  expect_error([] { LuongAttention(LuongAttentionOptions(3, 4).score(LuongScore::Dot)); },
               {"LuongAttention:", "query_dim == key_dim"});
  expect_error([] { RotaryEmbedding(RotaryEmbeddingOptions(5)); }, {"RotaryEmbedding:", "even"});
  expect_error([] { F::rotary_embedding(randn({3, 5})); }, {"rotary_embedding:", "even"});
  expect_error([] { F::alibi_slopes(0); }, {"alibi_slopes:", "positive"});
  expect_error([] { seeds::MultiHeadAttention(6, 4); }, {"MultiHeadAttention:", "divisible"});
  seeds::MultiHeadAttention mh(4, 2);
  expect_error([&] { mh.forward(randn({1, 2, 4}), randn({1, 2, 4}), randn({1, 2, 4}), zeros({2, 2})); },
               {"MultiHeadAttention:", "mask must be bool"});
  expect_error([] { F::masked_softmax(randn({2, 3}), zeros({2, 3})); }, {"masked_softmax:", "mask must be bool"});
}

}  // namespace
}  // namespace attn
