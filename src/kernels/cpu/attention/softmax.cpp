// The softmax parts of the fused attention loops: a row's max, exp(x - m)
// with its sum, the online-softmax fold of a tile, the epilogue, and the
// backward's probabilities and score gradients; the merge of two passes'
// outputs through their LSEs. Compiled for every SIMD
// target Highway can build here; the best one this CPU runs is chosen at the
// first call.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention/softmax.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/parallel.h"
#include "kernels/cpu/attention/parts.h"
#include "kernels/cpu/kernels.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels::cpu::parts {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// exp(x) for the softmax: 2^y with y = x log2 e, n = round(y), a degree-6
// Taylor polynomial of 2^f on |f| <= 1/2 (relative error <= 1.2e-7) and the
// power 2^n applied by vscalefps (AVX-512) or built in the exponent bits. y
// is clamped below so that -inf (and NaN) gives exactly 0: at -160 scalef
// rounds p 2^-160 to 0, at -127 the exponent field is 0; results under
// FLT_MIN are flushed by the kernels' flush-to-zero mode. 12 operations a
// vector where a compare, a blend and the integer conversion made 18
// (ExpSubSum's share of a (1, 4, 4096, 64) forward: 9.6% -> 7.1%).
template <class D, class V>
HWY_INLINE V ExpPs(D d, V x) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  constexpr bool kScalef = sizeof(hn::TFromD<D>) * hn::MaxLanes(d) == 64;
#else
  constexpr bool kScalef = false;
#endif
  const V y = hn::Max(hn::Mul(x, hn::Set(d, 1.44269504088896341f)), hn::Set(d, kScalef ? -160.0f : -127.0f));
  const V n = hn::Round(y);
  const V f = hn::Sub(y, n);
  V p = hn::Set(d, 1.5403530393381609e-4f);
  p = hn::MulAdd(p, f, hn::Set(d, 1.3333558146428443e-3f));
  p = hn::MulAdd(p, f, hn::Set(d, 9.6181291076284772e-3f));
  p = hn::MulAdd(p, f, hn::Set(d, 5.5504108664821580e-2f));
  p = hn::MulAdd(p, f, hn::Set(d, 2.4022650695910071e-1f));
  p = hn::MulAdd(p, f, hn::Set(d, 6.9314718055994531e-1f));
  p = hn::MulAdd(p, f, hn::Set(d, 1.0f));
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  if constexpr (kScalef) return V{_mm512_scalef_ps(p.raw, n.raw)};
#endif
  const hn::RebindToSigned<D> di;
  const auto e = hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, n), hn::Set(di, 127)));
  return hn::Mul(p, hn::BitCast(d, e));
}

// x[i] = exp(x[i] - m) for i < n; returns the sum. -inf entries give 0.
float ExpSubSum(float* x, int64_t n, float m) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const auto vm = hn::Set(d, m);
  auto acc0 = hn::Zero(d), acc1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {  // two independent chains
    const auto v0 = ExpPs(d, hn::Sub(hn::LoadU(d, x + i), vm));
    const auto v1 = ExpPs(d, hn::Sub(hn::LoadU(d, x + i + N), vm));
    hn::StoreU(v0, d, x + i);
    hn::StoreU(v1, d, x + i + N);
    acc0 = hn::Add(acc0, v0);
    acc1 = hn::Add(acc1, v1);
  }
  for (; i + N <= n; i += N) {
    const auto v = ExpPs(d, hn::Sub(hn::LoadU(d, x + i), vm));
    hn::StoreU(v, d, x + i);
    acc0 = hn::Add(acc0, v);
  }
  float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(acc0, acc1)));
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    s += x[i];
  }
  return s;
}

// max(x[0..n)), -inf for n = 0.
float RowMax(const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  auto acc = hn::Set(d, kNegInf);
  int64_t i = 0;
  for (; i + N <= n; i += N) acc = hn::Max(acc, hn::LoadU(d, x + i));
  float m = hn::GetLane(hn::MaxOfLanes(d, acc));
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

void OnlineSoftmax(float* s, int64_t rows, int64_t cols, int64_t lds, float* m, float* l, float* acc, int64_t Ev) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    const float mnew = std::max(m[r], RowMax(sr, cols));
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
    l[r] += ExpSubSum(sr, cols, mnew);
  }
}

void FinishRows(const float* acc, const float* m, const float* l, int64_t rows, int64_t Ev, float* out, float* lse) {
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

void ProbsFromLse(float* s, int64_t rows, int64_t cols, int64_t lds, const float* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    if (lse[r] == kNegInf)
      std::fill(sr, sr + cols, 0.0f);
    else
      ExpSubSum(sr, cols, lse[r]);
  }
}

void ScoreGrad(const float* p, float* dp, const float* fprime, const float* D, int64_t rows, int64_t cols, int64_t ld,
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

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels::cpu::parts
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::kernels::cpu::parts {

HWY_EXPORT(ExpSubSum);
HWY_EXPORT(RowMax);
HWY_EXPORT(OnlineSoftmax);
HWY_EXPORT(FinishRows);
HWY_EXPORT(ProbsFromLse);
HWY_EXPORT(ScoreGrad);

float exp_sub_sum(float* x, int64_t n, float m) {
  choose_simd_target();
  return HWY_DYNAMIC_DISPATCH(ExpSubSum)(x, n, m);
}
float row_max(const float* x, int64_t n) {
  choose_simd_target();
  return HWY_DYNAMIC_DISPATCH(RowMax)(x, n);
}
void online_softmax(float* s, int64_t rows, int64_t cols, int64_t lds, float* m, float* l, float* acc, int64_t Ev) {
  choose_simd_target();
  HWY_DYNAMIC_DISPATCH(OnlineSoftmax)(s, rows, cols, lds, m, l, acc, Ev);
}
void finish_rows(const float* acc, const float* m, const float* l, int64_t rows, int64_t Ev, float* out, float* lse) {
  choose_simd_target();
  HWY_DYNAMIC_DISPATCH(FinishRows)(acc, m, l, rows, Ev, out, lse);
}
void probs_from_lse(float* s, int64_t rows, int64_t cols, int64_t lds, const float* lse) {
  choose_simd_target();
  HWY_DYNAMIC_DISPATCH(ProbsFromLse)(s, rows, cols, lds, lse);
}
void score_grad(const float* p, float* dp, const float* fprime, const float* D, int64_t rows, int64_t cols, int64_t ld,
                float scale) {
  choose_simd_target();
  HWY_DYNAMIC_DISPATCH(ScoreGrad)(p, dp, fprime, D, rows, cols, ld, scale);
}

void merge_by_lse(float* O, float* LSE, const float* Ob, const float* LSEb, int64_t BH, int64_t L, int64_t Ev,
                  const std::vector<int64_t>& rows) {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  detail::parallel_for(BH * L, 256, [&](int64_t b, int64_t e) {
    for (int64_t x = b; x < e; ++x) {
      const float lb = LSEb[x];
      if (lb == ninf) continue;
      const int64_t row = (x / L) * L + rows[static_cast<size_t>(x % L)];
      float* o = O + row * Ev;
      const float* ob = Ob + x * Ev;
      const float la = LSE[row];
      if (la == ninf) {
        std::copy(ob, ob + Ev, o);
        LSE[row] = lb;
        continue;
      }
      const float mx = std::max(la, lb), wa = std::exp(la - mx), wb = std::exp(lb - mx), inv = 1.0f / (wa + wb);
      for (int64_t c = 0; c < Ev; ++c) o[c] = (wa * o[c] + wb * ob[c]) * inv;
      LSE[row] = mx + std::log(wa + wb);
    }
  });
}

}  // namespace attn::kernels::cpu::parts
#endif  // HWY_ONCE
