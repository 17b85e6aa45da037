// The thread pool: results are bit-identical at 1, 2, 3, 4 and 7 threads
// (random draws, elementwise, reductions, GEMM on both sides of the tiling
// threshold, convolution, fused attention forward and backward, and a short
// training run with dropout and AdamW), and workers flush denormals.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <cfloat>
#include <functional>
#include <string>
#include <vector>

namespace attn {
namespace {

struct Outputs {
  Tensor draw, y, loss, gx, gw;
};

Outputs run(int threads) {
  set_num_threads(threads);
  Generator g(11);
  Outputs o;
  o.draw = randn({300001}, kFloat32, &g);
  Tensor x = randn({8, 3, 17, 19}, kFloat32, &g).requires_grad_(true);
  Tensor w = randn({6, 3, 3, 3}, kFloat32, &g).requires_grad_(true);
  Tensor h = F::conv2d(x, w, F::Conv2dFuncOptions().padding(1));
  Tensor z = F::layer_norm(h.flatten(1), {6 * 17 * 19});
  Tensor m = matmul(z.reshape({8, 6 * 17, 19}), randn({19, 33}, kFloat32, &g));
  o.y = F::softmax(F::gelu(m), -1);
  o.loss = (o.y * randn(o.y.shape(), kFloat32, &g)).sum();
  o.loss.backward();
  o.gx = x.grad();
  o.gw = w.grad();
  return o;
}

// The thread counts every determinism test runs at (more than the 2 cores
// here: oversubscribed counts must give the same bits too).
const int kThreadCounts[] = {1, 2, 3, 4, 7};

// Runs f at each thread count and requires every named tensor to equal the
// single-threaded result bit for bit.
void expect_same_bits_at_any_thread_count(const std::function<std::vector<std::pair<std::string, Tensor>>()>& f) {
  const int before = get_num_threads();
  set_num_threads(1);
  const auto ref = f();
  for (int n : kThreadCounts) {
    set_num_threads(n);
    const auto got = f();
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_TRUE(equal(got[i].second, ref[i].second)) << ref[i].first << " differs at " << n << " threads";
  }
  set_num_threads(before);
}

TEST(Threads, BitIdenticalAcrossThreadCounts) {
  expect_same_bits_at_any_thread_count([] {
    Outputs o = run(get_num_threads());
    return std::vector<std::pair<std::string, Tensor>>{
        {"draw", o.draw}, {"y", o.y}, {"loss", o.loss}, {"gx", o.gx}, {"gw", o.gw}};
  });
}

TEST(Threads, MatmulTilesBitIdentical) {
  // (2100, 200) x (200, 300): 2.5e8 flops, cut into 4 row panels (the tiled
  // path); and a batched product whose batches are the tasks.
  expect_same_bits_at_any_thread_count([] {
    Generator g(3);
    Tensor a = randn({2100, 200}, kFloat32, &g).requires_grad_(true);
    Tensor b = randn({200, 300}, kFloat32, &g).requires_grad_(true);
    Tensor c = matmul(a, b);
    Tensor bb = randn({5, 70, 90}, kFloat32, &g).requires_grad_(true);
    Tensor d = matmul(bb, randn({90, 40}, kFloat32, &g));
    // many rows against a small weight: the tile product's path
    Tensor x = randn({4100, 96}, kFloat32, &g).requires_grad_(true);
    Tensor w = randn({200, 96}, kFloat32, &g).requires_grad_(true);
    Tensor y = F::linear(x, w, randn({200}, kFloat32, &g));
    // fewer rows against a wider weight: the tile product over packed panels
    Tensor x2 = randn({300, 512}, kFloat32, &g).requires_grad_(true);
    Tensor w2 = randn({300, 512}, kFloat32, &g).requires_grad_(true);
    Tensor y2 = F::linear(x2, w2);
    ((c * c).sum() + d.sum() + (y * y).sum() + (y2 * y2).sum()).backward();
    return std::vector<std::pair<std::string, Tensor>>{
        {"matmul", c}, {"batched", d}, {"grad a", a.grad()}, {"grad b", b.grad()}, {"grad batched", bb.grad()},
        {"linear", y}, {"grad x", x.grad()}, {"grad w", w.grad()}, {"linear panels", y2}, {"grad x2", x2.grad()},
        {"grad w2", w2.grad()}};
  });
}

TEST(Threads, Conv2dBitIdentical) {
  expect_same_bits_at_any_thread_count([] {
    Generator g(4);
    Tensor x = randn({6, 8, 33, 29}, kFloat32, &g).requires_grad_(true);
    Tensor w = randn({16, 4, 3, 3}, kFloat32, &g).requires_grad_(true);
    Tensor bias = randn({16}, kFloat32, &g).requires_grad_(true);
    Tensor y = F::conv2d(x, w, F::Conv2dFuncOptions().bias(bias).stride(2).padding(1).groups(2));
    (y * randn(y.shape(), kFloat32, &g)).sum().backward();
    return std::vector<std::pair<std::string, Tensor>>{
        {"conv2d", y}, {"grad x", x.grad()}, {"grad w", w.grad()}, {"grad bias", bias.grad()}};
  });
}

TEST(Threads, AttentionForwardAndBackwardBitIdentical) {
  // Several query blocks and key tiles per head, GQA, a float mask with a
  // gradient, dropout; then a causal sliding window with a stride (the
  // two-pass sparse path).
  expect_same_bits_at_any_thread_count([] {
    Generator g(5);
    Tensor q = randn({2, 4, 300, 32}, kFloat32, &g).requires_grad_(true);
    Tensor k = randn({2, 2, 270, 32}, kFloat32, &g).requires_grad_(true);
    Tensor v = randn({2, 2, 270, 16}, kFloat32, &g).requires_grad_(true);
    Tensor mask = randn({2, 1, 300, 270}, kFloat32, &g).requires_grad_(true);
    Generator drop(6);
    auto [out, lse] = F::scaled_dot_product_attention_with_lse(
        q, k, v, F::SdpaOptions().attn_mask(mask).enable_gqa(true).dropout_p(0.1).generator(&drop));
    Tensor sparse = F::scaled_dot_product_attention(
        q, k.narrow(2, 0, 270), v, F::SdpaOptions().enable_gqa(true).is_causal(true).window(F::Window(40, 0)).stride(9));
    ((out * randn(out.shape(), kFloat32, &g)).sum() + (sparse * sparse).sum()).backward();
    return std::vector<std::pair<std::string, Tensor>>{{"out", out},       {"lse", lse},       {"sparse", sparse},
                                                       {"dq", q.grad()},   {"dk", k.grad()},   {"dv", v.grad()},
                                                       {"dmask", mask.grad()}};
  });
}

TEST(Threads, TrainingRunBitIdentical) {
  // Ten AdamW steps of a Transformer encoder layer with dropout and a
  // classifier, from the same seed: every parameter and the loss curve.
  expect_same_bits_at_any_thread_count([] {
    manual_seed(7);
    nn::TransformerEncoderLayer layer(
        nn::TransformerEncoderLayerOptions(32, 4).dim_feedforward(64).dropout(0.1).batch_first(true));
    nn::Linear head(nn::LinearOptions(32, 5));
    std::vector<Tensor> params;
    for (auto& [n, p] : layer.named_parameters()) params.push_back(p);
    for (auto& [n, p] : head.named_parameters()) params.push_back(p);
    optim::AdamW opt(params, optim::AdamWOptions(3e-3));
    Generator data(8);
    std::vector<std::pair<std::string, Tensor>> out;
    std::vector<double> losses;
    for (int step = 0; step < 10; ++step) {
      Tensor x = randn({8, 40, 32}, kFloat32, &data);
      Tensor y = randint(0, 5, {8}, kInt64, &data);
      Tensor logits = head.forward(layer.forward(x).mean({1}));
      Tensor loss = F::cross_entropy(logits, y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      losses.push_back(loss.item<double>());
    }
    out.push_back({"losses", from_vector(losses)});
    for (auto& [n, p] : layer.named_parameters()) out.push_back({n, p.detach().clone()});
    for (auto& [n, p] : head.named_parameters()) out.push_back({"head." + n, p.detach().clone()});
    return out;
  });
}

TEST(Threads, SetAndGet) {
  const int before = get_num_threads();
  set_num_threads(1);
  EXPECT_EQ(get_num_threads(), 1);
  set_num_threads(before);
  EXPECT_THROW(set_num_threads(0), Error);
}

TEST(Threads, WorkersFlushDenormals) {
  // FLT_MIN * 0.5 is subnormal; with flush-to-zero the kernel's product is 0.
  Tensor x = full({100000}, FLT_MIN, kFloat32);
  Tensor y = x * 0.5;
  EXPECT_EQ(y[0].item<float>(), 0.0f);
  EXPECT_EQ(y[99999].item<float>(), 0.0f);
}

}  // namespace
}  // namespace attn
