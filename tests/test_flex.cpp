// flex_attention: each example modifier against the existing path that
// computes the same attention (SDPA's options, or SDPA with a float mask
// built by differentiable ops), values and gradients of q, k, v and of the
// Captured tensors; the dual numbers against finite differences; float64
// gradients against central finite differences; block masks; determinism
// across thread counts; errors.
#include <attn/attn.h>
#include <attn/flex.h>
#include <gtest/gtest.h>

#include <cmath>

namespace attn {
namespace {

namespace F = nn::functional;
namespace flex = nn::functional::flex;

double diff(const Tensor& a, const Tensor& b) { return max(abs(a.to(kFloat64) - b.to(kFloat64))).item<double>(); }

struct Inputs {
  Tensor q, k, v, dout;
};

Inputs draw(int64_t B, int64_t Hq, int64_t Hk, int64_t L, int64_t S, int64_t E, DType dt = kFloat32,
            uint64_t seed = 3) {
  Generator g(seed);
  Inputs in;
  in.q = randn({B, Hq, L, E}, kFloat64, &g).to(dt).requires_grad_();
  in.k = randn({B, Hk, S, E}, kFloat64, &g).to(dt).requires_grad_();
  in.v = randn({B, Hk, S, E}, kFloat64, &g).to(dt).requires_grad_();
  in.dout = randn({B, Hq, L, E}, kFloat64, &g).to(dt);
  return in;
}

// Output and gradients of q, k, v (and of `extra`) for attention `f`.
std::vector<Tensor> run(const Inputs& in, const std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>& f,
                        const std::vector<Tensor>& extra = {}) {
  Tensor q = in.q.detach().requires_grad_(), k = in.k.detach().requires_grad_(), v = in.v.detach().requires_grad_();
  Tensor out = f(q, k, v);
  std::vector<Tensor> wrt = {q, k, v};
  wrt.insert(wrt.end(), extra.begin(), extra.end());
  auto g = autograd::grad({out}, wrt, {in.dout});
  g.insert(g.begin(), out.detach());
  return g;
}

void expect_close(const std::vector<Tensor>& got, const std::vector<Tensor>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const char* names[] = {"out", "dq", "dk", "dv", "dcaptured", "dcaptured2"};
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(got[i].defined() && want[i].defined()) << what << " " << names[i];
    const double scale = std::max(1.0, max(abs(want[i].to(kFloat64))).item<double>());
    EXPECT_LT(diff(got[i], want[i]), tol * scale) << what << " " << names[i];
  }
}

TEST(Flex, DualNumbersMatchFiniteDifferences) {
  auto f = [](auto s) {
    using std::exp, std::log, std::tanh, std::sqrt, std::abs, std::sin, std::cos, std::min, std::max;
    return 3.0 * tanh(s / 3.0) + exp(s * 0.1) - log(2.0 + s * s) + sqrt(1.0 + s * s) + abs(s - 0.2) * sin(s) -
           cos(2.0 * s) / (1.5 + max(s, 0.1)) + min(s, 0.3) * 2 - 1 / (3 + s);
  };
  for (double x : {-1.7, -0.3, 0.45, 2.2}) {
    const flex::Dual<double> r = f(flex::Dual<double>(x, 1.0));
    const double h = 1e-6, fd = (f(x + h) - f(x - h)) / (2 * h);
    EXPECT_NEAR(r.v, f(x), 1e-12);
    EXPECT_NEAR(r.d, fd, 1e-7) << x;
  }
  EXPECT_TRUE(flex::Dual<double>(1.0, 5.0) < 2);
  EXPECT_TRUE(3 >= flex::Dual<float>(3.0f, 1.0f));
}

TEST(Flex, IdentityEqualsSdpaWithGqa) {
  Inputs in = draw(2, 4, 2, 37, 53, 8);
  auto got = run(in, [](auto q, auto k, auto v) { return F::flex_attention(q, k, v, flex::identity, flex::full, F::FlexOptions().enable_gqa(true)); });
  auto want = run(in, [](auto q, auto k, auto v) { return F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().enable_gqa(true)); });
  expect_close(got, want, 2e-5, "identity");
}

TEST(Flex, CausalAndSlidingWindowMasksEqualTheBuiltInOptions) {
  Inputs in = draw(1, 2, 2, 70, 70, 16);
  auto causal = [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; };
  auto window = [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i && i - j <= 9; };
  for (bool use_block : {false, true}) {
    flex::BlockMask bc = flex::create_block_mask(causal, 1, 1, 70, 70), bw = flex::create_block_mask(window, 1, 1, 70, 70);
    auto o = [&](const flex::BlockMask& m) { return use_block ? F::FlexOptions().block_mask(&m) : F::FlexOptions(); };
    expect_close(run(in, [&](auto q, auto k, auto v) { return F::flex_attention(q, k, v, flex::identity, causal, o(bc)); }),
                 run(in, [](auto q, auto k, auto v) { return F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().is_causal(true)); }),
                 2e-5, "causal");
    expect_close(run(in, [&](auto q, auto k, auto v) { return F::flex_attention(q, k, v, flex::identity, window, o(bw)); }),
                 run(in, [](auto q, auto k, auto v) {
                   return F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().is_causal(true).window(F::Window(9, 0)));
                 }),
                 2e-5, "window");
  }
  // The causal block mask: 3 of the 4 tiles of a 2 x 2 grid have something visible.
  flex::BlockMask m = flex::create_block_mask(causal, 1, 1, 128, 128);
  EXPECT_DOUBLE_EQ(m.density(), 0.75);
  EXPECT_EQ(m.at(0, 0, 0, 1), flex::BlockMask::Empty);
  EXPECT_EQ(m.at(0, 0, 1, 0), flex::BlockMask::Full);
  EXPECT_EQ(m.at(0, 0, 1, 1), flex::BlockMask::Partial);
}

TEST(Flex, AlibiAndSoftcapScoreModsEqualTheBuiltInOptions) {
  Inputs in = draw(2, 4, 4, 33, 33, 8);
  Tensor slopes = F::alibi_slopes(4);
  flex::Captured sl(slopes);
  auto alibi = [&](auto s, int64_t, int64_t h, int64_t i, int64_t j) {
    return s - sl(h) * static_cast<double>(std::abs(i - j));
  };
  auto causal = [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; };
  expect_close(run(in, [&](auto q, auto k, auto v) { return F::flex_attention(q, k, v, alibi, causal); }),
               run(in, [&](auto q, auto k, auto v) {
                 return F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().is_causal(true).alibi_slopes(slopes));
               }),
               2e-5, "alibi");
  auto softcap = [](auto s, int64_t, int64_t, int64_t, int64_t) {
    using std::tanh;
    return 2.0 * tanh(s / 2.0);
  };
  expect_close(run(in, [&](auto q, auto k, auto v) { return F::flex_attention(q, k, v, softcap); }),
               run(in, [](auto q, auto k, auto v) { return F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().softcap(2.0)); }),
               2e-5, "softcap");
}

// T5's relative bias: a learned (buckets, H) table read per (h, bucket(j - i));
// its gradient equals the one SDPA gives through a float mask gathered from it.
TEST(Flex, T5BiasFromACapturedTableGetsTheTablesGradient) {
  const int64_t H = 3, L = 24, S = 24, buckets = 8;
  Inputs in = draw(2, H, H, L, S, 8);
  Generator g(9);
  Tensor table = (randn({buckets, H}, {}, &g) * 0.5).requires_grad_();
  auto bucket = [&](int64_t i, int64_t j) {
    const int64_t d = j - i;
    const int64_t half = buckets / 2, a = std::min<int64_t>(std::abs(d), half - 1);
    return (d > 0 ? half : 0) + a;
  };
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < S; ++j) idx.push_back(bucket(i, j));
  Tensor index = from_vector(idx, {L * S});
  flex::Captured t(table);
  auto t5 = [&](auto s, int64_t, int64_t h, int64_t i, int64_t j) { return s + t(bucket(i, j), h); };
  auto got = run(in, [&](auto q, auto k, auto v) { return F::flex_attention(q, k, v, t5); }, {table});
  auto want = run(
      in,
      [&](auto q, auto k, auto v) {
        Tensor bias = index_select(table, 0, index).reshape({L, S, H}).permute({2, 0, 1});  // (H, L, S)
        return F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().attn_mask(bias));
      },
      {table});
  expect_close(got, want, 2e-5, "t5");
}

// Document masking for packed sequences, from a Captured document-id tensor,
// and prefix-LM (the first P tokens see each other, the rest is causal).
TEST(Flex, DocumentAndPrefixMasksEqualBoolMasks) {
  const int64_t L = 80;
  Inputs in = draw(1, 2, 2, L, L, 8);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < L; ++i) ids.push_back(i < 13 ? 0 : i < 40 ? 1 : i < 41 ? 2 : 3);
  Tensor doc = from_vector(ids, {L});
  flex::Captured d(doc);
  auto same_doc = [&](int64_t, int64_t, int64_t i, int64_t j) { return d(i) == d(j) && j <= i; };
  Tensor allowed = logical_and(eq(doc.reshape({L, 1}), doc.reshape({1, L})), tril(ones({L, L})).to(kBool));
  flex::BlockMask bm = flex::create_block_mask(same_doc, 1, 1, L, L);
  expect_close(run(in, [&](auto q, auto k, auto v) { return F::flex_attention(q, k, v, flex::identity, same_doc, F::FlexOptions().block_mask(&bm)); }),
               run(in, [&](auto q, auto k, auto v) { return F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().attn_mask(allowed)); }),
               2e-5, "documents");
  const int64_t prefix = 21;
  auto prefix_lm = [&](int64_t, int64_t, int64_t i, int64_t j) { return j <= i || j < prefix; };
  std::vector<int> pm;
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < L; ++j) pm.push_back(j <= i || j < prefix);
  expect_close(run(in, [&](auto q, auto k, auto v) { return F::flex_attention(q, k, v, flex::identity, prefix_lm); }),
               run(in, [&](auto q, auto k, auto v) {
                 return F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().attn_mask(from_vector(pm, {L, L}).to(kBool)));
               }),
               2e-5, "prefix-lm");
}

// Long rows: the forward folds up to four visible 64-key tiles at a time, so
// rows of 700 keys cross several chunks, and a block mask with empty tiles
// between visible ones (documents) splits the chunks; the last tile is short.
TEST(Flex, LongRowsAcrossKeyChunksAndSkippedTiles) {
  const int64_t L = 300, S = 700;
  Inputs in = draw(1, 2, 1, L, S, 8);
  expect_close(run(in, [](auto q, auto k, auto v) { return F::flex_attention(q, k, v, flex::identity, flex::full, F::FlexOptions().enable_gqa(true)); }),
               run(in, [](auto q, auto k, auto v) { return F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().enable_gqa(true)); }),
               2e-5, "dense");
  // Query i belongs to document i / 75 and key j to document j / 175: query
  // tiles meet 2-4 visible key tiles separated by empty ones.
  auto docs = [](int64_t, int64_t, int64_t i, int64_t j) { return i / 75 == j / 175; };
  std::vector<int> allowed;
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < S; ++j) allowed.push_back(docs(0, 0, i, j));
  Tensor mask = from_vector(allowed, {L, S}).to(kBool);
  flex::BlockMask bm = flex::create_block_mask(docs, 1, 1, L, S);
  EXPECT_LT(bm.density(), 0.5);
  for (bool use_block : {false, true})
    expect_close(run(in, [&](auto q, auto k, auto v) {
                   return F::flex_attention(q, k, v, flex::identity, docs,
                                            use_block ? F::FlexOptions().enable_gqa(true).block_mask(&bm) : F::FlexOptions().enable_gqa(true));
                 }),
                 run(in, [&](auto q, auto k, auto v) { return F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().attn_mask(mask).enable_gqa(true)); }),
                 2e-5, use_block ? "documents, block mask" : "documents");
}

// Shaw's relative key term from a Captured (B, H, L, 2K + 1) table of
// q_i . a_{clip(j - i)} (computed by matmul outside, so its gradient reaches
// q and the embeddings), and a learned per-head temperature.
TEST(Flex, ShawKeyTermAndTemperatureFromCapturedTensors) {
  const int64_t B = 2, H = 2, L = 19, E = 8, K = 3;
  Inputs in = draw(B, H, H, L, L, E);
  Generator g(10);
  Tensor rel = (randn({2 * K + 1, E}, {}, &g) * 0.3).requires_grad_();
  Tensor temp = (rand({H}, {}, &g) + 0.5).requires_grad_();
  auto flex_side = [&](auto q, auto k, auto v) {
    Tensor table = matmul(q, rel.transpose(0, 1)) / std::sqrt(static_cast<double>(E));  // (B, H, L, 2K + 1)
    flex::Captured t(table), tau(temp);
    auto shaw = [t, tau, K](auto s, int64_t b, int64_t h, int64_t i, int64_t j) {  // by value: backward runs later
      const int64_t d = std::clamp<int64_t>(j - i, -K, K) + K;
      return (s + t(b, h, i, d)) * tau(h);
    };
    return F::flex_attention(q, k, v, shaw);
  };
  auto ref_side = [&](auto q, auto k, auto v) {
    Tensor table = matmul(q, rel.transpose(0, 1)) / std::sqrt(static_cast<double>(E));
    Tensor bias = F::relative_position_expand(table, L, K);                      // (B, H, L, L)
    Tensor tq = q * temp.reshape({1, H, 1, 1});                                   // scale * tau on q.k
    return F::scaled_dot_product_attention(tq, k, v, F::SdpaOptions().attn_mask(bias * temp.reshape({1, H, 1, 1})));
  };
  expect_close(run(in, flex_side, {rel, temp}), run(in, ref_side, {rel, temp}), 3e-5, "shaw + temperature");
}

// Lanes: each operation of 16 lanes equals the scalar operation per lane.
TEST(Flex, LanesEqualScalarsLaneByLane) {
  flex::Lanes<float> a;
  flex::Lanes<int64_t> n;
  flex::Lanes<flex::Dual<float>> s;
  for (int l = 0; l < flex::kLanes; ++l) {
    a[l] = 0.37f * static_cast<float>(l) - 2.1f;
    n[l] = 3 * l - 20;
    s[l] = flex::Dual<float>(0.25f * static_cast<float>(l) - 1.5f, 1.0f);
  }
  const flex::Dual<double> c(0.75, 0.0);  // as a Captured read gives
  using std::abs;
  const auto e1 = a * 2.0 - abs(n - 5) / 3.0f + c;   // float lanes
  const auto e2 = abs(7 - n) * int64_t{2};            // integer lanes
  const auto e3 = flex::where(n < 4 && !(a > 1.0), a, -a + 1);
  const auto e4 = max(min(a, n), -3.0);
  const auto e5 = 2.0 * tanh(s / 2.0) + exp(s * 0.1) - sqrt(s * s + 1.0) + log(s * s + 2.0);
  const auto e6 = (n >= 0) || (a == a);
  static_assert(std::is_same_v<decltype(e1), const flex::Lanes<float>>);
  static_assert(std::is_same_v<decltype(e2), const flex::Lanes<int64_t>>);
  static_assert(std::is_same_v<decltype(e5), const flex::Lanes<flex::Dual<float>>>);
  for (int l = 0; l < flex::kLanes; ++l) {
    const double x = a[l], m = static_cast<double>(n[l]), y = s[l].v;
    EXPECT_NEAR(e1[l], x * 2.0 - std::abs(m - 5) / 3.0 + 0.75, 1e-5) << l;
    EXPECT_EQ(e2[l], std::abs(7 - n[l]) * 2) << l;
    EXPECT_NEAR(e3[l], (m < 4 && !(x > 1.0)) ? x : -x + 1, 1e-6) << l;
    EXPECT_NEAR(e4[l], std::max(std::min(x, m), -3.0), 1e-6) << l;
    const double f = 2.0 * std::tanh(y / 2.0) + std::exp(y * 0.1) - std::sqrt(y * y + 1.0) + std::log(y * y + 2.0);
    const double df = 1.0 - std::pow(std::tanh(y / 2.0), 2) + 0.1 * std::exp(y * 0.1) - y / std::sqrt(y * y + 1.0) +
                      2.0 * y / (y * y + 2.0);
    EXPECT_NEAR(e5[l].v, f, 1e-5) << l;
    EXPECT_NEAR(e5[l].d, df, 1e-5) << l;
    EXPECT_TRUE(e6[l]) << l;
  }
  // A Captured read with a Lanes index gathers; out of range marks the call.
  Tensor t = from_vector(std::vector<int64_t>{5, 6, 7, 8}, {2, 2});
  flex::Captured ct(t);
  flex::Lanes<int64_t> col;
  for (int l = 0; l < flex::kLanes; ++l) col[l] = l % 2;
  const auto g = ct(1, col);
  for (int l = 0; l < flex::kLanes; ++l) EXPECT_EQ(g[l], static_cast<float>(7 + l % 2)) << l;
}

// flex::vectorized modifiers (16 keys per call) against the same modifiers
// called per key, values and gradients (q, k, v and Captured tables), on
// rows that are not a multiple of 16 keys, with and without block masks.
TEST(Flex, VectorizedModifiersEqualScalarOnes) {
  const int64_t H = 4, L = 70, S = 83, buckets = 8;
  Inputs in = draw(2, H, 2, L, S, 8);
  Generator g(4);
  Tensor table = (randn({buckets, H}, {}, &g) * 0.5).requires_grad_();
  Tensor slopes = F::alibi_slopes(H);
  std::vector<int64_t> ids;
  for (int64_t j = 0; j < S; ++j) ids.push_back(j < 30 ? 0 : j < 31 ? 1 : 2);
  Tensor doc = from_vector(ids, {S});
  auto both = [&](auto score_mod, auto mask_mod, const char* what, const flex::BlockMask* bm = nullptr) {
    auto o = F::FlexOptions().enable_gqa(true).block_mask(bm);
    auto got = run(in, [&](auto q, auto k, auto v) {
      return F::flex_attention(q, k, v, flex::vectorized(score_mod), flex::vectorized(mask_mod), o);
    }, {table});
    auto want = run(in, [&](auto q, auto k, auto v) { return F::flex_attention(q, k, v, score_mod, mask_mod, o); }, {table});
    for (size_t x = 0; x < got.size(); ++x)
      if (!want[x].defined()) {  // a modifier that does not read the table gives it no gradient
        EXPECT_FALSE(got[x].defined()) << what;
        got[x] = want[x] = zeros({1});
      }
    expect_close(got, want, 2e-5, what);
  };
  flex::Captured sl(slopes), t(table), d(doc);
  auto alibi = [sl](auto s, auto, auto h, auto i, auto j) {
    using std::abs;
    return s - sl(h) * abs(i - j);
  };
  auto t5 = [t, buckets](auto s, auto, auto h, auto i, auto j) {
    using std::abs;
    using std::min;
    const auto dist = j - i;
    const auto a = min(abs(dist), buckets / 2 - 1);
    return s + t(flex::where(dist > 0, a + buckets / 2, a), h);
  };
  auto softcap = [](auto s, auto, auto, auto, auto) {
    using std::tanh;
    return 3.0 * tanh(s / 3.0);
  };
  auto causal = [](auto, auto, auto i, auto j) { return j <= i + 5; };
  auto docs = [d](auto, auto, auto i, auto j) { return d(std::min<int64_t>(i, S - 1)) == d(j) || j < 3; };
  auto all = [](auto, auto, auto, auto) { return true; };
  both(alibi, causal, "alibi, causal");
  both(t5, all, "t5");
  both(softcap, docs, "softcap, documents");
  const flex::BlockMask bc = flex::create_block_mask(causal, 1, 1, L, S);
  both(t5, causal, "t5, causal, block mask", &bc);
  both(flex::identity, docs, "documents");
}

// float64: every gradient, the captured table's included, against central
// finite differences of the flex forward itself.
TEST(Flex, Float64GradientsMatchFiniteDifferences) {
  Inputs in = draw(1, 2, 1, 6, 7, 3, kFloat64, 5);
  Generator g(12);
  Tensor table = randn({2, 13}, kFloat64, &g).requires_grad_();
  auto f = [&](const Tensor& q, const Tensor& k, const Tensor& v) {
    flex::Captured t(table);
    auto mod = [t](auto s, int64_t, int64_t h, int64_t i, int64_t j) {
      using std::tanh;
      return 4.0 * tanh((s + t(h, j - i + 6)) / 4.0);
    };
    auto mask = [](int64_t, int64_t h, int64_t i, int64_t j) { return h == 0 || j <= i + 1; };
    return F::flex_attention(q, k, v, mod, mask, F::FlexOptions().enable_gqa(true));
  };
  auto grads = run(in, f, {table});
  std::vector<Tensor*> xs = {&in.q, &in.k, &in.v, &table};
  for (size_t x = 0; x < xs.size(); ++x) {
    Tensor& t = *xs[x];
    Tensor flat = t.detach().contiguous();
    for (int64_t e = 0; e < flat.numel(); e += 3) {
      auto value = [&](double delta) {
        NoGradGuard ng;
        Tensor p = flat.clone();
        p.data<double>()[e] += delta;
        Tensor pt = p.reshape(t.shape());
        Tensor qq = x == 0 ? pt : in.q.detach(), kk = x == 1 ? pt : in.k.detach(), vv = x == 2 ? pt : in.v.detach();
        Tensor saved = table;
        if (x == 3) table = pt;
        Tensor out = f(qq, kk, vv);
        table = saved;
        return sum(out * in.dout).item<double>();
      };
      const double h = 1e-6, fd = (value(h) - value(-h)) / (2 * h);
      EXPECT_NEAR(grads[x + 1].contiguous().data<double>()[e], fd, 1e-6) << "input " << x << " element " << e;
    }
  }
}

// Shaw's relative values (FlexOptions::relative_values) with the key term as
// a score_mod, against the composed ops: softmax of the scores plus the
// expanded key term, P V + relative_position_sum(P) times the table; values
// and gradients of q, k, v, the key-term tensor and the table, float32 and
// float64, causal and not, K small and larger than the rows.
TEST(Flex, RelativeValuesEqualTheComposedPath) {
  for (DType dt : {kFloat32, kFloat64})
    for (int64_t K : {2, 40})
      for (bool causal : {false, true}) {
        const int64_t B = 2, H = 2, L = 70, S = 70, E = 8;
        Inputs in = draw(B, H, H, L, S, E, dt, 7);
        Generator g(8);
        Tensor table = (randn({2 * K + 1, E}, kFloat64, &g) * 0.5).to(dt).requires_grad_();
        Tensor rel = (randn({B, H, L, 2 * K + 1}, kFloat64, &g) * 0.5).to(dt).requires_grad_();
        auto fused = [&](const Tensor& q, const Tensor& k, const Tensor& v) {
          flex::Captured c(rel);
          auto key_term = [c, K](auto s, int64_t b, int64_t h, int64_t i, int64_t j) {
            return s + c(b, h, i, std::clamp<int64_t>(j - i, -K, K) + K);
          };
          auto mask = [causal](int64_t, int64_t, int64_t i, int64_t j) { return !causal || j <= i; };
          return F::flex_attention(q, k, v, key_term, mask, F::FlexOptions().relative_values(table));
        };
        auto composed = [&](const Tensor& q, const Tensor& k, const Tensor& v) {
          Tensor scores = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(E))) +
                          F::relative_position_expand(rel, S, K);
          if (causal) scores = masked_fill(scores, triu(ones({L, S}), 1).to(kBool), -INFINITY);
          Tensor p = F::softmax(scores, -1);
          return matmul(p, v) + matmul(F::relative_position_sum(p, K), table);
        };
        const std::string what = std::string(dtype_name(dt)) + " K " + std::to_string(K) + (causal ? " causal" : "");
        expect_close(run(in, fused, {rel, table}), run(in, composed, {rel, table}), dt == kFloat64 ? 1e-12 : 2e-5,
                     what.c_str());
      }
}

TEST(Flex, SameBitsAtAnyThreadCount) {
  Inputs in = draw(2, 2, 2, 40, 40, 8);
  Tensor table = randn({2, 81}).requires_grad_();
  auto f = [&](const Tensor& q, const Tensor& k, const Tensor& v) {
    flex::Captured t(table);
    return F::flex_attention(q, k, v, [t](auto s, int64_t, int64_t h, int64_t i, int64_t j) { return s + t(h, j - i + 40); });
  };
  const int before = get_num_threads();
  set_num_threads(1);
  auto one = run(in, f, {table});
  set_num_threads(3);
  auto three = run(in, f, {table});
  set_num_threads(before);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(equal(one[i], three[i])) << i;
}

TEST(Flex, ClearErrors) {
  Inputs in = draw(1, 2, 2, 8, 8, 4);
  Tensor small = zeros({3});
  flex::Captured c(small);
  auto reads_out = [&](auto s, int64_t, int64_t, int64_t i, int64_t) { return s + c(i); };
  EXPECT_THROW(F::flex_attention(in.q, in.k, in.v, reads_out), Error);
  // The same with 16 keys per call (a Lanes index past the end), and a mask reading past it.
  EXPECT_THROW(F::flex_attention(in.q, in.k, in.v, flex::vectorized([c](auto s, auto, auto, auto, auto j) { return s + c(j); })),
               Error);
  EXPECT_THROW(F::flex_attention(in.q, in.k, in.v, flex::identity,
                                 flex::vectorized([c](auto, auto, auto, auto j) { return c(j) == 0.0; })),
               Error);
  // Relative values of the wrong shape or dtype.
  EXPECT_THROW(F::flex_attention(in.q, in.k, in.v, flex::identity, flex::full, F::FlexOptions().relative_values(zeros({4, 4}))),
               Error);
  EXPECT_THROW(F::flex_attention(in.q, in.k, in.v, flex::identity, flex::full,
                                 F::FlexOptions().relative_values(zeros({5, 4}, kFloat64))),
               Error);
  EXPECT_THROW(F::flex_attention(in.q, in.k.narrow(1, 0, 1), in.v.narrow(1, 0, 1)), Error);  // GQA not enabled
  EXPECT_THROW(F::flex_attention(in.q, in.k.to(kFloat64), in.v), Error);
  flex::BlockMask other = flex::create_block_mask(flex::full, 1, 1, 9, 8);
  EXPECT_THROW(F::flex_attention(in.q, in.k, in.v, flex::identity, flex::full, F::FlexOptions().block_mask(&other)), Error);
  EXPECT_THROW({ flex::Captured bad{Tensor()}; }, Error);
  // A row with nothing visible: zeros, LSE -inf, zero gradients.
  auto none = [](int64_t, int64_t, int64_t i, int64_t) { return i != 3; };
  auto [out, lse] = F::flex_attention_with_lse(in.q, in.k, in.v, flex::identity, none);
  EXPECT_EQ(max(abs(out.select(2, 3))).item<float>(), 0.0f);
  EXPECT_TRUE(std::isinf(lse.select(2, 3).select(1, 0).select(0, 0).item<float>()));
}

}  // namespace
}  // namespace attn
