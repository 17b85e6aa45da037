// Tensor core: factories, dtypes, views sharing storage, copies, printing,
// and the generator.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <cmath>

namespace attn {
namespace {

std::vector<float> values(const Tensor& t) {
  Tensor c = t.contiguous().to(kFloat32);
  return std::vector<float>(c.data<float>(), c.data<float>() + c.numel());
}

TEST(Tensor, DefaultIsUndefined) {
  Tensor t;
  EXPECT_FALSE(t.defined());
  EXPECT_THROW(t.shape(), Error);
  EXPECT_EQ(t.to_string(), "Tensor(undefined)");
}

TEST(Tensor, Factories) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.dtype(), kFloat32);
  EXPECT_EQ(z.numel(), 6);
  for (float v : values(z)) EXPECT_EQ(v, 0.0f);
  Tensor o = ones({4}, kFloat64);
  EXPECT_EQ(o.dtype(), kFloat64);
  EXPECT_EQ(o.sum().item<double>(), 4.0);
  EXPECT_EQ(full({2, 2}, 3.5).mean().item<float>(), 3.5f);
  EXPECT_EQ(values(arange(5)), (std::vector<float>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(5).dtype(), kInt64);
  EXPECT_EQ(values(arange(1, 2, 0.25, kFloat32)), (std::vector<float>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(values(linspace(0, 1, 5)), (std::vector<float>{0, 0.25, 0.5, 0.75, 1}));
  EXPECT_EQ(values(eye(2, 3)), (std::vector<float>{1, 0, 0, 0, 1, 0}));
  Tensor v = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(v.dtype(), kFloat64);
  EXPECT_EQ(v[1][2].item<double>(), 6.0);
  Tensor i = from_vector({3, 1, 2});
  EXPECT_EQ(i.dtype(), kInt64);
  Tensor b = from_vector(std::vector<bool>{true, false});
  EXPECT_EQ(b.dtype(), kBool);
  EXPECT_TRUE(zeros({2}, TensorOptions().dtype(kFloat64).requires_grad(true)).requires_grad());
  EXPECT_EQ(scalar_tensor(2.5).dim(), 0);
  EXPECT_EQ(zeros({0, 3}).numel(), 0);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor a = arange(0, 24, 1, kFloat32).reshape({2, 3, 4});
  Tensor t = a.transpose(0, 2);
  EXPECT_EQ(t.shape(), (Shape{4, 3, 2}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.impl().storage, a.impl().storage);
  EXPECT_EQ(t[3][2][1].item<float>(), a[1][2][3].item<float>());
  Tensor p = a.permute({1, 2, 0});
  EXPECT_EQ(p.shape(), (Shape{3, 4, 2}));
  EXPECT_EQ(p[2][1][1].item<float>(), a[1][2][1].item<float>());
  Tensor s = a.slice(2, 1, 4, 2);
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(values(s[0][0]), (std::vector<float>{1, 3}));
  EXPECT_EQ(values(a.select(1, -1)[0]), (std::vector<float>{8, 9, 10, 11}));
  EXPECT_EQ(values(a.narrow(0, 1, 1).reshape({-1}).slice(0, 0, 2)), (std::vector<float>{12, 13}));
  EXPECT_EQ(a.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  EXPECT_EQ(a.unsqueeze(0).squeeze().shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(zeros({1, 3, 1}).squeeze(0).shape(), (Shape{3, 1}));
  Tensor e = from_vector(std::vector<float>{1, 2, 3}).unsqueeze(1).expand({3, 4});
  EXPECT_EQ(e.strides(), (Shape{1, 0}));
  EXPECT_EQ(values(e.sum({1})), (std::vector<float>{4, 8, 12}));
  EXPECT_EQ(a.flatten(1).shape(), (Shape{2, 12}));
  // Writing through a view changes the base.
  a.select(0, 0).select(0, 0).fill_(-1);
  EXPECT_EQ(values(a.reshape({-1}).slice(0, 0, 5)), (std::vector<float>{-1, -1, -1, -1, 4}));
}

TEST(Tensor, ReshapeViewsWhenPossibleAndCopiesOtherwise) {
  Tensor a = arange(0, 12, 1, kFloat32).reshape({3, 4});
  EXPECT_EQ(a.reshape({2, 6}).impl().storage, a.impl().storage);
  Tensor t = a.t();
  EXPECT_THROW(t.view({12}), Error);
  Tensor r = t.reshape({12});
  EXPECT_NE(r.impl().storage, a.impl().storage);
  EXPECT_EQ(values(r).at(1), 4.0f);
  EXPECT_THROW(a.reshape({5, -1}), Error);
  EXPECT_THROW(a.reshape({-1, -1}), Error);
  // A view of a transposed view that keeps the dims merged is allowed.
  EXPECT_EQ(a.t().view({4, 3}).shape(), (Shape{4, 3}));
}

TEST(Tensor, CopiesAndConversions) {
  Tensor a = from_vector(std::vector<float>{1.5f, -2.25f, 0.0f});
  Tensor c = a.clone();
  c.fill_(7);
  EXPECT_EQ(a[0].item<float>(), 1.5f);
  EXPECT_EQ(a.to(kFloat64).dtype(), kFloat64);
  EXPECT_EQ(values(a.to(kInt64)), (std::vector<float>{1, -2, 0}));
  EXPECT_EQ(values(a.to(kBool)), (std::vector<float>{1, 1, 0}));
  Tensor bf = a.to(kBFloat16);
  EXPECT_EQ(bf.dtype(), kBFloat16);
  EXPECT_EQ(values(bf), (std::vector<float>{1.5f, -2.25f, 0.0f}));  // exactly representable
  EXPECT_EQ(a.to(kFloat32).impl_ptr(), a.impl_ptr());  // no copy for the same dtype
  Tensor d = zeros({2, 3});
  d.copy_(from_vector(std::vector<double>{1, 2, 3}));  // broadcasts and converts
  EXPECT_EQ(values(d), (std::vector<float>{1, 2, 3, 1, 2, 3}));
}

TEST(Tensor, ItemAndDataCheckTheirArguments) {
  Tensor a = ones({2});
  EXPECT_THROW(a.item<float>(), Error);
  EXPECT_THROW(a.data<double>(), Error);
  EXPECT_EQ(ones({1, 1}).item<int>(), 1);
}

TEST(Tensor, Printing) {
  Tensor a = from_vector(std::vector<float>{1, 2.5f, -3, 4}, {2, 2});
  EXPECT_EQ(a.to_string(), "tensor([[1.0000, 2.5000],\n        [-3.0000, 4.0000]])");
  EXPECT_EQ(arange(3).to_string(), "tensor([0, 1, 2])");
  EXPECT_EQ((arange(3) < arange(3) + arange(3)).to_string(), "tensor([False, True, True], dtype=bool)");
  EXPECT_EQ(scalar_tensor(2, kFloat64).to_string(), "tensor(2.0000, dtype=float64)");
  Tensor g = ones({2}).requires_grad_(true);
  EXPECT_EQ(g.to_string(), "tensor([1.0000, 1.0000], requires_grad=True)");
  EXPECT_EQ((g * 2.0).to_string(), "tensor([2.0000, 2.0000], grad_fn=<MulBackward>)");
  EXPECT_NE(zeros({100, 100}).to_string().find("..."), std::string::npos);
}

TEST(Generator, SameSeedSameNumbers) {
  Generator g1(42), g2(42), g3(43);
  Tensor a = randn({1000}, kFloat32, &g1), b = randn({1000}, kFloat32, &g2), c = randn({1000}, kFloat32, &g3);
  EXPECT_TRUE(equal(a, b));
  EXPECT_FALSE(equal(a, c));
  // Consecutive draws differ and the offset advances by what was used.
  Tensor d = randn({1000}, kFloat32, &g1);
  EXPECT_FALSE(equal(a, d));
  EXPECT_EQ(g1.offset(), 2000u);
  // Restoring (seed, offset) replays the stream.
  Generator g4(42);
  g4.set_offset(1000);
  EXPECT_TRUE(equal(d, randn({1000}, kFloat32, &g4)));
}

TEST(Generator, Distributions) {
  Generator g(7);
  Tensor n = randn({200000}, kFloat64, &g);
  EXPECT_NEAR(n.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(var(n).item<double>(), 1.0, 0.01);
  Tensor u = rand({200000}, kFloat64, &g);
  EXPECT_NEAR(u.mean().item<double>(), 0.5, 0.005);
  EXPECT_GE(min(u).item<double>(), 0.0);
  EXPECT_LT(max(u).item<double>(), 1.0);
  Tensor r = randint(-3, 4, {70000}, kInt64, &g);
  EXPECT_GE(min(r.to(kFloat64)).item<double>(), -3);
  EXPECT_LE(max(r.to(kFloat64)).item<double>(), 3);
  for (int v = -3; v <= 3; ++v)
    EXPECT_NEAR(eq(r, full({}, v, kInt64)).to(kFloat64).mean().item<double>(), 1.0 / 7, 0.01) << v;
}

TEST(Generator, PhiloxKnownAnswer) {
  // Random123's known-answer test for philox4x32-10 with zero counter and key.
  auto out = philox4x32({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(out[0], 0x6627e8d5u);
  EXPECT_EQ(out[1], 0xe169c58du);
  EXPECT_EQ(out[2], 0xbc57ac4cu);
  EXPECT_EQ(out[3], 0x9b00dbd8u);
}

TEST(Generator, BulkBlocksEqualSingleBlocks) {
  // The SIMD bulk path must give block(i) word for word: odd counts, a
  // counter crossing 2^32, both streams, a 64-bit seed.
  Generator g(0x123456789abcdefULL);
  for (uint64_t first : {uint64_t{0}, uint64_t{5}, (uint64_t{1} << 32) - 3}) {
    for (int64_t n : {1, 7, 8, 9, 37}) {
      for (uint32_t stream : {0u, 1u}) {
        std::vector<uint32_t> w(static_cast<size_t>(4 * n));
        g.blocks(first, n, w.data(), stream);
        for (int64_t i = 0; i < n; ++i) {
          auto b = g.block(first + static_cast<uint64_t>(i), stream);
          for (int x = 0; x < 4; ++x) ASSERT_EQ(w[4 * i + x], b[x]) << first << " " << n << " " << i << " " << x;
        }
      }
    }
  }
}

}  // namespace
}  // namespace attn

// Large storages come from a cache of freed blocks (outside sanitizer
// builds): a reused block must still start as zeros when zeros are asked
// for, and a block must never serve two live tensors.
TEST(Storage, ReusedLargeBlocksAreZeroedAndNeverShared) {
  const int64_t n = (int64_t{3} << 20) / 4 + 17;  // 3 MiB and a little, not a size class
  for (int round = 0; round < 3; ++round) {
    attn::Tensor a = attn::zeros({n});
    for (int64_t i = 0; i < n; i += 4096) ASSERT_EQ(a.data<float>()[i], 0.0f) << "round " << round << " at " << i;
    ASSERT_EQ(a.data<float>()[n - 1], 0.0f);
    attn::Tensor b = attn::zeros({n});
    EXPECT_NE(a.data<float>(), b.data<float>());
    std::fill(a.data<float>(), a.data<float>() + n, 7.0f);  // dirty the block before it goes back
    std::fill(b.data<float>(), b.data<float>() + n, 9.0f);
  }
  attn::Tensor c = attn::ones({n});
  EXPECT_EQ(c.data<float>()[n - 1], 1.0f);
}
