// Numerics at the edges: attention with logits of magnitude 1e4, fully masked
// rows and -inf additive masks (finite, and equal to the float64 reference);
// the softmax family at ±1e4 and -inf against long-double loops; and anomaly
// mode, which names the op whose backward first produced NaN or Inf; GELU's
// float32 kernel in ulps against float64, the negative tail included.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <limits>
#include <string>
#include <vector>

using namespace attn;
namespace F = attn::nn::functional;

namespace {

bool all_finite(const Tensor& t) {
  const Tensor c = t.to(kFloat64).contiguous();
  const double* p = c.data<double>();
  for (int64_t i = 0; i < c.numel(); ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

// A tolerance derived from float32's precision: atol = eps32 * terms *
// magnitude, with the derivation in `why` (printed on failure).
struct Tolerance {
  double atol;
  std::string why;
};

// max |a - b| <= tol.atol, elementwise over the same shape. Returns the
// fraction of the bound used (printed, so a bound that is far looser than
// the error it guards shows up in the log).
double expect_close(const std::string& what, const Tensor& a, const Tensor& b, const Tolerance& tol) {
  EXPECT_EQ(a.shape(), b.shape()) << what;
  if (a.shape() != b.shape()) return 0;
  const Tensor x = a.to(kFloat64).contiguous(), y = b.to(kFloat64).contiguous();
  const double* px = x.data<double>();
  const double* py = y.data<double>();
  double worst = 0;
  for (int64_t i = 0; i < x.numel(); ++i) worst = std::max(worst, std::abs(px[i] - py[i]));
  if (std::getenv("ATTN_PRINT_TOLERANCES")) std::printf("%s: %.3g of the tolerance\n", what.c_str(), worst / tol.atol);
  EXPECT_LE(worst, tol.atol) << what << ": max abs error " << worst << " [tolerance " << tol.atol << ": " << tol.why
                             << "]";
  return worst / tol.atol;
}

double max_abs(const Tensor& t) { return amax(abs(t.to(kFloat64)).reshape({-1}), {0}).item<double>(); }

// Error bounds for the fused float32 attention against the float64
// reference when every score is exact in float32 (the setup of the test
// below). u = eps32 / 2 is float32's unit roundoff, and a float32 sum of n
// products is within n*u*sum|terms| of the exact one (Higham, gamma_n).
// Each probability p_ij is exact up to the rounding of exp and of the
// division by the row sum (2u relative), except:
//  - softcap: cap*tanh(s/cap) is rounded twice, 2u*cap absolute per score,
//    which moves each probability by up to 4u*cap relative;
//  - the backward recomputes p_ij = exp(s_ij - lse_i) from the float32 LSE,
//    rounded to u*|lse_i| (about 6e-4 at logits of 1e4): every probability
//    of the backward moves by up to u*|lse| relative.
// With Q, K, V, U the largest |q|, |k|, |v| and |dO| entries:
//   out_i = sum_j p_ij v_j                      n = S + 2, M = V
//   dv_j  = sum_i p_ij dO_i                     n = L + 2 + |lse|, M = U
//   dS_ij = p_ij (dO_i . v_j - dO_i . out_i)    two E-term dots of magnitude <= 2 E U V
//   dq_i  = scale sum_j dS_ij k_j               n = S + E + 2 + |lse|, M = 2 E U V K scale
//   dk_j  = scale sum_i dS_ij q_i               n = L + E + 2 + |lse|, M = 2 E U V Q scale
// and softcap adds 4*cap to each n. The bound is u * n * M.
struct AttentionTolerances {
  Tolerance out, dq, dk, dv;
};
AttentionTolerances attention_tolerances(int64_t L, int64_t S, int64_t E, double softcap, double scale, double lse,
                                         double Q, double K, double V, double U) {
  const double u = std::numeric_limits<float>::epsilon() / 2;
  auto tol = [&](double n, double lse_term, double M, const char* what) {
    return Tolerance{u * (n + 4 * softcap + lse_term) * M,
                     detail::str("eps32/2 * (", n, " terms + 4 * softcap ", softcap, " + |lse| ", lse_term, ") * ", M,
                                 ", the largest ", what)};
  };
  const double dS = 2 * U * V * static_cast<double>(E);
  return {tol(static_cast<double>(S + 2), 0, V, "|v|"),
          tol(static_cast<double>(S + E + 2), lse, dS * K * scale, "2 E |dO| |v| |k| scale"),
          tol(static_cast<double>(L + E + 2), lse, dS * Q * scale, "2 E |dO| |v| |q| scale"),
          tol(static_cast<double>(L + 2), lse, U, "|dO|")};
}

Tensor finite_or_zero(const Tensor& t) { return where(eq(t, t) & lt(abs(t), full({}, INFINITY, t.dtype())), t, 0.0); }

struct Case {
  std::string name;
  int mask;        // 0 none, 1 bool with a fully masked row, 2 float with -inf entries and a fully -inf row
  bool causal = false;
  double softcap = 0;
  bool key_lengths = false;
  bool window = false;
};

}  // namespace

// Integer-valued tensors of `shape` (uniform in [-r, r]) times `unit`.
Tensor integers(const Shape& shape, int r, double unit, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(-r, r);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<double> x(static_cast<size_t>(n));
  for (double& v : x) v = d(rng) * unit;
  return from_vector(x, shape);
}

TEST(Numerics, AttentionWithLogitsOf1e4MatchesFloat64Reference) {
  // Logits of magnitude 1e3..3e4 built so that float32 represents every
  // score and mask value exactly: q in 1024·[-8, 8], k in [-1, 1] (E = 16,
  // scale 1/4), float masks in 256·[-40, 40] or -inf. Scores are multiples
  // of 256 apart, so each row's softmax is one key or an exact tie of
  // several (many rows tie); float32 then has no excuse to differ from the
  // float64 reference beyond rounding of the value sums. (At random 1e4
  // logits float32 cannot represent the scores to better than 1e-3, and
  // neither can any float32 attention.)
  const std::vector<Case> cases = {
      {"plain", 0}, {"causal", 0, true}, {"bool mask, a row fully masked", 1},
      {"-inf float mask, a row all -inf", 2}, {"causal + -inf mask", 2, true}, {"softcap 30", 0, false, 30.0},
      {"key_lengths", 0, false, 0, true}, {"sliding window + bool mask", 1, false, 0, false, true}};
  int tried = 0;
  double worst_used = 0;
  for (const Case& c : cases) {
    for (int64_t L : {1, 7, 70}) {
      const int64_t B = 2, H = 2, S = L + 5, E = 16;
      std::mt19937 rng(static_cast<unsigned>(100 + L + 1000 * tried));
      Tensor q = integers({B, H, L, E}, 8, 1024.0, rng);
      Tensor k = integers({B, H, S, E}, 1, 1.0, rng);
      Generator g(100 + L);
      Tensor v = randn({B, H, S, E}, kFloat64, &g);
      Tensor up = randn({B, H, L, E}, kFloat64, &g);
      Tensor mask;
      if (c.mask == 1) {
        mask = rand({L, S}, kFloat64, &g) > 0.3;
        mask.select(0, L / 2).fill_(0);
      } else if (c.mask == 2) {
        mask = masked_fill(integers({L, S}, 40, 256.0, rng), rand({L, S}, kFloat64, &g) > 0.6, -INFINITY);
        mask.select(0, L - 1).fill_(-INFINITY);
      }
      auto opts = [&](DType dt) {
        F::SdpaOptions o;
        if (mask.defined()) o.attn_mask(mask.dtype() == kBool ? mask : mask.to(dt));
        o.is_causal(c.causal).softcap(c.softcap);
        if (c.key_lengths) o.key_lengths(from_vector(std::vector<int64_t>{S - 3, 2}));
        if (c.window) o.window({3, 2});
        return o;
      };
      Tensor q32 = q.to(kFloat32).requires_grad_(true), k32 = k.to(kFloat32).requires_grad_(true),
             v32 = v.to(kFloat32).requires_grad_(true);
      auto [out32, lse32] = F::scaled_dot_product_attention_with_lse(q32, k32, v32, opts(kFloat32));
      (out32 * up.to(kFloat32)).sum().backward();
      Tensor q64 = q32.detach().to(kFloat64).requires_grad_(true), k64 = k32.detach().to(kFloat64).requires_grad_(true),
             v64 = v32.detach().to(kFloat64).requires_grad_(true);
      Tensor out64 = F::scaled_dot_product_attention_reference(q64, k64, v64, opts(kFloat64));
      (out64 * up).sum().backward();
      const std::string what = c.name + " L=" + std::to_string(L);
      for (const Tensor& t : {out32, q32.grad(), k32.grad(), v32.grad()}) EXPECT_TRUE(all_finite(t)) << what;
      EXPECT_TRUE(all_finite(out64)) << what;
      // Tolerances from float32's precision (see attention_tolerances).
      const double scale = 0.25;
      const AttentionTolerances tol = attention_tolerances(L, S, E, c.softcap, scale, max_abs(finite_or_zero(lse32)),
                                                           max_abs(q), max_abs(k), max_abs(v), max_abs(up));
      worst_used = std::max(worst_used, expect_close(what + " output", out32, out64, tol.out));
      worst_used = std::max(worst_used, expect_close(what + " dq", q32.grad(), q64.grad(), tol.dq));
      worst_used = std::max(worst_used, expect_close(what + " dk", k32.grad(), k64.grad(), tol.dk));
      worst_used = std::max(worst_used, expect_close(what + " dv", v32.grad(), v64.grad(), tol.dv));
      if (c.mask == 1) {  // the fully masked row attends to nothing: zeros
        EXPECT_EQ(amax(abs(out32.select(2, L / 2)).reshape({-1}), {0}).item<float>(), 0.0f) << what;
      } else if (c.mask == 2) {
        EXPECT_EQ(amax(abs(out32.select(2, L - 1)).reshape({-1}), {0}).item<float>(), 0.0f) << what;
      }
      ++tried;
    }
  }
  std::printf("attention at logits of 1e4: %d configurations, float32 fused vs float64 reference "
              "within tolerances derived from eps32 (at most %.2f of a tolerance used)\n", tried, worst_used);
}

TEST(Numerics, AttentionProbabilitiesMatchFloat64SoftmaxAcrossTheExpRange) {
  // The fused forward's exp over its whole range: with q = 1, k_j = s_j
  // (E = 1, scale 1) every score is exactly the float32 s_j, and with V the
  // identity the output row is the row's probabilities. Scores lie on a
  // 1/64 grid down to 110 below the row's max, so s - m is exact in float32,
  // and each probability is compared with the row's largest one (which
  // cancels the row sum): p_j / p_max = exp(s_j - m) up to the rounding of
  // y = (s - m) log2 e (u |y| absolute, u = 2^-24, so 1.1 u d relative at
  // d = m - s), the polynomial (1.2e-7) and a few roundings of the division
  // and the chunks' rescaling (4 u). Probabilities under 1e-36 may flush to
  // 0; masked keys give exactly 0.
  const int64_t L = 4, S = 700;
  const double u = std::ldexp(1.0, -24);
  std::mt19937 rng(11);
  std::vector<float> ks(static_cast<size_t>(L * S));
  std::vector<uint8_t> keep(static_cast<size_t>(L * S), 1);
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < S; ++j) {
      const int64_t lo = i % 2 ? -20 * 64 : -110 * 64, hi = i % 2 ? 5 * 64 : 0;
      ks[i * S + j] = static_cast<float>(lo + static_cast<int64_t>(rng() % (hi - lo + 1))) / 64.0f;
      if (i >= 2 && rng() % 10 < 3) keep[i * S + j] = 0;  // rows 2 and 3: 30% masked
    }
  // One query per row, each its own batch, so that k differs per row.
  Tensor k = from_vector(ks, {L, 1, S, 1});
  Tensor q = ones({L, 1, 1, 1}, kFloat32);
  Tensor v = eye(S).reshape({1, 1, S, S}).expand({L, 1, S, S});
  std::vector<bool> kb(keep.begin(), keep.end());
  Tensor mask = from_vector(kb, {L, 1, 1, S});
  Tensor out = F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().attn_mask(mask).scale(1.0)).contiguous();
  const float* p = out.data<float>();
  double worst = 0;
  int64_t tiny = 0;
  for (int64_t i = 0; i < L; ++i) {
    int64_t top = -1;
    for (int64_t j = 0; j < S; ++j)
      if (keep[i * S + j] && (top < 0 || ks[i * S + j] > ks[i * S + top])) top = j;
    const double m = ks[i * S + top], pmax = p[i * S + top];
    for (int64_t j = 0; j < S; ++j) {
      const double got = p[i * S + j];
      if (!keep[i * S + j]) {
        ASSERT_EQ(got, 0.0) << "masked key " << j << " of row " << i;
        continue;
      }
      const double d = m - ks[i * S + j], want = std::exp(-d);
      if (want * pmax < 1e-36) {  // near or under FLT_MIN: 0 or a denormal
        EXPECT_LE(got, 2e-36) << "row " << i << " key " << j;
        ++tiny;
        continue;
      }
      const double rel = std::abs(got / pmax - want) / want, tol = 1.2e-7 + 4 * u + 1.1 * u * d * 1.4427;
      worst = std::max(worst, rel / tol);
      ASSERT_LE(rel, tol) << "row " << i << " key " << j << ": score " << d << " below the max, ratio " << got / pmax
                          << " vs " << want;
    }
  }
  EXPECT_GT(tiny, 0);  // the range reached the bottom
  std::printf("softmax in the fused forward vs float64: at most %.2f of the tolerance used, %lld probabilities "
              "below 1e-36\n", worst, static_cast<long long>(tiny));
}

TEST(Numerics, AttentionWithRandomLogitsOf1e4StaysFinite) {
  // Random scores ~1e4: finite outputs and gradients, weights that sum to 1.
  Generator g(5);
  Tensor q = (randn({2, 2, 50, 16}, kFloat32, &g) * 1e4).requires_grad_(true);
  Tensor k = randn({2, 2, 60, 16}, kFloat32, &g).requires_grad_(true);
  Tensor v = randn({2, 2, 60, 16}, kFloat32, &g).requires_grad_(true);
  Tensor mask = masked_fill(randn({50, 60}, kFloat32, &g) * 1e4, rand({50, 60}, kFloat32, &g) > 0.5, -INFINITY);
  mask.select(0, 7).fill_(-INFINITY);
  Tensor out = F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().attn_mask(mask).is_causal(true));
  {
    autograd::DetectAnomalyGuard anomaly;
    (out * out).sum().backward();
  }
  for (const Tensor& t : {out, q.grad(), k.grad(), v.grad()}) EXPECT_TRUE(all_finite(t));
  const F::SdpaOptions wo = F::SdpaOptions().attn_mask(mask).is_causal(true);
  auto [o2, lse] = F::scaled_dot_product_attention_with_lse(q.detach(), k.detach(), v.detach(), wo);
  Tensor w = F::scaled_dot_product_attention_weights(q.detach(), k.detach(), lse, wo);
  Tensor rows = w.sum({3});
  EXPECT_EQ(amax(abs(rows.select(2, 7)), {0, 1}).item<float>(), 0.0f);
  // Each weight is exp(s - lse) with the float32 LSE, rounded to u*|lse|
  // (u = eps32/2): a row of S = 60 weights sums to 1 within u*(S + |lse|).
  const double u = std::numeric_limits<float>::epsilon() / 2;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 2; ++h)
      EXPECT_NEAR(rows[b][h][8].item<double>(), 1.0, u * (60 + std::abs(lse[b][h][8].item<double>())))
          << "batch " << b << " head " << h;
}

TEST(Numerics, SoftmaxFamilyAt1e4AndMinusInfMatchesLongDouble) {
  // Rows mixing ±1e4, ordinary values and -inf (never a row of only -inf).
  const std::vector<std::vector<double>> rows = {
      {1e4, 1e4 - 1, -1e4, 0.5},       {-1e4, -1e4 + 2, -1e4 + 0.5, -INFINITY},
      {3.0, -INFINITY, -INFINITY, 2.0}, {1e4, -INFINITY, 1e4, -1e4},
      {-3e4, 3e4, 0, 1},               {0.1, 0.2, 0.3, 0.4}};
  const int64_t R = static_cast<int64_t>(rows.size()), C = 4;
  std::vector<double> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  for (DType dt : {kFloat32, kFloat64}) {
    Tensor x = from_vector(flat).reshape({R, C}).to(dt);
    Tensor sm = F::softmax(x, 1), lsm = F::log_softmax(x, 1), lse = logsumexp(x, {1});
    Tensor target = from_vector(std::vector<int64_t>{0, 1, 0, 2, 1, 3});
    Tensor ce = F::cross_entropy(x, target, F::CrossEntropyFuncOptions().reduction(Reduction::None));
    for (int64_t i = 0; i < R; ++i) {
      long double m = -INFINITY;
      for (double v : rows[i]) m = std::max<long double>(m, v);
      long double z = 0;
      for (double v : rows[i]) z += std::exp(static_cast<long double>(v) - m);
      const long double ref_lse = m + std::log(z);
      // Tolerances in units of the dtype's unit roundoff u: the inputs are
      // exact, the sums run in double, so each result is off by its final
      // rounding plus the rounding of the numbers it is made from (lse and
      // x_j, magnitude <= mag): lse within 2u*mag, probabilities (<= 1)
      // within 2u, log-probabilities and cross entropy (lse - x_j) within 4u*mag.
      const double u = (dt == kFloat32 ? std::numeric_limits<float>::epsilon()
                                       : std::numeric_limits<double>::epsilon()) / 2;
      double mag = 1;
      for (double v : rows[i])
        if (std::isfinite(v)) mag = std::max(mag, std::abs(v));
      const double tol = 4 * u * mag;
      EXPECT_NEAR(lse[i].item<double>(), static_cast<double>(ref_lse), 2 * u * mag) << "row " << i;
      for (int64_t j = 0; j < C; ++j) {
        const long double ref_p = std::exp(static_cast<long double>(rows[i][j]) - ref_lse);
        EXPECT_NEAR(sm[i][j].item<double>(), static_cast<double>(ref_p), 2 * u);
        const double l = lsm[i][j].item<double>();
        if (std::isinf(rows[i][j])) {
          EXPECT_TRUE(std::isinf(l) && l < 0) << "log_softmax of -inf is -inf, row " << i;
        } else {
          EXPECT_NEAR(l, static_cast<double>(rows[i][j] - ref_lse), tol) << "row " << i << " col " << j;
        }
      }
      const int64_t t = target[i].item<int64_t>();
      EXPECT_NEAR(ce[i].item<double>(), static_cast<double>(ref_lse - rows[i][t]), tol) << "row " << i;
    }
    // Gradients of the softmax family stay finite with -inf inputs.
    Tensor xg = x.detach().requires_grad_(true);
    Tensor loss = (F::softmax(xg, 1) * from_vector(std::vector<double>{1, 2, 3, 4}).to(dt)).sum() +
                  F::cross_entropy(xg, target) + logsumexp(xg, {1}).sum();
    {
      autograd::DetectAnomalyGuard anomaly;  // throws if any backward produced NaN or Inf
      loss.backward();
    }
    EXPECT_TRUE(all_finite(xg.grad()));
  }
}

TEST(Numerics, GeluFloat32WithinEightUlpOfFloat64EverywhereIncludingTheNegativeTail) {
  // Every 997th float32 bit pattern up to 20 in magnitude, both signs (about
  // 2.2 million values, the negative tail down to where v Phi(v) leaves
  // float32's normal range included), against v erfc(-v / sqrt 2) / 2 in
  // float64. attn flushes subnormals, so a reference below FLT_MIN may come
  // out as anything below 2 FLT_MIN.
  std::vector<float> v;
  for (uint32_t bits = 0; bits < 0x41a00000u; bits += 997) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    v.push_back(f);
    v.push_back(-f);
  }
  Tensor x = empty({static_cast<int64_t>(v.size())}, kFloat32);
  std::memcpy(x.data<float>(), v.data(), v.size() * sizeof(float));
  Tensor y = F::gelu(x);
  const float* py = y.data<float>();
  const double fmin = std::numeric_limits<float>::min();
  double worst = 0;
  float worst_at = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const double ref = static_cast<double>(v[i]) * 0.5 * std::erfc(-static_cast<double>(v[i]) / std::sqrt(2.0));
    double ulps;
    if (std::abs(ref) < fmin) {
      ulps = std::abs(py[i]) < 2 * fmin ? 0 : INFINITY;
    } else {
      const float r = static_cast<float>(std::abs(ref));
      ulps = std::abs(py[i] - ref) / (std::nextafter(r, INFINITY) - r);
    }
    if (!(ulps <= worst)) {
      worst = ulps;
      worst_at = v[i];
    }
  }
  std::printf("gelu float32: worst %.2f ulp at %.9g over %zu values\n", worst, worst_at, v.size());
  EXPECT_LE(worst, 8.0) << "at " << worst_at;
  // The edges: NaN stays NaN, +inf stays, -inf gives NaN (-inf * Phi(-inf) = -inf * 0, as PyTorch),
  // large negative inputs -0, signed zeros kept.
  const std::vector<float> edge = {NAN, INFINITY, -INFINITY, -100.0f, 100.0f, 0.0f, -0.0f, -1e30f};
  Tensor e = empty({static_cast<int64_t>(edge.size())}, kFloat32);
  std::memcpy(e.data<float>(), edge.data(), edge.size() * sizeof(float));
  Tensor g = F::gelu(e);
  const float* pg = g.data<float>();
  EXPECT_TRUE(std::isnan(pg[0]));
  EXPECT_EQ(pg[1], INFINITY);
  EXPECT_TRUE(std::isnan(pg[2]));
  EXPECT_EQ(pg[3], 0.0f);
  EXPECT_TRUE(std::signbit(pg[3]));
  EXPECT_EQ(pg[4], 100.0f);
  EXPECT_EQ(pg[5], 0.0f);
  EXPECT_FALSE(std::signbit(pg[5]));
  EXPECT_TRUE(std::signbit(pg[6]));
  EXPECT_EQ(pg[7], 0.0f);
}

TEST(Numerics, MultiheadAttentionWithFullyPaddedSequencesHasFiniteGradients) {
  manual_seed(3);
  nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(16, 4).batch_first(true));
  Generator g(4);
  Tensor x = (randn({3, 6, 16}, kFloat32, &g) * 300.0).requires_grad_(true);
  Tensor pad = zeros({3, 6}, kBool);
  pad.select(0, 1).fill_(1);                 // sequence 1: every key padded
  pad.select(0, 2).narrow(0, 2, 4).fill_(1);  // sequence 2: four of six padded
  Tensor mask = full({6, 6}, 0.0);
  mask.select(0, 0).fill_(-INFINITY);  // query 0 may see nothing
  auto [out, w] = mha.forward(x, x, x, pad, true, mask);
  EXPECT_TRUE(all_finite(out));
  EXPECT_TRUE(all_finite(w));
  {
    autograd::DetectAnomalyGuard anomaly;
    out.sum().backward();
  }
  EXPECT_TRUE(all_finite(x.grad()));
  for (const auto& [name, p] : mha.named_parameters()) EXPECT_TRUE(all_finite(p.grad())) << name;
}

TEST(Anomaly, NamesTheFirstOpWhoseBackwardProducedNaNOrInf) {
  EXPECT_FALSE(autograd::is_anomaly_enabled());
  auto message = [](const std::function<void()>& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  // sqrt at 0: its backward divides by 0 (Inf); the mul after it is finite.
  {
    Tensor x = from_vector(std::vector<double>{0.0, 1.0, 4.0}).requires_grad_(true);
    autograd::DetectAnomalyGuard anomaly;
    EXPECT_TRUE(autograd::is_anomaly_enabled());
    const std::string m = message([&] { (sqrt(x) * 2.0).sum().backward(); });
    EXPECT_NE(m.find("SqrtBackward"), std::string::npos) << m;
    EXPECT_NE(m.find("1 Inf"), std::string::npos) << m;
    EXPECT_NE(m.find("input 0"), std::string::npos) << m;
  }
  EXPECT_FALSE(autograd::is_anomaly_enabled());  // the guard restores the previous mode
  // Without anomaly mode the same backward runs and leaves Inf in the gradient.
  {
    Tensor x = from_vector(std::vector<double>{0.0, 1.0, 4.0}).requires_grad_(true);
    (sqrt(x) * 2.0).sum().backward();
    EXPECT_TRUE(std::isinf(x.grad()[0].item<double>()));
  }
  // Division by 0: div's backward gives Inf for the dividend (input 0).
  {
    Tensor a = from_vector(std::vector<double>{0.0, 1.0}).requires_grad_(true);
    Tensor b = from_vector(std::vector<double>{0.0, 2.0}).requires_grad_(true);
    autograd::DetectAnomalyGuard anomaly;
    const std::string m = message([&] { (div(a, b) + a).sum().backward(); });
    EXPECT_NE(m.find("DivBackward"), std::string::npos) << m;
    EXPECT_NE(m.find("Inf"), std::string::npos) << m;
    EXPECT_NE(m.find("input 0"), std::string::npos) << m;
  }
  // A NaN in the values of attention: the fused attention op is named, not
  // the ops after it.
  {
    Generator g(1);
    Tensor q = randn({1, 1, 3, 4}, kFloat32, &g).requires_grad_(true);
    Tensor k = randn({1, 1, 3, 4}, kFloat32, &g).requires_grad_(true);
    Tensor v = randn({1, 1, 3, 4}, kFloat32, &g);
    v.select(2, 1).select(2, 0).fill_(std::numeric_limits<float>::quiet_NaN());
    v.requires_grad_(true);
    Tensor out = F::scaled_dot_product_attention(q, k, v);
    autograd::DetectAnomalyGuard anomaly;
    const std::string m = message([&] { (out.narrow(3, 1, 3) * 3.0).sum().backward(); });
    EXPECT_NE(m.find("ScaledDotProductAttentionBackward"), std::string::npos) << m;
    EXPECT_NE(m.find("NaN"), std::string::npos) << m;
  }
  // A non-finite gradient handed to backward is named as such.
  {
    Tensor x = ones({2}, kFloat64).requires_grad_(true);
    Tensor y = x * 2.0;
    autograd::DetectAnomalyGuard anomaly;
    const std::string m = message([&] { y.backward(from_vector(std::vector<double>{1.0, INFINITY})); });
    EXPECT_NE(m.find("the gradient given to backward"), std::string::npos) << m;
  }
  // A finite backward is untouched by anomaly mode.
  {
    Tensor x = from_vector(std::vector<double>{1.0, 4.0}).requires_grad_(true);
    autograd::DetectAnomalyGuard anomaly;
    (sqrt(x) * 2.0).sum().backward();
    EXPECT_NEAR(x.grad()[1].item<double>(), 0.5, 1e-15);
  }
}
