// Elementwise reference kernels: copies, fills, unary and binary maps,
// comparisons, where, triangles. Plain loops over strided_loop runs; the
// compiler vectorises the contiguous ones.
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <cmath>
#include <limits>

#include "core/parallel.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/loop.h"

namespace attn::kernels::cpu {

namespace {

namespace hn = hwy::HWY_NAMESPACE;

// GELU, exact form, over contiguous float32: v Phi(v) with Phi(v) = 1 - q for
// v >= 0 and q for v < 0, q = erfc(z) / 2, z = |v| / sqrt 2, so that q keeps
// its relative accuracy in the negative tail (where 1 + erf(v / sqrt 2)
// would cancel). erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), P the
// Chebyshev fit of Numerical Recipes (erfcc, relative error under 1.2e-7 for
// every z >= 0). The exponent is kept as a pair: -z^2 = -v^2 / 2 exactly
// (the product's rounding error from an FMA) and P, reduced by k ln 2 with
// ln 2 in two parts, so a large z^2 loses nothing to the argument's rounding;
// exp of the reduced argument (|r| < 0.35 + rounding) by its degree-7 Taylor
// polynomial, 2^k applied in two halves, after v, so that v q stays exact
// down to FLT_MIN where q alone would flush to zero. Past z = 10.5 q < 1e-50
// and counts as 0. Against a float64 reference over every 37th float up to
// 20 in magnitude: within 6.7 float32 ulp (test_numerics checks 8).
template <class D>
HWY_INLINE hn::Vec<D> gelu_erf_lanes(D d, hn::Vec<D> v) {
  const hn::RebindToSigned<D> di;
  const auto one = hn::Set(d, 1.0f);
  const auto a = hn::Abs(v);
  const auto z = hn::Mul(a, hn::Set(d, 0.70710678118654752440f));
  const auto t = hn::Div(one, hn::MulAdd(z, hn::Set(d, 0.5f), one));
  auto p = hn::Set(d, 0.17087277f);
  for (float c : {-0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f, -0.18628806f, 0.09678418f, 0.37409196f,
                  1.00002368f, -1.26551223f})
    p = hn::MulAdd(p, t, hn::Set(d, c));
  // -z^2 = hi + lo exactly: hi = -a^2 / 2 rounded, lo its error
  const auto sq = hn::Mul(a, a);
#if HWY_NATIVE_FMA
  const auto sq_err = hn::MulSub(a, a, sq);  // a^2 - sq, exact
#else
  // Without a fused multiply-add (a build for any x86-64), the same error by
  // Dekker's product: a = ah + al with 12-bit halves, whose products are exact.
  const auto big_a = hn::Mul(a, hn::Set(d, 4097.0f));
  const auto ah = hn::Sub(big_a, hn::Sub(big_a, a));
  const auto al = hn::Sub(a, ah);
  const auto sq_err =
      hn::Add(hn::Add(hn::Sub(hn::Mul(ah, ah), sq), hn::Mul(hn::Add(ah, ah), al)), hn::Mul(al, al));
#endif
  const auto hi = hn::Mul(hn::Set(d, -0.5f), sq);
  const auto rest = hn::NegMulAdd(hn::Set(d, 0.5f), sq_err, p);  // p - sq_err / 2
  const auto kf = hn::Round(hn::Mul(hn::Add(hi, rest), hn::Set(d, 1.44269504088896340736f)));
  // ln 2 = 0.693145751953125 (15 significant bits: k ln2_hi is exact) + 1.42860682e-6
  auto r = hn::NegMulAdd(kf, hn::Set(d, 0.693145751953125f), hi);
  r = hn::Add(hn::NegMulAdd(kf, hn::Set(d, 1.428606820309417232e-6f), r), rest);
  auto e = hn::Set(d, 1.0f / 5040.0f);
  for (float c : {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f})
    e = hn::MulAdd(e, r, hn::Set(d, c));
  const auto k = hn::ConvertTo(di, kf);                  // in [-112, 1] where used
  const auto k1 = hn::ShiftRight<1>(k);                  // floor(k / 2)
  const auto k2 = hn::Sub(k, k1);
  const auto bias = hn::Set(di, 127);
  const auto s1 = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(k1, bias)));
  const auto s2 = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(k2, bias)));
  // v q, multiplied from v down so that a result above FLT_MIN survives flush-to-zero
  auto vq = hn::Mul(hn::Mul(hn::Mul(hn::Mul(hn::Mul(v, hn::Set(d, 0.5f)), t), e), s1), s2);
  // Past z = 10.5 (and for NaN, inf): v q is v * 0 for v <= 0 (-0, NaN for
  // -inf as v * Phi(v) gives), 0 for v > 0 (v stays v).
  const auto big = hn::Not(hn::Le(z, hn::Set(d, 10.5f)));
  vq = hn::IfThenZeroElse(big, vq);
  const auto neg = hn::IfThenElse(big, hn::Mul(v, hn::Zero(d)), vq);
  return hn::IfThenElse(hn::Le(v, hn::Zero(d)), neg, hn::Sub(v, vq));
}

void gelu_erf_contiguous(const float* x, float* y, int64_t n) {
  detail::parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    const hn::ScalableTag<float> d;
    const int64_t N = static_cast<int64_t>(hn::Lanes(d));
    int64_t i = b;
    for (; i + N <= e; i += N) hn::StoreU(gelu_erf_lanes(d, hn::LoadU(d, x + i)), d, y + i);
    if (i < e) {
      // the tail through a full vector, so every element takes the same path
      HWY_ALIGN float buf[HWY_MAX_BYTES / sizeof(float)] = {};
      std::copy(x + i, x + e, buf);
      hn::Store(gelu_erf_lanes(d, hn::Load(d, buf)), d, buf);
      std::copy(buf, buf + (e - i), y + i);
    }
  });
}

constexpr double kSqrt2OverPi = 0.79788456080286535588;

// GELU with the tanh approximation (GPT-2's gelu_new) over contiguous float32,
// vectorised with Highway's Tanh (a few ulp): 0.5 v (1 + tanh(c (v + 0.044715 v^3))).
void gelu_tanh_contiguous(const float* x, float* y, int64_t n) {
  detail::parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    const hn::ScalableTag<float> d;
    const int64_t N = static_cast<int64_t>(hn::Lanes(d));
    const auto c = hn::Set(d, static_cast<float>(kSqrt2OverPi));
    const auto c3 = hn::Set(d, static_cast<float>(kSqrt2OverPi * 0.044715));
    const auto half = hn::Set(d, 0.5f);
    int64_t i = b;
    for (; i + N <= e; i += N) {
      const auto v = hn::LoadU(d, x + i);
      const auto inner = hn::Mul(v, hn::MulAdd(hn::Mul(v, v), c3, c));
      const auto h = hn::Mul(half, v);
      hn::StoreU(hn::MulAdd(h, hn::Tanh(d, inner), h), d, y + i);
    }
    for (; i < e; ++i) {
      const float v = x[i];
      y[i] = 0.5f * v * (1.0f + std::tanh(static_cast<float>(kSqrt2OverPi) * (v + 0.044715f * v * v * v)));
    }
  });
}

template <class To, class From>
inline To convert(From v) {
  if constexpr (std::is_same_v<From, BFloat16>) {
    return convert<To>(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, BFloat16>) {
    return BFloat16(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

template <class T>
T* base_ptr(const Tensor& t) {
  return static_cast<T*>(t.impl().storage->data) + t.storage_offset();
}

// out (contiguous, out_shape) = f(a) elementwise.
template <class TO, class TA, class F>
void map1(const Tensor& out, const Tensor& a, F f) {
  TO* po = base_ptr<TO>(out);
  const TA* pa = base_ptr<TA>(a);
  strided_loop<2>(out.shape(), {out.strides(), broadcast_strides(a, out.shape())},
                  [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
                    TO* o = po + off[0];
                    const TA* x = pa + off[1];
                    if (st[0] == 1 && st[1] == 1) {
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
                    } else {
                      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(x[i * st[1]]);
                    }
                  });
}

template <class TO, class TA, class TB, class F>
void map2(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  TO* po = base_ptr<TO>(out);
  const TA* pa = base_ptr<TA>(a);
  const TB* pb = base_ptr<TB>(b);
  strided_loop<3>(out.shape(),
                  {out.strides(), broadcast_strides(a, out.shape()), broadcast_strides(b, out.shape())},
                  [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
                    TO* o = po + off[0];
                    const TA* x = pa + off[1];
                    const TB* y = pb + off[2];
                    // Unit strides, or one operand broadcast along the run (a
                    // scalar, a per-row value): loops the compiler vectorizes.
                    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
                    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
                      const TB yv = *y;
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
                    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
                      const TA xv = *x;
                      for (int64_t i = 0; i < n; ++i) o[i] = f(xv, y[i]);
                    } else {
                      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(x[i * st[1]], y[i * st[2]]);
                    }
                  });
}

template <class TO, class TA, class TB, class TC, class F>
void map3(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& c, F f) {
  TO* po = base_ptr<TO>(out);
  const TA* pa = base_ptr<TA>(a);
  const TB* pb = base_ptr<TB>(b);
  const TC* pc = base_ptr<TC>(c);
  strided_loop<4>(out.shape(),
                  {out.strides(), broadcast_strides(a, out.shape()), broadcast_strides(b, out.shape()),
                   broadcast_strides(c, out.shape())},
                  [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& st) {
                    for (int64_t i = 0; i < n; ++i)
                      po[off[0] + i * st[0]] =
                          f(pa[off[1] + i * st[1]], pb[off[2] + i * st[2]], pc[off[3] + i * st[3]]);
                  });
}

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

}  // namespace

void copy(const Tensor& src, const Tensor& dst) {
  dispatch_all(dst.dtype(), [&](auto to) {
    using TO = typename decltype(to)::type;
    dispatch_all(src.dtype(), [&](auto from) {
      using TF = typename decltype(from)::type;
      map1<TO, TF>(dst, src, [](TF v) { return convert<TO>(v); });
    });
  });
}

void fill(const Tensor& dst, double value) {
  // Writes only: the destination may be uninitialised (reading it as bool is UB).
  dispatch_all(dst.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = convert<T>(value);
    T* p = base_ptr<T>(dst);
    strided_loop<1>(dst.shape(), {dst.strides()},
                    [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& st) {
                      for (int64_t i = 0; i < n; ++i) p[off[0] + i * st[0]] = v;
                    });
  });
}

void fill_arange(const Tensor& dst, double start, double step) {
  dispatch_numeric(dst.dtype(), "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = dst.data<T>();
    for (int64_t i = 0; i < dst.numel(); ++i) p[i] = static_cast<T>(start + static_cast<double>(i) * step);
  });
}

void fill_linspace(const Tensor& dst, double start, double end) {
  dispatch_float(dst.dtype(), "linspace", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = dst.data<T>();
    const int64_t n = dst.numel(), half = n / 2;
    const double step = n > 1 ? (end - start) / static_cast<double>(n - 1) : 0.0;
    for (int64_t i = 0; i < n; ++i)
      p[i] = static_cast<T>(i < half ? start + step * static_cast<double>(i)
                                     : end - step * static_cast<double>(n - 1 - i));
  });
}

Tensor unary(Unary op, const Tensor& x, double p0, double p1) {
  Tensor out = Tensor::make(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "unary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T a = static_cast<T>(p0), b = static_cast<T>(p1);
    switch (op) {
      case Unary::Neg: map1<T, T>(out, x, [](T v) { return -v; }); break;
      case Unary::Exp: map1<T, T>(out, x, [](T v) { return std::exp(v); }); break;
      case Unary::Log: map1<T, T>(out, x, [](T v) { return std::log(v); }); break;
      case Unary::Log1p: map1<T, T>(out, x, [](T v) { return std::log1p(v); }); break;
      case Unary::Sqrt: map1<T, T>(out, x, [](T v) { return std::sqrt(v); }); break;
      case Unary::Rsqrt: map1<T, T>(out, x, [](T v) { return T(1) / std::sqrt(v); }); break;
      case Unary::Abs: map1<T, T>(out, x, [](T v) { return std::abs(v); }); break;
      case Unary::Sign:
        map1<T, T>(out, x, [](T v) { return v > T(0) ? T(1) : (v < T(0) ? T(-1) : v); });
        break;
      case Unary::Sin: map1<T, T>(out, x, [](T v) { return std::sin(v); }); break;
      case Unary::Cos: map1<T, T>(out, x, [](T v) { return std::cos(v); }); break;
      case Unary::Tanh: map1<T, T>(out, x, [](T v) { return std::tanh(v); }); break;
      case Unary::Sigmoid:
        map1<T, T>(out, x, [](T v) {
          // stable for large |v|
          if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
          T e = std::exp(v);
          return e / (T(1) + e);
        });
        break;
      case Unary::Relu: map1<T, T>(out, x, [](T v) { return v > T(0) ? v : (v != v ? v : T(0)); }); break;
      case Unary::Gelu:
        if constexpr (std::is_same_v<T, float>) {
          if (x.is_contiguous()) {
            gelu_erf_contiguous(base_ptr<float>(x), base_ptr<float>(out), x.numel());
            break;
          }
        }
        map1<T, T>(out, x, [](T v) { return T(0.5) * v * (T(1) + std::erf(v * T(kSqrt1_2))); });
        break;
      case Unary::GeluTanh:
        if constexpr (std::is_same_v<T, float>) {
          if (x.is_contiguous()) {
            gelu_tanh_contiguous(base_ptr<float>(x), base_ptr<float>(out), x.numel());
            break;
          }
        }
        map1<T, T>(out, x, [](T v) {
          T inner = T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v);
          return T(0.5) * v * (T(1) + std::tanh(inner));
        });
        break;
      case Unary::Elu: map1<T, T>(out, x, [a](T v) { return v > T(0) ? v : a * (std::exp(v) - T(1)); }); break;
      case Unary::LeakyRelu: map1<T, T>(out, x, [a](T v) { return v > T(0) ? v : v * a; }); break;
      case Unary::Pow:
        if (p0 == 2.0)
          map1<T, T>(out, x, [](T v) { return v * v; });
        else
          map1<T, T>(out, x, [a](T v) { return std::pow(v, a); });
        break;
      case Unary::Softplus:
        map1<T, T>(out, x, [a, b](T v) {
          const T bv = a * v;
          if (bv > b) return v;
          return (std::max(bv, T(0)) + std::log1p(std::exp(-std::abs(bv)))) / a;
        });
        break;
      case Unary::Clamp:
        map1<T, T>(out, x, [a, b](T v) {
          if (v != v) return v;
          return v < a ? a : (v > b ? b : v);
        });
        break;
    }
  });
  return out;
}

Tensor unary_backward(Unary op, const Tensor& grad, const Tensor& x, const Tensor& y, double p0, double p1) {
  Tensor out = Tensor::make(grad.shape(), grad.dtype());
  dispatch_float(grad.dtype(), "unary_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T a = static_cast<T>(p0), b = static_cast<T>(p1);
    auto with_x = [&](auto f) { map2<T, T, T>(out, grad, x, f); };
    auto with_y = [&](auto f) { map2<T, T, T>(out, grad, y, f); };
    switch (op) {
      case Unary::Neg: map1<T, T>(out, grad, [](T g) { return -g; }); break;
      case Unary::Exp: with_y([](T g, T v) { return g * v; }); break;
      case Unary::Log: with_x([](T g, T v) { return g / v; }); break;
      case Unary::Log1p: with_x([](T g, T v) { return g / (T(1) + v); }); break;
      case Unary::Sqrt: with_y([](T g, T v) { return g / (T(2) * v); }); break;
      case Unary::Rsqrt: with_y([](T g, T v) { return T(-0.5) * g * v * v * v; }); break;
      case Unary::Abs:
        with_x([](T g, T v) { return v > T(0) ? g : (v < T(0) ? -g : T(0)); });
        break;
      case Unary::Sign: map1<T, T>(out, grad, [](T) { return T(0); }); break;
      case Unary::Sin: with_x([](T g, T v) { return g * std::cos(v); }); break;
      case Unary::Cos: with_x([](T g, T v) { return -g * std::sin(v); }); break;
      case Unary::Tanh: with_y([](T g, T v) { return g * (T(1) - v * v); }); break;
      case Unary::Sigmoid: with_y([](T g, T v) { return g * v * (T(1) - v); }); break;
      case Unary::Relu: with_y([](T g, T v) { return v > T(0) ? g : T(0); }); break;
      case Unary::Gelu:
        with_x([](T g, T v) {
          T cdf = T(0.5) * (T(1) + std::erf(v * T(kSqrt1_2)));
          T pdf = T(kInvSqrt2Pi) * std::exp(T(-0.5) * v * v);
          return g * (cdf + v * pdf);
        });
        break;
      case Unary::GeluTanh:
        with_x([](T g, T v) {
          T inner = T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v);
          T t = std::tanh(inner);
          T dinner = T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * v * v);
          return g * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * dinner);
        });
        break;
      case Unary::Elu: with_x([a](T g, T v) { return v > T(0) ? g : g * a * std::exp(v); }); break;
      case Unary::LeakyRelu: with_x([a](T g, T v) { return v > T(0) ? g : g * a; }); break;
      case Unary::Pow:
        if (p0 == 0.0)
          map1<T, T>(out, grad, [](T) { return T(0); });
        else if (p0 == 2.0)
          with_x([](T g, T v) { return T(2) * g * v; });
        else
          with_x([a](T g, T v) { return g * a * std::pow(v, a - T(1)); });
        break;
      case Unary::Softplus:
        with_x([a, b](T g, T v) {
          const T bv = a * v;
          if (bv > b) return g;
          return bv >= T(0) ? g / (T(1) + std::exp(-bv)) : g * std::exp(bv) / (T(1) + std::exp(bv));
        });
        break;
      case Unary::Clamp: with_x([a, b](T g, T v) { return (v >= a && v <= b) ? g : T(0); }); break;
    }
  });
  return out;
}

Tensor binary(Binary op, const Tensor& a, const Tensor& b, const Shape& out_shape) {
  Tensor out = Tensor::make(out_shape, a.dtype());
  dispatch_numeric(a.dtype(), "binary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case Binary::Add: map2<T, T, T>(out, a, b, [](T x, T y) { return x + y; }); break;
      case Binary::Sub: map2<T, T, T>(out, a, b, [](T x, T y) { return x - y; }); break;
      case Binary::Mul: map2<T, T, T>(out, a, b, [](T x, T y) { return x * y; }); break;
      case Binary::Div:
        if constexpr (std::is_floating_point_v<T>) map2<T, T, T>(out, a, b, [](T x, T y) { return x / y; });
        break;
      case Binary::Max:
        map2<T, T, T>(out, a, b, [](T x, T y) { return (x != x || x > y) ? x : y; });
        break;
      case Binary::Min:
        map2<T, T, T>(out, a, b, [](T x, T y) { return (x != x || x < y) ? x : y; });
        break;
      case Binary::Pow:
        if constexpr (std::is_floating_point_v<T>)
          map2<T, T, T>(out, a, b, [](T x, T y) { return std::pow(x, y); });
        break;
    }
  });
  return out;
}

Tensor compare(Compare op, const Tensor& a, const Tensor& b, const Shape& out_shape) {
  Tensor out = Tensor::make(out_shape, DType::Bool);
  dispatch_all(a.dtype(), [&](auto tag) {
    using T0 = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T0, BFloat16>) {
      throw Error("compare: bfloat16 tensors are storage only; convert with to(kFloat32) first");
    } else {
      using T = T0;
      switch (op) {
        case Compare::Eq: map2<bool, T, T>(out, a, b, [](T x, T y) { return x == y; }); break;
        case Compare::Ne: map2<bool, T, T>(out, a, b, [](T x, T y) { return x != y; }); break;
        case Compare::Lt: map2<bool, T, T>(out, a, b, [](T x, T y) { return x < y; }); break;
        case Compare::Le: map2<bool, T, T>(out, a, b, [](T x, T y) { return x <= y; }); break;
        case Compare::Gt: map2<bool, T, T>(out, a, b, [](T x, T y) { return x > y; }); break;
        case Compare::Ge: map2<bool, T, T>(out, a, b, [](T x, T y) { return x >= y; }); break;
      }
    }
  });
  return out;
}

Tensor logical(Logical op, const Tensor& a, const Tensor& b, const Shape& out_shape) {
  Tensor out = Tensor::make(out_shape, DType::Bool);
  if (op == Logical::And)
    map2<bool, bool, bool>(out, a, b, [](bool x, bool y) { return x && y; });
  else
    map2<bool, bool, bool>(out, a, b, [](bool x, bool y) { return x || y; });
  return out;
}

Tensor logical_not(const Tensor& a) {
  Tensor out = Tensor::make(a.shape(), DType::Bool);
  map1<bool, bool>(out, a, [](bool x) { return !x; });
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, const Shape& out_shape) {
  Tensor out = Tensor::make(out_shape, a.dtype());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    map3<T, bool, T, T>(out, cond, a, b, [](bool c, T x, T y) { return c ? x : y; });
  });
  return out;
}

Tensor tri(const Tensor& x, int64_t k, bool upper) {
  Tensor out = Tensor::make(x.shape(), x.dtype(), /*zero=*/true);
  const int64_t R = x.size(-2), C = x.size(-1);
  const int64_t batch = R * C == 0 ? 0 : x.numel() / (R * C);
  Tensor xc = x.contiguous();
  const size_t isz = x.itemsize();
  const char* src = static_cast<const char*>(xc.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  detail::parallel_for(batch * R, 256, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row % R;
      // lower keeps j <= i + k; upper keeps j >= i + k
      int64_t lo = upper ? std::max<int64_t>(0, i + k) : 0;
      int64_t hi = upper ? C : std::min<int64_t>(C, i + k + 1);
      if (hi > lo) std::memcpy(dst + (row * C + lo) * isz, src + (row * C + lo) * isz, (hi - lo) * isz);
    }
  });
  return out;
}

}  // namespace attn::kernels::cpu
