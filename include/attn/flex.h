// flex_attention: attention whose scores and mask are programs (as PyTorch's
// FlexAttention), compiled into the attention loop as C++ templates,
// differentiable in q, k, v and in the tensors the programs read.
//
//   auto alibi = [&](auto s, int64_t b, int64_t h, int64_t q, int64_t kv) {
//     return s - slope[h] * std::abs(q - kv);                  // score_mod
//   };
//   auto causal = [](int64_t b, int64_t h, int64_t q, int64_t kv) { return kv <= q; };  // mask_mod
//   Tensor out = F::flex_attention(q, k, v, alibi, causal);
//
// score_mod(score, b, h, q_idx, kv_idx) -> score is written once, generically
// over its scalar type (a generic lambda): the forward calls it with the
// score as float (or double), the backward with flex::Dual, a forward-mode
// dual number, to get its derivative. Dual supports arithmetic with floats and
// integers, comparisons, and exp, log, tanh, sqrt, abs, sin, cos, min, max,
// found by argument-dependent lookup: `using std::tanh; return cap * tanh(s / cap);`
// works for both. Return whatever the expression gives (float, double or
// Dual): its value is taken.
//
// mask_mod(b, h, q_idx, kv_idx) -> bool: true = attend (as SDPA's bool mask).
// A query row with no visible key gives output 0 and LSE -inf.
//
// Tensors a modifier reads are wrapped as flex::Captured c(tensor) and read
// as c(i0, i1, ...) (a Dual<double> holding the value; float32, float64, int64 or
// bool tensors). The Captured objects alive on the
// calling thread when flex_attention runs are inputs of its autograd node: a
// floating one that requires grad gets its gradient (accumulated per task and
// summed in a fixed order: the same bits at any thread count). flex_attention
// keeps copies of the modifiers for the backward, which runs later: capture
// Captured objects (copies share the tensor) and anything else by value.
//
// Shapes as scaled_dot_product_attention: q (B..., Hq, L, E), k (B..., Hk, S,
// E), v (B..., Hk, S, Ev) -> (B..., Hq, L, Ev); b is the flattened batch index.
// Memory beyond the inputs and outputs: K^T packed once (the size of K), per
// thread a few 64 x 256 tiles; no (L, S) matrix.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "attn/attention.h"
#include "attn/functional.h"
#include "attn/ops.h"
#include "attn/tensor.h"

namespace attn::nn::functional {

namespace flex {

// ---- Dual numbers -------------------------------------------------------------------------

// a + b ε with ε² = 0: `v` the value, `d` the derivative along the seeded input.
template <class T>
struct Dual {
  T v{}, d{};
  constexpr Dual() = default;
  constexpr Dual(T value, T deriv) : v(value), d(deriv) {}
  template <class U, std::enable_if_t<std::is_arithmetic_v<U>, int> = 0>
  constexpr Dual(U x) : v(static_cast<T>(x)), d(0) {}  // NOLINT: implicit, a constant
};

template <class T> struct is_dual : std::false_type {};
template <class T> struct is_dual<Dual<T>> : std::true_type {};

#define ATTN_FLEX_ARITH(U) template <class T, class U, std::enable_if_t<std::is_arithmetic_v<U>, int> = 0>
template <class T> constexpr Dual<T> operator+(Dual<T> a, Dual<T> b) { return {a.v + b.v, a.d + b.d}; }
template <class T> constexpr Dual<T> operator-(Dual<T> a, Dual<T> b) { return {a.v - b.v, a.d - b.d}; }
template <class T> constexpr Dual<T> operator*(Dual<T> a, Dual<T> b) { return {a.v * b.v, a.d * b.v + a.v * b.d}; }
template <class T> constexpr Dual<T> operator/(Dual<T> a, Dual<T> b) {
  return {a.v / b.v, (a.d * b.v - a.v * b.d) / (b.v * b.v)};
}
template <class T> constexpr Dual<T> operator-(Dual<T> a) { return {-a.v, -a.d}; }
template <class T> constexpr Dual<T> operator+(Dual<T> a) { return a; }
ATTN_FLEX_ARITH(U) constexpr Dual<T> operator+(Dual<T> a, U b) { return a + Dual<T>(b); }
ATTN_FLEX_ARITH(U) constexpr Dual<T> operator+(U a, Dual<T> b) { return Dual<T>(a) + b; }
ATTN_FLEX_ARITH(U) constexpr Dual<T> operator-(Dual<T> a, U b) { return a - Dual<T>(b); }
ATTN_FLEX_ARITH(U) constexpr Dual<T> operator-(U a, Dual<T> b) { return Dual<T>(a) - b; }
ATTN_FLEX_ARITH(U) constexpr Dual<T> operator*(Dual<T> a, U b) { return {a.v * static_cast<T>(b), a.d * static_cast<T>(b)}; }
ATTN_FLEX_ARITH(U) constexpr Dual<T> operator*(U a, Dual<T> b) { return b * a; }
ATTN_FLEX_ARITH(U) constexpr Dual<T> operator/(Dual<T> a, U b) { return {a.v / static_cast<T>(b), a.d / static_cast<T>(b)}; }
ATTN_FLEX_ARITH(U) constexpr Dual<T> operator/(U a, Dual<T> b) { return Dual<T>(a) / b; }
template <class T, class U> constexpr Dual<T>& operator+=(Dual<T>& a, U b) { return a = a + b; }
template <class T, class U> constexpr Dual<T>& operator-=(Dual<T>& a, U b) { return a = a - b; }
template <class T, class U> constexpr Dual<T>& operator*=(Dual<T>& a, U b) { return a = a * b; }
template <class T, class U> constexpr Dual<T>& operator/=(Dual<T>& a, U b) { return a = a / b; }

// Comparisons look at values.
template <class X> constexpr auto dual_value(const X& x) {
  if constexpr (is_dual<X>::value) return x.v; else return x;
}
#define ATTN_FLEX_CMP(op)                                                                          \
  template <class T> constexpr bool operator op(Dual<T> a, Dual<T> b) { return a.v op b.v; }       \
  ATTN_FLEX_ARITH(U) constexpr bool operator op(Dual<T> a, U b) { return a.v op static_cast<T>(b); } \
  ATTN_FLEX_ARITH(U) constexpr bool operator op(U a, Dual<T> b) { return static_cast<T>(a) op b.v; }
ATTN_FLEX_CMP(<)
ATTN_FLEX_CMP(>)
ATTN_FLEX_CMP(<=)
ATTN_FLEX_CMP(>=)
ATTN_FLEX_CMP(==)
ATTN_FLEX_CMP(!=)
#undef ATTN_FLEX_CMP

// Math functions (found by argument-dependent lookup beside std's).
template <class T> Dual<T> exp(Dual<T> a) { const T e = std::exp(a.v); return {e, a.d * e}; }
template <class T> Dual<T> log(Dual<T> a) { return {std::log(a.v), a.d / a.v}; }
template <class T> Dual<T> tanh(Dual<T> a) { const T t = std::tanh(a.v); return {t, a.d * (T(1) - t * t)}; }
template <class T> Dual<T> sqrt(Dual<T> a) { const T r = std::sqrt(a.v); return {r, a.d / (T(2) * r)}; }
template <class T> Dual<T> abs(Dual<T> a) { return a.v < T(0) ? -a : a; }
template <class T> Dual<T> sin(Dual<T> a) { return {std::sin(a.v), a.d * std::cos(a.v)}; }
template <class T> Dual<T> cos(Dual<T> a) { return {std::cos(a.v), -a.d * std::sin(a.v)}; }
template <class T> Dual<T> min(Dual<T> a, Dual<T> b) { return b.v < a.v ? b : a; }
template <class T> Dual<T> max(Dual<T> a, Dual<T> b) { return a.v < b.v ? b : a; }
ATTN_FLEX_ARITH(U) Dual<T> min(Dual<T> a, U b) { return min(a, Dual<T>(b)); }
ATTN_FLEX_ARITH(U) Dual<T> min(U a, Dual<T> b) { return min(Dual<T>(a), b); }
ATTN_FLEX_ARITH(U) Dual<T> max(Dual<T> a, U b) { return max(a, Dual<T>(b)); }
ATTN_FLEX_ARITH(U) Dual<T> max(U a, Dual<T> b) { return max(Dual<T>(a), b); }
#undef ATTN_FLEX_ARITH

// ---- Lanes: a modifier evaluated on 16 keys per call ------------------------------------------

// A modifier wrapped as flex::vectorized(f) is called by the forward (and for
// the score derivative by the backward) with kv_idx as Lanes<int64_t> (16
// consecutive keys) and the score as Lanes<float> (Lanes<Dual<float>> when
// the derivative is wanted); b, h and q_idx stay int64_t. Written with auto
// parameters and without branches on the indices, the same lambda serves
// both forms:
//
//   auto alibi = flex::vectorized([sl](auto s, auto, auto h, auto q, auto kv) {
//     using std::abs;
//     return s - sl(h) * abs(q - kv);
//   });
//
// Lanes have element-wise arithmetic with each other and with numbers,
// Dual and Captured reads, comparisons (giving Lanes<bool>, combined with
// &&, ||, !), where(mask, a, b), abs, min, max, exp, log, tanh, sqrt, sin and
// cos. A Captured read with a Lanes index gathers 16 elements (as float32:
// integers are exact below 2^24; consecutive elements are one load, equal
// ones a broadcast). Integer lanes keep integer arithmetic;
// mixed with floating values they become float lanes. Captured gradients
// still come from the scalar form.
// Lane operations are forced inline: a call per operation on 16 lanes would
// cost more than the operation, and -O2's inliner would leave some as calls.
#if defined(__GNUC__)
#define ATTN_FLEX_INLINE [[gnu::always_inline]] inline
#else
#define ATTN_FLEX_INLINE inline
#endif
// A loop over the 16 lanes, kept a loop so that it is vectorized as one: GCC
// at -O3 unrolls such loops completely first and then assembles int64 lanes
// one insert at a time (an ALiBi score_mod ran 15% slower at -O3 than -O2).
#if defined(__GNUC__) && !defined(__clang__)
#define ATTN_LANES_FOR(i) _Pragma("GCC unroll 1") for (int i = 0; i < kLanes; ++i)
#else
#define ATTN_LANES_FOR(i) for (int i = 0; i < kLanes; ++i)
#endif

inline constexpr int kLanes = 16;

template <class T>
struct Lanes {
  T x[kLanes];
  constexpr T& operator[](int i) { return x[i]; }
  constexpr const T& operator[](int i) const { return x[i]; }
};
template <class T> struct is_lanes : std::false_type {};
template <class T> struct is_lanes<Lanes<T>> : std::true_type {};

template <class F>
struct Vectorized {
  F f;
  template <class... A>
  ATTN_FLEX_INLINE auto operator()(A&&... a) const -> decltype(f(std::forward<A>(a)...)) {
    return f(std::forward<A>(a)...);
  }
};
template <class T> struct is_vectorized : std::false_type {};
template <class F> struct is_vectorized<Vectorized<F>> : std::true_type {};
// Marks a modifier as callable with Lanes (see above).
template <class F>
Vectorized<std::decay_t<F>> vectorized(F&& f) {
  return {std::forward<F>(f)};
}
struct Identity;
struct Full;
inline Identity vectorized(Identity);  // the defaults need no lanes
inline Full vectorized(Full);

namespace lanes_detail {
// Element types: bool < int64_t < float < Dual<float>.
template <class T> constexpr int rank() {
  if constexpr (std::is_same_v<T, Dual<float>>) return 3;
  else if constexpr (std::is_floating_point_v<T>) return 2;
  else if constexpr (std::is_same_v<T, bool>) return 0;
  else return 1;
}
template <int R> struct type_of;
template <> struct type_of<0> { using type = bool; };
template <> struct type_of<1> { using type = int64_t; };
template <> struct type_of<2> { using type = float; };
template <> struct type_of<3> { using type = Dual<float>; };
// The lane element type a number takes: integers and bool keep their kind,
// floating values become float.
template <class U> ATTN_FLEX_INLINE auto as_elem(const U& u) {
  if constexpr (std::is_floating_point_v<U>) {
    return static_cast<float>(u);
  } else if constexpr (std::is_same_v<U, bool>) {
    return u;
  } else {
    return static_cast<int64_t>(u);
  }
}
template <class A, class B> using promote_t = typename type_of<std::max(rank<A>(), rank<B>())>::type;
template <class R, class A> ATTN_FLEX_INLINE constexpr R conv(const A& a) {
  if constexpr (std::is_same_v<R, A>) return a;
  else if constexpr (std::is_same_v<R, Dual<float>>) {
    if constexpr (is_dual<A>::value) return Dual<float>(static_cast<float>(a.v), static_cast<float>(a.d));
    else return Dual<float>(static_cast<float>(a), 0.0f);
  } else if constexpr (is_dual<A>::value) {
    return static_cast<R>(a.v);
  } else {
    return static_cast<R>(a);
  }
}
template <class T> ATTN_FLEX_INLINE constexpr auto value_of(const T& a) {
  if constexpr (is_dual<T>::value) return a.v; else return a;
}
// Lanes of a scalar.
template <class U> ATTN_FLEX_INLINE auto splat(const U& u) {
  if constexpr (is_lanes<U>::value) {
    return u;
  } else if constexpr (is_dual<U>::value) {
    Lanes<float> r;  // a Captured read: its derivative is only wanted by the scalar form
    ATTN_LANES_FOR(i) r[i] = static_cast<float>(u.v);
    return r;
  } else {
    using E = decltype(as_elem(u));
    Lanes<E> r;
    ATTN_LANES_FOR(i) r[i] = as_elem(u);
    return r;
  }
}
template <class X, class Y>
constexpr bool any_lanes = is_lanes<X>::value || is_lanes<Y>::value;
template <class X>
constexpr bool lane_operand = is_lanes<X>::value || std::is_arithmetic_v<X> || is_dual<X>::value;
}  // namespace lanes_detail

#define ATTN_LANES_BINARY(op)                                                                              \
  template <class X, class Y,                                                                              \
            std::enable_if_t<lanes_detail::any_lanes<X, Y> && lanes_detail::lane_operand<X> &&             \
                                 lanes_detail::lane_operand<Y>,                                            \
                             int> = 0>                                                                     \
  ATTN_FLEX_INLINE auto operator op(const X& x, const Y& y) {                                                               \
    const auto a = lanes_detail::splat(x);                                                                 \
    const auto b = lanes_detail::splat(y);                                                                 \
    using A = std::decay_t<decltype(a.x[0])>;                                                              \
    using B = std::decay_t<decltype(b.x[0])>;                                                              \
    using R = lanes_detail::promote_t<A, B>;                                                               \
    using E = std::conditional_t<std::is_same_v<R, bool>, int64_t, R>;                                     \
    Lanes<E> r;                                                                                            \
    ATTN_LANES_FOR(i) r[i] = lanes_detail::conv<E>(a[i]) op lanes_detail::conv<E>(b[i]);    \
    return r;                                                                                              \
  }
ATTN_LANES_BINARY(+)
ATTN_LANES_BINARY(-)
ATTN_LANES_BINARY(*)
ATTN_LANES_BINARY(/)
#undef ATTN_LANES_BINARY

#define ATTN_LANES_COMPARE(op)                                                                             \
  template <class X, class Y,                                                                              \
            std::enable_if_t<lanes_detail::any_lanes<X, Y> && lanes_detail::lane_operand<X> &&             \
                                 lanes_detail::lane_operand<Y>,                                            \
                             int> = 0>                                                                     \
  ATTN_FLEX_INLINE Lanes<bool> operator op(const X& x, const Y& y) {                                                        \
    const auto a = lanes_detail::splat(x);                                                                 \
    const auto b = lanes_detail::splat(y);                                                                 \
    using A = std::decay_t<decltype(a.x[0])>;                                                              \
    using B = std::decay_t<decltype(b.x[0])>;                                                              \
    using R = lanes_detail::promote_t<lanes_detail::promote_t<A, B>, int64_t>;                             \
    Lanes<bool> r;                                                                                         \
    ATTN_LANES_FOR(i)                                                                       \
      r[i] = lanes_detail::value_of(lanes_detail::conv<R>(a[i])) op                                        \
             lanes_detail::value_of(lanes_detail::conv<R>(b[i]));                                          \
    return r;                                                                                              \
  }
ATTN_LANES_COMPARE(<)
ATTN_LANES_COMPARE(>)
ATTN_LANES_COMPARE(<=)
ATTN_LANES_COMPARE(>=)
ATTN_LANES_COMPARE(==)
ATTN_LANES_COMPARE(!=)
#undef ATTN_LANES_COMPARE

#define ATTN_LANES_LOGIC(op)                                                                               \
  ATTN_FLEX_INLINE Lanes<bool> operator op(const Lanes<bool>& a, const Lanes<bool>& b) {                             \
    Lanes<bool> r;                                                                                         \
    ATTN_LANES_FOR(i) r[i] = a[i] op b[i];                                                  \
    return r;                                                                                              \
  }                                                                                                        \
  ATTN_FLEX_INLINE Lanes<bool> operator op(const Lanes<bool>& a, bool b) { return a op lanes_detail::splat(b); }     \
  ATTN_FLEX_INLINE Lanes<bool> operator op(bool a, const Lanes<bool>& b) { return lanes_detail::splat(a) op b; }
ATTN_LANES_LOGIC(&&)
ATTN_LANES_LOGIC(||)
ATTN_LANES_LOGIC(&)
ATTN_LANES_LOGIC(|)
#undef ATTN_LANES_LOGIC
ATTN_FLEX_INLINE Lanes<bool> operator!(const Lanes<bool>& a) {
  Lanes<bool> r;
  ATTN_LANES_FOR(i) r[i] = !a[i];
  return r;
}
template <class T>
ATTN_FLEX_INLINE Lanes<T> operator-(const Lanes<T>& a) {
  Lanes<T> r;
  ATTN_LANES_FOR(i) r[i] = -a[i];
  return r;
}

// where(mask, a, b): a where mask holds, else b (lanes or numbers).
template <class X, class Y>
ATTN_FLEX_INLINE auto where(const Lanes<bool>& m, const X& x, const Y& y) {
  const auto a = lanes_detail::splat(x);
  const auto b = lanes_detail::splat(y);
  using R = lanes_detail::promote_t<std::decay_t<decltype(a.x[0])>, std::decay_t<decltype(b.x[0])>>;
  Lanes<R> r;
  ATTN_LANES_FOR(i) r[i] = m[i] ? lanes_detail::conv<R>(a[i]) : lanes_detail::conv<R>(b[i]);
  return r;
}
// The scalar form of where, so that one modifier serves both forms.
template <class X, class Y>
auto where(bool m, const X& x, const Y& y) {
  if constexpr (std::is_arithmetic_v<X> && std::is_arithmetic_v<Y>)
    return m ? static_cast<std::common_type_t<X, Y>>(x) : static_cast<std::common_type_t<X, Y>>(y);
  else
    return m ? Dual<double>(x) : Dual<double>(y);
}

#define ATTN_LANES_MATH(fn)                                                                                \
  template <class T>                                                                                       \
  ATTN_FLEX_INLINE auto fn(const Lanes<T>& a) {                                                                             \
    using R = lanes_detail::promote_t<T, float>;                                                           \
    Lanes<R> r;                                                                                            \
    ATTN_LANES_FOR(i) {                                                                     \
      using std::fn;                                                                                       \
      r[i] = fn(lanes_detail::conv<R>(a[i]));                                                              \
    }                                                                                                      \
    return r;                                                                                              \
  }
ATTN_LANES_MATH(exp)
ATTN_LANES_MATH(log)
ATTN_LANES_MATH(tanh)
ATTN_LANES_MATH(sqrt)
ATTN_LANES_MATH(sin)
ATTN_LANES_MATH(cos)
#undef ATTN_LANES_MATH
template <class T>
ATTN_FLEX_INLINE Lanes<T> abs(const Lanes<T>& a) {
  Lanes<T> r;
  ATTN_LANES_FOR(i) {
    if constexpr (is_dual<T>::value) r[i] = a[i].v < 0 ? -a[i] : a[i];
    else r[i] = a[i] < 0 ? -a[i] : a[i];
  }
  return r;
}
#define ATTN_LANES_MINMAX(fn, cmp)                                                                         \
  template <class X, class Y, std::enable_if_t<lanes_detail::any_lanes<X, Y>, int> = 0>                    \
  ATTN_FLEX_INLINE auto fn(const X& x, const Y& y) {                                                                        \
    const auto a = lanes_detail::splat(x);                                                                 \
    const auto b = lanes_detail::splat(y);                                                                 \
    using R = lanes_detail::promote_t<std::decay_t<decltype(a.x[0])>, std::decay_t<decltype(b.x[0])>>;    \
    Lanes<R> r;                                                                                            \
    ATTN_LANES_FOR(i) {                                                                     \
      const R p = lanes_detail::conv<R>(a[i]), q = lanes_detail::conv<R>(b[i]);                            \
      r[i] = lanes_detail::value_of(q) cmp lanes_detail::value_of(p) ? q : p;                              \
    }                                                                                                      \
    return r;                                                                                              \
  }
ATTN_LANES_MINMAX(min, <)
ATTN_LANES_MINMAX(max, >)
#undef ATTN_LANES_MINMAX

// ---- Captured tensors -----------------------------------------------------------------------

namespace detail {
// A Captured tensor: the caller's tensor (the autograd input) and a
// contiguous, detached view or copy of it that reads see.
struct CapturedState {
  static constexpr int kMaxDim = 8;
  Tensor source, data, data32;  // the values as contiguous float64 and float32 copies
  const double* values = nullptr;
  const float* values32 = nullptr;  // what reads with Lanes indices see
  int dim = 0;
  int64_t sizes[kMaxDim] = {}, strides[kMaxDim] = {};
};
void mark_bad_read();
// What the backward asks of the reads of one modifier call: count them,
// record which element each read, and seed read number `seed` (d = 1).
struct ReadLog {
  static constexpr int kMax = 8;
  int seed = -1, count = 0;
  const CapturedState* which[kMax] = {};
  int64_t index[kMax] = {};
  bool out_of_range = false;
};
inline thread_local ReadLog* g_read_log = nullptr;
}  // namespace detail

class Captured {
 public:
  explicit Captured(const Tensor& tensor);
  Captured(const Captured&) = default;
  Captured& operator=(const Captured&) = default;

  // The element at (i0, i1, ...), one index per dim, as a Dual<double>; with
  // a Lanes<int64_t> index among them, the 16 elements as Lanes<float>.
  template <class... I>
  ATTN_FLEX_INLINE auto operator()(I... idx) const {
    if constexpr ((is_lanes<I>::value || ...)) {
      const detail::CapturedState& s = *state_;
      Lanes<float> r;
      if (static_cast<int>(sizeof...(I)) != s.dim) {
        detail::mark_bad_read();
        ATTN_LANES_FOR(l) r[l] = 0.0f;
        return r;
      }
      int64_t off[kLanes] = {};
      bool bad = false;
      int d = 0;
      (add_offsets(s, d++, idx, off, bad), ...);
      if (bad) detail::mark_bad_read();
      // Consecutive or equal offsets (a band of keys, a clipped tail) are a
      // load or a broadcast; anything else a gather.
      bool consecutive = true, equal = true;
      ATTN_LANES_FOR(l) {
        consecutive &= off[l] == off[0] + l;
        equal &= off[l] == off[0];
      }
      const float* v = s.values32;
      if (consecutive) {
        ATTN_LANES_FOR(l) r[l] = v[off[0] + l];
      } else if (equal) {
        ATTN_LANES_FOR(l) r[l] = v[off[0]];
      } else {
        ATTN_LANES_FOR(l) r[l] = v[off[l]];
      }
      return r;
    } else {
      const int64_t ix[] = {static_cast<int64_t>(idx)..., 0};
      return read(ix, static_cast<int>(sizeof...(I)));
    }
  }
  const Tensor& tensor() const;

 private:
  // Adds index `i` of dim d to the lanes' offsets; an index outside the dim
  // sets bad and reads element 0 instead.
  template <class I>
  ATTN_FLEX_INLINE static void add_offsets(const detail::CapturedState& s, int d, const I& i, int64_t* off, bool& bad) {
    const uint64_t size = static_cast<uint64_t>(s.sizes[d]);
    const int64_t stride = s.strides[d];
    if constexpr (is_lanes<I>::value) {
      bool out = false;
      ATTN_LANES_FOR(l) {
        const int64_t x = static_cast<int64_t>(i[l]);
        const bool ok = static_cast<uint64_t>(x) < size;
        out |= !ok;
        off[l] += (ok ? x : 0) * stride;
      }
      bad |= out;
    } else {
      const int64_t x = static_cast<int64_t>(i);
      const bool ok = static_cast<uint64_t>(x) < size;
      bad |= !ok;
      ATTN_LANES_FOR(l) off[l] += (ok ? x : 0) * stride;
    }
  }
  Dual<double> read(const int64_t* idx, int n) const {
    const detail::CapturedState& s = *state_;
    if (n != s.dim) {
      detail::mark_bad_read();
      return {0.0, 0.0};
    }
    int64_t off = 0;
    for (int d = 0; d < n; ++d) {
      if (static_cast<uint64_t>(idx[d]) >= static_cast<uint64_t>(s.sizes[d])) {  // also idx < 0
        detail::mark_bad_read();
        return {0.0, 0.0};
      }
      off += idx[d] * s.strides[d];
    }
    const double value = s.values[off];
    double deriv = 0;
    if (detail::ReadLog* log = detail::g_read_log) {
      const int r = log->count++;
      if (r < detail::ReadLog::kMax) {
        log->which[r] = state_.get();
        log->index[r] = off;
      }
      if (r == log->seed) deriv = 1.0;
    }
    return {value, deriv};
  }
  std::shared_ptr<detail::CapturedState> state_;
};

// ---- Defaults and block masks -----------------------------------------------------------------

struct Identity {
  template <class S, class... I>
  S operator()(S s, I...) const { return s; }
};
inline constexpr Identity identity{};
struct Full {
  template <class... I>
  constexpr bool operator()(I...) const { return true; }
};
inline constexpr Full full{};
inline Identity vectorized(Identity) { return {}; }
inline Full vectorized(Full) { return {}; }

// Tiles of (kBlock queries) x (kBlock keys), each empty (no visible key),
// full (every key visible) or partial, per (b, h): empty tiles are skipped
// and full ones skip the mask calls. B or H of 1 stand for every batch or head.
struct BlockMask {
  static constexpr int64_t kBlock = 64;
  enum State : uint8_t { Empty = 0, Partial = 1, Full = 2 };
  int64_t B = 0, H = 0, L = 0, S = 0, QB = 0, KB = 0;
  std::vector<uint8_t> states;  // (B, H, QB, KB)
  State at(int64_t b, int64_t h, int64_t qb, int64_t kb) const {
    return static_cast<State>(states[static_cast<size_t>(((B == 1 ? 0 : b) * H + (H == 1 ? 0 : h)) * QB * KB +
                                                          qb * KB + kb)]);
  }
  // Visible tiles over all tiles (for reporting).
  double density() const;
};

// Classifies every tile by calling mask_mod on each of its elements, once per shape.
template <class MaskMod>
BlockMask create_block_mask(MaskMod&& mask_mod, int64_t B, int64_t H, int64_t L, int64_t S);

}  // namespace flex

struct FlexOptions {
  ATTN_ARG(std::optional<double>, scale) = std::nullopt;  // 1/sqrt(E)
  ATTN_ARG(bool, enable_gqa) = false;
  ATTN_ARG(const flex::BlockMask*, block_mask) = nullptr;  // from create_block_mask on the same shape
  // Shaw's relative values: a table (2K + 1, Ev) of the query's dtype; row i
  // of the output gains sum_j p_ij table[clip(j - i, -K, K) + K]. The
  // probabilities are summed per distance inside the tiles (no (L, S)
  // matrix); the table gets its gradient when it requires one.
  ATTN_ARG(Tensor, relative_values) = {};
};

// The output (B..., Hq, L, Ev) and the LSE (B..., Hq, L) of the modified scores.
template <class ScoreMod = flex::Identity, class MaskMod = flex::Full>
std::tuple<Tensor, Tensor> flex_attention_with_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                                   ScoreMod score_mod = {}, MaskMod mask_mod = {},
                                                   const FlexOptions& options = {});
template <class ScoreMod = flex::Identity, class MaskMod = flex::Full>
Tensor flex_attention(const Tensor& q, const Tensor& k, const Tensor& v, ScoreMod score_mod = {},
                      MaskMod mask_mod = {}, const FlexOptions& options = {}) {
  return std::get<0>(flex_attention_with_lse(q, k, v, std::move(score_mod), std::move(mask_mod), options));
}

}  // namespace attn::nn::functional

#include "attn/flex_impl.h"
