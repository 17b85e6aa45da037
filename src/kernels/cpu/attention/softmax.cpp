// The softmax parts of the fused attention loops: a row's max, exp(x - m)
// with its sum, the online-softmax fold of a tile, the epilogue, and the
// backward's probabilities and score gradients.
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/attention/parts.h"

namespace attn::kernels::cpu::parts {

namespace {
namespace hn = hwy::HWY_NAMESPACE;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

#if defined(__AVX2__) && defined(__FMA__)
// exp(x) for the softmax, AVX2: 2^(x log2 e) with n = round(y), a degree-6
// Taylor polynomial of 2^f on |f| <= 1/2 (relative error <= 1.2e-7), and 2^n
// built in the exponent bits. x is clamped so 2^n stays a normal float; -inf
// gives exactly 0.
inline __m256 exp_ps(__m256 x) {
  const __m256 finite = _mm256_cmp_ps(x, _mm256_set1_ps(-std::numeric_limits<float>::infinity()), _CMP_GT_OQ);
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 y = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
  const __m256 n = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(y, n);
  __m256 p = _mm256_set1_ps(1.5403530393381609e-4f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428443e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291076284772e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504108664821580e-2f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022650695910071e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718055994531e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), finite);
}
#endif

}  // namespace

// x[i] = exp(x[i] - m) for i < n; returns the sum. -inf entries give 0.
float exp_sub_sum(float* x, int64_t n, float m) {
  int64_t i = 0;
  float s = 0;
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 vm = _mm256_set1_ps(m);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {  // two independent chains
    const __m256 v0 = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    const __m256 v1 = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm));
    _mm256_storeu_ps(x + i, v0);
    _mm256_storeu_ps(x + i + 8, v1);
    acc0 = _mm256_add_ps(acc0, v0);
    acc1 = _mm256_add_ps(acc1, v1);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
  for (float l : lanes) s += l;
#else
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const auto vm = hn::Set(d, m);
  auto acc = hn::Zero(d);
  for (; i + N <= n; i += N) {
    auto v = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), vm));
    hn::StoreU(v, d, x + i);
    acc = hn::Add(acc, v);
  }
  s = hn::GetLane(hn::SumOfLanes(d, acc));
#endif
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    s += x[i];
  }
  return s;
}

// max(x[0..n)), -inf for n = 0.
float row_max(const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  auto acc = hn::Set(d, kNegInf);
  int64_t i = 0;
  for (; i + N <= n; i += N) acc = hn::Max(acc, hn::LoadU(d, x + i));
  float m = hn::GetLane(hn::MaxOfLanes(d, acc));
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}


void online_softmax(float* s, int64_t rows, int64_t cols, int64_t lds, float* m, float* l, float* acc, int64_t Ev) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    const float mnew = std::max(m[r], row_max(sr, cols));
    if (mnew == kNegInf) {  // nothing visible in this row yet
      std::fill(sr, sr + cols, 0.0f);
      continue;
    }
    if (mnew > m[r]) {
      const float alpha = m[r] == kNegInf ? 0.0f : std::exp(m[r] - mnew);
      l[r] *= alpha;
      float* a = acc + r * Ev;
      for (int64_t e = 0; e < Ev; ++e) a[e] *= alpha;
      m[r] = mnew;
    }
    l[r] += exp_sub_sum(sr, cols, mnew);
  }
}

void finish_rows(const float* acc, const float* m, const float* l, int64_t rows, int64_t Ev, float* out, float* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out + r * Ev;
    if (m[r] == kNegInf || l[r] == 0.0f) {
      std::fill(o, o + Ev, 0.0f);
      lse[r] = kNegInf;
      continue;
    }
    const float inv = 1.0f / l[r];
    const float* a = acc + r * Ev;
    for (int64_t e = 0; e < Ev; ++e) o[e] = a[e] * inv;
    lse[r] = m[r] + std::log(l[r]);
  }
}

void probs_from_lse(float* s, int64_t rows, int64_t cols, int64_t lds, const float* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    if (lse[r] == kNegInf)
      std::fill(sr, sr + cols, 0.0f);
    else
      exp_sub_sum(sr, cols, lse[r]);
  }
}

void score_grad(const float* p, float* dp, const float* fprime, const float* D, int64_t rows, int64_t cols, int64_t ld,
                float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* pr = p + r * ld;
    float* gr = dp + r * ld;
    const float Dr = D[r];
    if (fprime) {
      const float* fr = fprime + r * ld;
      for (int64_t c = 0; c < cols; ++c) gr[c] = pr[c] == 0.0f ? 0.0f : pr[c] * (gr[c] - Dr) * fr[c] * scale;
    } else {
      for (int64_t c = 0; c < cols; ++c) gr[c] = pr[c] == 0.0f ? 0.0f : pr[c] * (gr[c] - Dr) * scale;
    }
  }
}

}  // namespace attn::kernels::cpu::parts
