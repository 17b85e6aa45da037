// Forward values of the ops against naive loops and hand-computed answers
// (gradients are covered by test_gradcheck, PyTorch by test_parity).
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <string>

namespace attn {
namespace {

std::vector<double> vals(const Tensor& t) {
  Tensor c = t.contiguous().to(kFloat64);
  return std::vector<double>(c.data<double>(), c.data<double>() + c.numel());
}

double at(const Tensor& t, std::initializer_list<int64_t> idx) {
  Tensor v = t;
  for (int64_t i : idx) v = v.select(0, i);
  return v.to(kFloat64).item<double>();
}

// Naive (B, M, K) @ (B, K, N) in float64.
Tensor naive_bmm(const Tensor& a, const Tensor& b) {
  const int64_t B = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
  std::vector<double> out(B * M * N, 0.0);
  std::vector<double> av = vals(a), bv = vals(b);
  for (int64_t i = 0; i < B; ++i)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += av[(i * M + m) * K + k] * bv[(i * K + k) * N + n];
        out[(i * M + m) * N + n] = s;
      }
  return from_vector(out, {B, M, N});
}

TEST(Ops, BroadcastArithmetic) {
  Tensor a = from_vector(std::vector<float>{1, 2, 3}, {3, 1});
  Tensor b = from_vector(std::vector<float>{10, 20}, {2});
  EXPECT_EQ(vals(a + b), (std::vector<double>{11, 21, 12, 22, 13, 23}));
  EXPECT_EQ(vals(a * b - 1.0), (std::vector<double>{9, 19, 19, 39, 29, 59}));
  EXPECT_EQ(vals(1.0 / a), (std::vector<double>{1, 0.5, static_cast<double>(1.0f / 3.0f)}));
  EXPECT_EQ(vals(pow(a, 2.0)), (std::vector<double>{1, 4, 9}));
  EXPECT_EQ(vals(maximum(a, full({1}, 2.0))), (std::vector<double>{2, 2, 3}));
  EXPECT_EQ(vals(clamp(a, 1.5, 2.5)), (std::vector<double>{1.5, 2, 2.5}));
  EXPECT_EQ(vals(arange(4) * arange(4)), (std::vector<double>{0, 1, 4, 9}));  // int64 arithmetic
  EXPECT_EQ(broadcast_shapes({2, 1, 4}, {3, 1}), (Shape{2, 3, 4}));
}

TEST(Ops, ComparisonsWhereMaskedFill) {
  Tensor a = from_vector(std::vector<float>{1, 5, 3});
  EXPECT_EQ(vals(a > 2.0), (std::vector<double>{0, 1, 1}));
  EXPECT_EQ(vals(a == 3.0), (std::vector<double>{0, 0, 1}));
  EXPECT_EQ(vals(~(a > 2.0) | (a == 3.0)), (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(vals(where(a > 2.0, a, -a)), (std::vector<double>{-1, 5, 3}));
  EXPECT_EQ(vals(masked_fill(a, a > 4.0, -1e9)), (std::vector<double>{1, -1e9, 3}));
  EXPECT_TRUE(allclose(a, a + 1e-7));
  EXPECT_FALSE(allclose(a, a + 1e-3));
}

TEST(Ops, Reductions) {
  Tensor x = arange(0, 24, 1, kFloat64).reshape({2, 3, 4});
  EXPECT_EQ(sum(x).item<double>(), 276);
  EXPECT_EQ(sum(x, {1}).shape(), (Shape{2, 4}));
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{2, 1, 4}));
  EXPECT_EQ(vals(sum(x, {0, 2})), (std::vector<double>{60, 92, 124}));
  EXPECT_EQ(vals(mean(x, {-1})), (std::vector<double>{1.5, 5.5, 9.5, 13.5, 17.5, 21.5}));
  EXPECT_NEAR(var(x, {2})[0][0].item<double>(), 5.0 / 3.0, 1e-12);
  EXPECT_NEAR(var(x, {2}, 0)[0][0].item<double>(), 1.25, 1e-12);
  auto [v, i] = max(x, 1);
  EXPECT_EQ(vals(v.select(0, 0)), (std::vector<double>{8, 9, 10, 11}));
  EXPECT_EQ(vals(i.select(0, 0)), (std::vector<double>{2, 2, 2, 2}));
  EXPECT_EQ(argmax(x).item<int64_t>(), 23);
  EXPECT_EQ(vals(argmin(x, -1, true).reshape({-1})), (std::vector<double>{0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(amax(x, {0, 1}).shape(), (Shape{4}));
  EXPECT_NEAR(logsumexp(from_vector(std::vector<double>{1000, 1000}), {0}).item<double>(), 1000 + std::log(2.0), 1e-9);
  EXPECT_EQ(sum(arange(5)).dtype(), kInt64);
  EXPECT_EQ(sum(arange(5)).item<int64_t>(), 10);
  EXPECT_EQ(sum(zeros({0, 3}), {0}).shape(), (Shape{3}));  // empty reduction gives 0
  EXPECT_TRUE(std::isnan(mean(zeros({0}), {0}).item<double>()));
  // first index of a tie, as PyTorch
  EXPECT_EQ(argmax(from_vector(std::vector<float>{1, 3, 3, 2})).item<int64_t>(), 1);
}

TEST(Ops, MatmulMatchesNaiveLoops) {
  Generator g(3);
  for (auto [B, M, K, N] : std::vector<std::array<int64_t, 4>>{{1, 1, 1, 1}, {2, 3, 4, 5}, {3, 17, 33, 9}, {1, 64, 1, 7}}) {
    Tensor a = randn({B, M, K}, kFloat64, &g), b = randn({B, K, N}, kFloat64, &g);
    EXPECT_TRUE(allclose(matmul(a, b), naive_bmm(a, b), 1e-12, 1e-12));
    EXPECT_TRUE(allclose(bmm(a, b), naive_bmm(a, b), 1e-12, 1e-12));
    // transposed views go to BLAS with trans flags, no copy
    Tensor at = a.transpose(1, 2).contiguous().transpose(1, 2);
    Tensor bt = b.transpose(1, 2).contiguous().transpose(1, 2);
    EXPECT_TRUE(allclose(matmul(at, bt), naive_bmm(a, b), 1e-12, 1e-12));
    // strides BLAS cannot take (every other column) are copied first
    Tensor wide = randn({B, M, 2 * K}, kFloat64, &g);
    Tensor sl = wide.slice(2, 0, 2 * K, 2);
    EXPECT_TRUE(allclose(matmul(sl, b), naive_bmm(sl.contiguous(), b), 1e-12, 1e-12));
  }
  // batch broadcasting and 1-d operands
  Tensor a = randn({2, 1, 3, 4}, kFloat64, &g), b = randn({5, 4, 2}, kFloat64, &g);
  Tensor c = matmul(a, b);
  EXPECT_EQ(c.shape(), (Shape{2, 5, 3, 2}));
  EXPECT_TRUE(allclose(c[1][3], mm(a[1][0], b[3]), 1e-12, 1e-12));
  EXPECT_EQ(matmul(randn({4}), randn({4})).dim(), 0);
  EXPECT_EQ(matmul(randn({4}), randn({2, 4, 3})).shape(), (Shape{2, 3}));
  EXPECT_EQ(matmul(randn({2, 3, 4}), randn({4})).shape(), (Shape{2, 3}));
  // K = 0 gives zeros, M = 0 an empty result
  EXPECT_EQ(vals(matmul(zeros({2, 0}), zeros({0, 3}))), std::vector<double>(6, 0.0));
  EXPECT_EQ(matmul(zeros({0, 4}), zeros({4, 3})).shape(), (Shape{0, 3}));
  EXPECT_EQ(vals(mm(from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}), eye(2))), (std::vector<double>{1, 2, 3, 4}));
}

TEST(Ops, Float32MatmulOnTheTileProductMatchesFloat64) {
  // Many rows against a small B run on the attention kernel's tile product
  // (M >= 4096, K <= 1024): B as rows, B transposed (a Linear's weight,
  // copied once), with and without bias, shared and per-batch B, row counts
  // off the row block and column counts off the 64-column chunks.
  Generator g(8);
  auto close = [](const Tensor& got, const Tensor& ref, int64_t K) {
    const double err = amax(abs(got.to(kFloat64) - ref).reshape({-1}), {0}).item<double>();
    // float32 sums of K products of N(0, 1) values: K roundings of terms whose
    // magnitudes sum to about K
    EXPECT_LT(err, 4.0 * K * K * std::numeric_limits<float>::epsilon()) << "K = " << K;
  };
  // and fewer rows (32 ... 4095) against a transposed B with 256 <= K <=
  // 3072, N >= 256: the tile product over packed column panels of B (the
  // last one partial; 64 columns wide where 128 would leave an odd count)
  for (auto [M, K, N] : std::vector<std::array<int64_t, 3>>{{4100, 40, 70},
                                                            {4099, 96, 288},
                                                            {5000, 17, 16},
                                                            {197, 300, 270},
                                                            {64, 1024, 256},
                                                            {1000, 256, 390},
                                                            {49, 3072, 768},
                                                            {33, 1100, 300}}) {
    SCOPED_TRACE(std::to_string(M) + " x " + std::to_string(K) + " x " + std::to_string(N));
    Tensor a = randn({M, K}, kFloat32, &g), b = randn({K, N}, kFloat32, &g), w = randn({N, K}, kFloat32, &g);
    Tensor bias = randn({N}, kFloat32, &g);
    const Tensor a64 = a.to(kFloat64), b64 = b.to(kFloat64), w64 = w.to(kFloat64), bias64 = bias.to(kFloat64);
    close(matmul(a, b), matmul(a64, b64), K);
    close(F::linear(a, w, bias), F::linear(a64, w64, bias64), K);
    close(F::linear(a, w), F::linear(a64, w64), K);
  }
  Tensor a = randn({2, 4100, 24}, kFloat32, &g), b = randn({2, 24, 33}, kFloat32, &g), s = randn({24, 33}, kFloat32, &g);
  close(bmm(a, b), bmm(a.to(kFloat64), b.to(kFloat64)), 24);
  close(matmul(a, s), matmul(a.to(kFloat64), s.to(kFloat64)), 24);
  close(bmm(a, b.transpose(1, 2).contiguous().transpose(1, 2)), bmm(a.to(kFloat64), b.to(kFloat64)), 24);
  Tensor p = randn({2, 197, 300}, kFloat32, &g), q = randn({2, 270, 300}, kFloat32, &g);  // per-batch B^T
  close(bmm(p, q.transpose(1, 2)), bmm(p.to(kFloat64), q.to(kFloat64).transpose(1, 2)), 300);
}

// Direct convolution in float64, the definition.
Tensor naive_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t s, int64_t p, int64_t d, int64_t G) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), O = w.size(0), kH = w.size(2), kW = w.size(3);
  const int64_t oH = (H + 2 * p - d * (kH - 1) - 1) / s + 1, oW = (W + 2 * p - d * (kW - 1) - 1) / s + 1;
  const int64_t Cg = C / G, Og = O / G;
  std::vector<double> xv = vals(x), wv = vals(w), bv = b.defined() ? vals(b) : std::vector<double>(O, 0.0);
  std::vector<double> out(N * O * oH * oW);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oy = 0; oy < oH; ++oy)
        for (int64_t ox = 0; ox < oW; ++ox) {
          double acc = bv[o];
          const int64_t gr = o / Og;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t ky = 0; ky < kH; ++ky)
              for (int64_t kx = 0; kx < kW; ++kx) {
                const int64_t iy = oy * s - p + ky * d, ix = ox * s - p + kx * d;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                acc += xv[((n * C + gr * Cg + c) * H + iy) * W + ix] * wv[((o * Cg + c) * kH + ky) * kW + kx];
              }
          out[((n * O + o) * oH + oy) * oW + ox] = acc;
        }
  return from_vector(out, {N, O, oH, oW});
}

TEST(Ops, Conv2dMatchesDirectConvolution) {
  Generator g(5);
  struct Geo { int64_t N, C, H, W, O, k, s, p, d, G; };
  for (Geo c : {Geo{1, 1, 5, 5, 1, 3, 1, 0, 1, 1}, Geo{2, 3, 7, 6, 4, 3, 2, 1, 1, 1}, Geo{1, 4, 9, 9, 6, 3, 1, 2, 2, 2},
                Geo{3, 6, 5, 8, 6, 1, 1, 0, 1, 6}, Geo{1, 2, 4, 4, 2, 4, 1, 0, 1, 1}}) {
    Tensor x = randn({c.N, c.C, c.H, c.W}, kFloat64, &g);
    Tensor w = randn({c.O, c.C / c.G, c.k, c.k}, kFloat64, &g);
    Tensor b = randn({c.O}, kFloat64, &g);
    Tensor y = F::conv2d(x, w, F::Conv2dFuncOptions().bias(b).stride(c.s).padding(c.p).dilation(c.d).groups(c.G));
    EXPECT_TRUE(allclose(y, naive_conv2d(x, w, b, c.s, c.p, c.d, c.G), 1e-12, 1e-12)) << c.C << " " << c.G;
  }
}

TEST(Ops, Pooling) {
  Tensor x = arange(0, 16, 1, kFloat32).reshape({1, 1, 4, 4});
  EXPECT_EQ(vals(F::max_pool2d(x, F::MaxPool2dFuncOptions(2))), (std::vector<double>{5, 7, 13, 15}));
  EXPECT_EQ(vals(F::avg_pool2d(x, F::AvgPool2dFuncOptions(2))), (std::vector<double>{2.5, 4.5, 10.5, 12.5}));
  EXPECT_EQ(vals(F::adaptive_avg_pool2d(x, 1)), (std::vector<double>{7.5}));
  EXPECT_EQ(F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2).ceil_mode(true)).shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(F::adaptive_avg_pool2d(randn({2, 5, 7}), {3, 2}).shape(), (Shape{2, 3, 2}));
}

TEST(Ops, SoftmaxAndLayerNorm) {
  Tensor x = from_vector(std::vector<double>{1e4, 1e4 + 1, -1e4, 0, 0, 0}, {2, 3});
  Tensor s = F::softmax(x, 1);
  EXPECT_NEAR(at(s, {0, 1}), 1.0 / (1.0 + std::exp(-1.0)), 1e-12);
  EXPECT_NEAR(at(s, {1, 2}), 1.0 / 3, 1e-12);
  EXPECT_NEAR(at(F::log_softmax(x, 1), {0, 2}), -2e4 - 1 - std::log1p(std::exp(-1.0)), 1e-9);
  Tensor y = F::layer_norm(randn({4, 16}, kFloat64) * 5.0 + 3.0, {16});
  EXPECT_LT(amax(abs(mean(y, {1})), {0}).item<double>(), 1e-12);
  EXPECT_NEAR(var(y, {1}, 0)[2].item<double>(), 1.0, 1e-3);  // eps = 1e-5 shrinks it slightly
}

TEST(Ops, JoinsAndIndexing) {
  Tensor a = arange(0, 6, 1, kFloat32).reshape({2, 3});
  EXPECT_EQ(vals(cat({a, a * 10.0}, 0).select(0, 2)), (std::vector<double>{0, 10, 20}));
  EXPECT_EQ(cat({a, a}, -1).shape(), (Shape{2, 6}));
  EXPECT_EQ(stack({a, a, a}, 1).shape(), (Shape{2, 3, 3}));
  auto parts = split(arange(7), 3);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].numel(), 1);
  EXPECT_EQ(split(arange(7), std::vector<int64_t>{2, 5})[1].numel(), 5);
  EXPECT_EQ(chunk(arange(5), 2)[1].numel(), 2);
  EXPECT_EQ(vals(index_select(a, 1, from_vector({2, 0}))), (std::vector<double>{2, 0, 5, 3}));
  EXPECT_EQ(vals(gather(a, 1, from_vector({2, 2, 1, 0}, {2, 2}))), (std::vector<double>{2, 2, 4, 3}));
  EXPECT_EQ(vals(scatter_add(zeros({3}), 0, from_vector({0, 2, 0}), ones({3}))), (std::vector<double>{2, 0, 1}));
  EXPECT_EQ(vals(pad(from_vector(std::vector<float>{1, 2}), {1, 2}, 9)), (std::vector<double>{9, 1, 2, 9, 9}));
  EXPECT_EQ(vals(pad(from_vector(std::vector<float>{1, 2, 3}), {-1, 0})), (std::vector<double>{2, 3}));
  EXPECT_EQ(vals(tril(ones({3, 3}))), (std::vector<double>{1, 0, 0, 1, 1, 0, 1, 1, 1}));
  EXPECT_EQ(vals(triu(ones({2, 3}), 1)), (std::vector<double>{0, 1, 1, 0, 0, 1}));
  EXPECT_EQ(vals(F::embedding(from_vector({1, 1, 0}), a)), (std::vector<double>{3, 4, 5, 3, 4, 5, 0, 1, 2}));
}

TEST(Ops, Losses) {
  Tensor logits = from_vector(std::vector<double>{2, 0, 0, 0, 3, 0}, {2, 3});
  Tensor target = from_vector({0, 1});
  const double l0 = -std::log(std::exp(2.0) / (std::exp(2.0) + 2)), l1 = -std::log(std::exp(3.0) / (std::exp(3.0) + 2));
  EXPECT_NEAR(F::cross_entropy(logits, target).item<double>(), (l0 + l1) / 2, 1e-12);
  EXPECT_NEAR(F::cross_entropy(logits, from_vector({0, -100})).item<double>(), l0, 1e-12);
  EXPECT_NEAR(F::mse_loss(ones({4}), zeros({4}), kSum).item<float>(), 4.0f, 0);
  EXPECT_NEAR(F::smooth_l1_loss(full({1}, 3.0), zeros({1})).item<float>(), 2.5f, 1e-6);
  EXPECT_NEAR(F::binary_cross_entropy_with_logits(zeros({1}), ones({1})).item<float>(), std::log(2.0f), 1e-6);
  // Large logits stay finite.
  EXPECT_NEAR(F::binary_cross_entropy_with_logits(full({1}, -100.0), ones({1})).item<float>(), 100.0f, 1e-3);
}

TEST(Ops, Dropout) {
  Tensor x = ones({100000}, kFloat64);
  Generator g1(9), g2(9);
  Tensor a = F::dropout(x, 0.3, true, &g1), b = F::dropout(x, 0.3, true, &g2);
  EXPECT_TRUE(equal(a, b));  // same seed, same mask
  const double kept = (a != 0.0).to(kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 0.7, 0.005);
  EXPECT_NEAR(a.mean().item<double>(), 1.0, 0.01);  // scaling by 1/(1-p) preserves the mean
  EXPECT_TRUE(F::dropout(x, 0.3, false).is_same(x));
  EXPECT_EQ(F::dropout(x, 1.0).sum().item<double>(), 0.0);
}

TEST(Ops, Activations) {
  Tensor x = from_vector(std::vector<double>{-2, -0.5, 0, 0.5, 2});
  EXPECT_EQ(vals(relu(x)), (std::vector<double>{0, 0, 0, 0.5, 2}));
  EXPECT_NEAR(at(F::gelu(x), {4}), 2 * 0.5 * (1 + std::erf(2 / std::sqrt(2.0))), 1e-12);
  EXPECT_NEAR(at(F::elu(x, 2.0), {0}), 2 * (std::exp(-2.0) - 1), 1e-12);
  EXPECT_NEAR(at(F::leaky_relu(x, 0.1), {1}), -0.05, 1e-12);
  EXPECT_NEAR(at(sigmoid(full({1}, -800.0, kFloat64)), {0}), 0.0, 1e-300);
  EXPECT_NEAR(at(F::softplus(x), {4}), std::log1p(std::exp(2.0)), 1e-12);
}

}  // namespace
}  // namespace attn
