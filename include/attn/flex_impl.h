// The loops of flex_attention (included by attn/flex.h; not a header to
// include alone). The modifiers are template parameters, so they are inlined
// into these loops; what does not depend on them (checks, the thread pool,
// autograd, the Captured registry) is compiled once in src/ops/flex.cpp.
//
// The forward runs one task per (batch, query head, query tile); the
// backward one per (batch, key-value head): a task owns that head's dK and
// dV, the dQ rows of its query heads and its own buffers for the Captured
// gradients, summed in task order afterwards, so results do not depend on the
// number of threads. The tile products, softmax and packing are the fused
// SDPA kernel's parts, compiled once in the library for this CPU.
#pragma once

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>

namespace attn::nn::functional::flex::detail {

struct Geometry {
  int64_t B = 1, Hq = 1, Hk = 1, G = 1, L = 0, S = 0, E = 0, Ev = 0;
  int64_t R = 0;  // rows of the relative-values table (2K + 1), 0 without one
  double scale = 1.0;
  Shape out_shape, lse_shape;
};
Geometry check(const Tensor& q, const Tensor& k, const Tensor& v, const FlexOptions& o);
// task(t) for t in [0, n): a static split (a thread count always splits the
// same way), or dynamic scheduling for tasks whose results do not depend on
// which thread runs them.
void run_tasks(int64_t n, const std::function<void(int64_t)>& task);
void run_tasks_dynamic(int64_t n, const std::function<void(int64_t)>& task);
// The Captured objects alive on this thread, and what the kernel needs of them.
std::vector<std::shared_ptr<CapturedState>> live_captured();
const Tensor& state_tensor(const CapturedState& s);
bool state_wants_grad(const CapturedState& s);
// Records the autograd node of a flex_attention call (inputs: q, k, v, then
// the captured tensors that require grad).
bool should_record(const std::vector<Tensor>& inputs);
void record(const std::vector<Tensor>& inputs, Tensor& out,
            std::function<std::vector<Tensor>(const Tensor& grad)> backward);
// A read outside a Captured tensor, or too many reads in one call, on this
// thread (kernels cannot throw inside the pool): mark it, collect it after.
void mark_bad_read();
// True when this thread marked one since the last call (and clears it).
bool take_bad_read();
// Throws the error for marked reads.
[[noreturn]] void bad_read();

// The fused kernel's parts (src/kernels/cpu/attention/parts.h), float32 and
// float64: the tile product C = alpha op(A) B (+ C) (A transposed with
// trans_a), K^T packed per key tile, the online-softmax fold of a tile and
// its epilogue, the backward's probabilities and score gradients.
void product(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
             int64_t ldb, bool accumulate, float* C, int64_t ldc);
void product(bool trans_a, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
             const double* B, int64_t ldb, bool accumulate, double* C, int64_t ldc);
void pack_kt(const float* K, int64_t S, int64_t E, int64_t tile, float* dst);
void pack_kt(const double* K, int64_t S, int64_t E, int64_t tile, double* dst);
void online_softmax(float* s, int64_t rows, int64_t cols, int64_t lds, float* m, float* l, float* acc, int64_t Ev);
void online_softmax(double* s, int64_t rows, int64_t cols, int64_t lds, double* m, double* l, double* acc, int64_t Ev);
void finish_rows(const float* acc, const float* m, const float* l, int64_t rows, int64_t Ev, float* out, float* lse);
void finish_rows(const double* acc, const double* m, const double* l, int64_t rows, int64_t Ev, double* out,
                 double* lse);
void probs_from_lse(float* s, int64_t rows, int64_t cols, int64_t lds, const float* lse);
void probs_from_lse(double* s, int64_t rows, int64_t cols, int64_t lds, const double* lse);
void score_grad(const float* p, float* dp, const float* fprime, const float* D, int64_t rows, int64_t cols, int64_t ld,
                float scale);
void score_grad(const double* p, double* dp, const double* fprime, const double* D, int64_t rows, int64_t cols,
                int64_t ld, double scale);

template <class X>
Dual<double> to_dual(const X& x) {
  if constexpr (is_dual<X>::value)
    return {static_cast<double>(x.v), static_cast<double>(x.d)};
  else
    return {static_cast<double>(x), 0.0};
}

template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t e = 0; e < n; ++e) s += a[e] * b[e];
  return s;
}

// Tiles: kQ queries x kK keys, the block mask's tile; the forward folds up to
// kChunk keys (consecutive visible tiles) into the softmax at once.
inline constexpr int64_t kQ = BlockMask::kBlock, kK = BlockMask::kBlock, kChunk = 4 * kK;

// The state of tile (query block starting at i0, key block kb): Empty, Full
// or Partial (mask_mod decides per element). Without a block mask, Full when
// the mask is flex::full, else Partial.
template <class MaskMod>
BlockMask::State tile_state(const BlockMask* bm, int64_t b, int64_t h, int64_t i0, int64_t kb) {
  if (bm) return bm->at(b, h, i0 / BlockMask::kBlock, kb);
  return std::is_same_v<std::decay_t<MaskMod>, Full> ? BlockMask::Full : BlockMask::Partial;
}

// One lane of a modifier's result (a number, Dual, or Lanes of them): its
// value and its derivative as float, or as bool.
template <class X>
float lane_value(const X& x, int l) {
  if constexpr (is_lanes<X>::value) return lane_value(x[l], 0);
  else if constexpr (is_dual<X>::value) return static_cast<float>(x.v);
  else return static_cast<float>(x);
}
template <class X>
float lane_deriv(const X& x, int l) {
  if constexpr (is_lanes<X>::value) return lane_deriv(x[l], 0);
  else if constexpr (is_dual<X>::value) return static_cast<float>(x.d);
  else return 0.0f;
}
template <class X>
bool lane_bool(const X& x, int l) {
  if constexpr (is_lanes<X>::value) return static_cast<bool>(x[l]); else return static_cast<bool>(x);
}

// kLanes keys [j0 + c0, j0 + c0 + n) of one score row sr (and fr) through
// flex::vectorized modifiers (the other kind called per key). Whole: n is
// kLanes, so every loop has a fixed trip count; otherwise the lanes past n
// see the last key again and are neither masked nor written.
template <bool Whole, class ScoreMod, class MaskMod>
ATTN_FLEX_INLINE void lanes_group(float* sr, float* fr, int64_t c0, int n, bool partial, ScoreMod& score_mod, MaskMod& mask_mod,
                 int64_t b, int64_t h, int64_t i, int64_t j0) {
  constexpr bool identity = std::is_same_v<std::decay_t<ScoreMod>, Identity>;
  constexpr bool vscore = is_vectorized<std::decay_t<ScoreMod>>::value;
  constexpr bool vmask = is_vectorized<std::decay_t<MaskMod>>::value;
  const int m = Whole ? kLanes : n;
  sr += c0;
  if (fr) fr += c0;
  Lanes<int64_t> kv;
  ATTN_LANES_FOR(l) kv[l] = j0 + c0 + (Whole ? l : std::min(l, n - 1));
  // Byte flags, not bool: GCC leaves loops over bool scalar (a branch per
  // lane in the final select); over bytes they are one vector operation.
  uint8_t keep[kLanes] = {};  // set below wherever it is read
  if (partial) {
    if constexpr (vmask) {
      const auto mk = mask_mod(b, h, i, kv);
      if constexpr (std::is_same_v<std::decay_t<decltype(mk)>, Lanes<bool>>) {
        std::memcpy(keep, &mk, sizeof keep);  // bools are bytes of 0 or 1
      } else {
        ATTN_LANES_FOR(l) keep[l] = lane_bool(mk, l) ? 1 : 0;
      }
    } else {
      for (int l = 0; l < m; ++l) keep[l] = mask_mod(b, h, i, kv[l]) ? 1 : 0;
    }
  }
  if constexpr (!identity) {
    if constexpr (vscore) {
      if (fr) {
        Lanes<Dual<float>> sv;
        ATTN_LANES_FOR(l) sv[l] = Dual<float>(sr[l], 1.0f);
        const auto res = score_mod(sv, b, h, i, kv);
        // Values and derivatives gathered into two arrays first: stored
        // lane by lane from res, GCC reloads each lane from the stack.
        float val[kLanes], der[kLanes];
        ATTN_LANES_FOR(l) val[l] = lane_value(res, l), der[l] = lane_deriv(res, l);
        std::memcpy(sr, val, sizeof(float) * static_cast<size_t>(m));
        std::memcpy(fr, der, sizeof(float) * static_cast<size_t>(m));
      } else {
        Lanes<float> sv;
        ATTN_LANES_FOR(l) sv[l] = sr[l];
        const auto res = score_mod(sv, b, h, i, kv);
        float val[kLanes];
        ATTN_LANES_FOR(l) val[l] = lane_value(res, l);
        std::memcpy(sr, val, sizeof(float) * static_cast<size_t>(m));
      }
    } else {
      for (int l = 0; l < m; ++l) {
        if (partial && !keep[l]) continue;
        if (fr) {
          const Dual<double> x = to_dual(score_mod(Dual<double>(static_cast<double>(sr[l]), 1.0), b, h, i, kv[l]));
          sr[l] = static_cast<float>(x.v), fr[l] = static_cast<float>(x.d);
        } else {
          sr[l] = static_cast<float>(to_dual(score_mod(sr[l], b, h, i, kv[l])).v);
        }
      }
    }
  }
  if (partial) {
    constexpr float ninf = -std::numeric_limits<float>::infinity();
    if constexpr (Whole) {  // a fixed trip count: one vector blend
      ATTN_LANES_FOR(l) sr[l] = keep[l] ? sr[l] : ninf;
      return;
    }
    for (int l = 0; l < m; ++l) sr[l] = keep[l] ? sr[l] : ninf;
  }
}

// The modified scores of a tile, in place: s (nq x nk, leading dim ld) holds
// the scaled q.k on entry and score_mod's value (or -inf where masked) on
// exit; with fprime, fprime receives score_mod's derivative by the score.
// float32 tiles call flex::vectorized modifiers on kLanes keys at a time
// (rows are a multiple of kLanes wide, so the last group reads only the
// row's own buffer).
#if defined(__GNUC__) && !defined(__clang__)
#define ATTN_FLEX_FLATTEN [[gnu::flatten]]
#else
#define ATTN_FLEX_FLATTEN
#endif
template <class T, class ScoreMod, class MaskMod>
ATTN_FLEX_FLATTEN void modify_tile(T* s, T* fprime, int64_t nq, int64_t nk, int64_t ld, BlockMask::State st, ScoreMod& score_mod,
                 MaskMod& mask_mod, int64_t b, int64_t h, int64_t i0, int64_t j0) {
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  constexpr bool identity = std::is_same_v<std::decay_t<ScoreMod>, Identity>;
  constexpr bool vscore = is_vectorized<std::decay_t<ScoreMod>>::value;
  constexpr bool vmask = is_vectorized<std::decay_t<MaskMod>>::value;
  if (identity && st == BlockMask::Full) return;
  if constexpr (std::is_same_v<T, float> && (vscore || vmask)) {
    static_assert(kK % kLanes == 0 && kChunk % kLanes == 0);
    const bool partial = st == BlockMask::Partial;
    for (int64_t r = 0; r < nq; ++r) {
      T* sr = s + r * ld;
      T* fr = fprime ? fprime + r * ld : nullptr;
      for (int64_t c0 = 0; c0 < nk; c0 += kLanes) {
        const int n = static_cast<int>(std::min<int64_t>(kLanes, nk - c0));
        if (n == kLanes)
          lanes_group<true>(sr, fr, c0, n, partial, score_mod, mask_mod, b, h, i0 + r, j0);
        else
          lanes_group<false>(sr, fr, c0, n, partial, score_mod, mask_mod, b, h, i0 + r, j0);
      }
    }
    return;
  }
  for (int64_t r = 0; r < nq; ++r) {
    T* sr = s + r * ld;
    T* fr = fprime ? fprime + r * ld : nullptr;
    for (int64_t c = 0; c < nk; ++c) {
      if (st == BlockMask::Partial && !mask_mod(b, h, i0 + r, j0 + c)) {
        sr[c] = ninf;
      } else if constexpr (!identity) {
        if (fr) {
          const Dual<double> res =
              to_dual(score_mod(Dual<double>(static_cast<double>(sr[c]), 1.0), b, h, i0 + r, j0 + c));
          sr[c] = static_cast<T>(res.v);
          fr[c] = static_cast<T>(res.d);
        } else {
          sr[c] = static_cast<T>(to_dual(score_mod(sr[c], b, h, i0 + r, j0 + c)).v);
        }
      }
    }
  }
}

// sum(x[0..n)) with 16 partial sums (vectorizable).
template <class T>
T row_sum(const T* x, int64_t n) {
  T part[16] = {};
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    for (int l = 0; l < 16; ++l) part[l] += x[c + l];
  T s = 0;
  for (int l = 0; l < 16; ++l) s += part[l];
  for (; c < n; ++c) s += x[c];
  return s;
}

// Relative values: the probabilities p (nq x nk, leading dim ld) of query
// rows i0.. and keys j0.. summed per clipped distance clip(j - i, -K, K) + K
// into w (nq x (2K + 1), leading dim ldw): the two tails as sums, the band
// of |j - i| < K one by one.
template <class T>
void distance_sums(const T* p, int64_t nq, int64_t nk, int64_t ld, int64_t i0, int64_t j0, int64_t K, T* w,
                   int64_t ldw) {
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = i0 + r;
    const T* pr = p + r * ld;
    T* wr = w + r * ldw;
    const int64_t cl = std::clamp<int64_t>(i - K - j0 + 1, 0, nk);   // c < cl: j - i <= -K
    const int64_t cr = std::clamp<int64_t>(i + K - j0, cl, nk);      // c >= cr: j - i >= K
    for (int64_t c = cl; c < cr; ++c) wr[j0 + c - i + K] += pr[c];
    wr[0] += row_sum(pr, cl);
    wr[2 * K] += row_sum(pr + cr, nk - cr);
  }
}

// The adjoint for the backward: dp[r][c] += gd[r][clip(j - i, -K, K) + K].
template <class T>
void add_distance_grads(T* dp, int64_t nq, int64_t nk, int64_t ld, int64_t i0, int64_t j0, int64_t K, const T* gd,
                        int64_t ldg) {
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = i0 + r;
    T* dr = dp + r * ld;
    const T* gr = gd + r * ldg;
    const int64_t cl = std::clamp<int64_t>(i - K - j0 + 1, 0, nk), cr = std::clamp<int64_t>(i + K - j0, cl, nk);
    for (int64_t c = 0; c < cl; ++c) dr[c] += gr[0];
    for (int64_t c = cl; c < cr; ++c) dr[c] += gr[j0 + c - i + K];
    for (int64_t c = cr; c < nk; ++c) dr[c] += gr[2 * K];
  }
}

// Outputs and LSEs; one task per (batch, query head, query tile), K^T packed
// once per kv head. Returns whether a modifier read outside a Captured tensor.
// With relative values (g.R > 0), rtable is the (R, Ev) table and W receives
// each row's probabilities summed per distance (B Hq, L, R) for the backward.
template <class T, class ScoreMod, class MaskMod>
bool forward(const Geometry& g, const T* q, const T* k, const T* v, T* out, T* lse, ScoreMod& score_mod,
             MaskMod& mask_mod, const BlockMask* bm, const T* rtable = nullptr, T* W = nullptr) {
  const int64_t ktiles = (g.S + kK - 1) / kK, qtiles = (g.L + kQ - 1) / kQ;
  // A tensor's storage, not a vector: no zero fill, and large blocks come
  // from the allocator's cache instead of fresh pages (the products read
  // only the packed columns of real keys).
  Tensor kt_buf = Tensor::make({g.B * g.Hk * ktiles * g.E * kK}, std::is_same_v<T, float> ? kFloat32 : kFloat64);
  T* kt = kt_buf.data<T>();
  run_tasks(g.B * g.Hk, [&](int64_t t) { pack_kt(k + t * g.S * g.E, g.S, g.E, kK, kt + t * ktiles * g.E * kK); });
  const int64_t tasks = g.B * g.Hq * qtiles;
  std::vector<char> bad(static_cast<size_t>(tasks), 0);
  run_tasks_dynamic(tasks, [&](int64_t task) {
    take_bad_read();
    const int64_t bh = task / qtiles, b = bh / g.Hq, h = bh % g.Hq, hk = h / g.G;
    const int64_t i0 = (task % qtiles) * kQ, nq = std::min(kQ, g.L - i0);
    // acc: each row's output, then with relative values its R distance sums
    // (rescaled with it by the online softmax).
    const int64_t R = g.R, K = (R - 1) / 2, aw = g.Ev + R;
    // The score chunk is written before it is read: left uninitialised.
    std::unique_ptr<T[]> s_buf(new T[static_cast<size_t>(kQ * kChunk)]);
    T* s = s_buf.get();
    std::vector<T> acc(static_cast<size_t>(kQ * aw), T(0));
    std::vector<T> m(kQ, -std::numeric_limits<T>::infinity()), l(kQ, T(0));
    const T* kth = kt + (b * g.Hk + hk) * ktiles * g.E * kK;
    const T* vp = v + (b * g.Hk + hk) * g.S * g.Ev;
    const T* qb = q + (bh * g.L + i0) * g.E;
    for (int64_t kb = 0; kb < ktiles;) {
      if (tile_state<MaskMod>(bm, b, h, i0, kb) == BlockMask::Empty) {
        ++kb;
        continue;
      }
      // A chunk: up to kChunk / kK consecutive visible tiles.
      int64_t ke = kb;
      while (ke < ktiles && ke - kb < kChunk / kK && tile_state<MaskMod>(bm, b, h, i0, ke) != BlockMask::Empty) ++ke;
      const int64_t j0 = kb * kK, nk = std::min(ke * kK, g.S) - j0;
      for (int64_t t = kb; t < ke; ++t) {
        const int64_t c0 = (t - kb) * kK, nc = std::min(kK, g.S - t * kK);
        product(false, nq, nc, g.E, static_cast<T>(g.scale), qb, g.E, kth + t * g.E * kK, kK, false, s + c0,
                kChunk);
        modify_tile<T>(s + c0, nullptr, nq, nc, kChunk, tile_state<MaskMod>(bm, b, h, i0, t), score_mod,
                       mask_mod, b, h, i0, t * kK);
      }
      online_softmax(s, nq, nk, kChunk, m.data(), l.data(), acc.data(), aw);
      product(false, nq, g.Ev, nk, T(1), s, kChunk, vp + j0 * g.Ev, g.Ev, true, acc.data(), aw);
      if (R) distance_sums(s, nq, nk, kChunk, i0, j0, K, acc.data() + g.Ev, aw);
      kb = ke;
    }
    T* ob = out + (bh * g.L + i0) * g.Ev;
    if (!R) {
      finish_rows(acc.data(), m.data(), l.data(), nq, g.Ev, ob, lse + bh * g.L + i0);
    } else {
      // Normalized in place; out = the values part + the distance sums times the table.
      finish_rows(acc.data(), m.data(), l.data(), nq, aw, acc.data(), lse + bh * g.L + i0);
      for (int64_t r = 0; r < nq; ++r) {
        std::copy(acc.data() + r * aw, acc.data() + r * aw + g.Ev, ob + r * g.Ev);
        std::copy(acc.data() + r * aw + g.Ev, acc.data() + (r + 1) * aw, W + (bh * g.L + i0 + r) * R);
      }
      product(false, nq, g.Ev, R, T(1), acc.data() + g.Ev, aw, rtable, g.Ev, true, ob, g.Ev);
    }
    bad[static_cast<size_t>(task)] = take_bad_read();
  });
  return std::any_of(bad.begin(), bad.end(), [](char c) { return c != 0; });
}

// Gradients; one task per (batch, kv head), which owns that head's dK and dV,
// the dQ of its query heads and its buffers for the Captured gradients,
// cap_grads[task][c] for captured[c] (float64, allocated on first use).
// Returns whether a modifier read outside a Captured tensor.
// With relative values, rtable_t is the table transposed (Ev, R): the
// probabilities' gradient gains dout_i . table[distance].
template <class T, class ScoreMod, class MaskMod>
bool backward(const Geometry& g, const T* q, const T* k, const T* v, const T* out, const T* lse, const T* dout, T* dq,
              T* dk, T* dv, ScoreMod& score_mod, MaskMod& mask_mod, const BlockMask* bm,
              const std::vector<std::shared_ptr<CapturedState>>& caps,
              std::vector<std::vector<std::vector<double>>>& cap_grads, const T* rtable_t = nullptr) {
  const bool want_caps = !caps.empty();
  constexpr bool identity = std::is_same_v<std::decay_t<ScoreMod>, Identity>;
  const int64_t ktiles = (g.S + kK - 1) / kK;
  std::vector<char> bad(static_cast<size_t>(g.B * g.Hk), 0);
  run_tasks(g.B * g.Hk, [&](int64_t task) {
    take_bad_read();
    const int64_t b = task / g.Hk, hk = task % g.Hk;
    const T* kp = k + task * g.S * g.E;
    const T* vp = v + task * g.S * g.Ev;
    T* dkp = dk + task * g.S * g.E;
    T* dvp = dv + task * g.S * g.Ev;
    std::fill(dkp, dkp + g.S * g.E, T(0));
    std::fill(dvp, dvp + g.S * g.Ev, T(0));
    // K^T and V^T of this head, packed per key tile.
    std::vector<T> kt(static_cast<size_t>(ktiles * g.E * kK)), vt(static_cast<size_t>(ktiles * g.Ev * kK));
    pack_kt(kp, g.S, g.E, kK, kt.data());
    pack_kt(vp, g.S, g.Ev, kK, vt.data());
    auto& mine = cap_grads[static_cast<size_t>(task)];
    const size_t tile = static_cast<size_t>(kQ * kK);
    std::vector<T> s(tile), dp(tile), fs(identity ? 0 : tile), D(kQ), gd(static_cast<size_t>(kQ * g.R));
    const int64_t K = (g.R - 1) / 2;
    ReadLog log;
    for (int64_t gq = 0; gq < g.G; ++gq) {
      const int64_t h = hk * g.G + gq, bh = b * g.Hq + h;
      for (int64_t i0 = 0; i0 < g.L; i0 += kQ) {
        const int64_t nq = std::min(kQ, g.L - i0);
        const T* qb = q + (bh * g.L + i0) * g.E;
        const T* dob = dout + (bh * g.L + i0) * g.Ev;
        const T* lb = lse + bh * g.L + i0;
        T* dqb = dq + (bh * g.L + i0) * g.E;
        std::fill(dqb, dqb + nq * g.E, T(0));
        for (int64_t r = 0; r < nq; ++r) D[static_cast<size_t>(r)] = dot(dob + r * g.Ev, out + (bh * g.L + i0 + r) * g.Ev, g.Ev);
        if (g.R) product(false, nq, g.R, g.Ev, T(1), dob, g.Ev, rtable_t, g.R, false, gd.data(), g.R);  // dout . table^T
        for (int64_t kb = 0; kb < ktiles; ++kb) {
          const auto st = tile_state<MaskMod>(bm, b, h, i0, kb);
          if (st == BlockMask::Empty) continue;
          const int64_t j0 = kb * kK, nk = std::min(kK, g.S - j0);
          product(false, nq, nk, g.E, static_cast<T>(g.scale), qb, g.E, kt.data() + kb * g.E * kK, kK, false, s.data(),
                  kK);
          product(false, nq, nk, g.Ev, T(1), dob, g.Ev, vt.data() + kb * g.Ev * kK, kK, false, dp.data(), kK);  // dO V^T
          if (g.R) add_distance_grads(dp.data(), nq, nk, kK, i0, j0, K, gd.data(), g.R);
          // s -> the modified score (or -inf) -> P = exp(f - lse); fs -> f'.
          modify_tile<T>(s.data(), identity ? nullptr : fs.data(), nq, nk, kK, st, score_mod, mask_mod, b, h, i0, j0);
          probs_from_lse(s.data(), nq, nk, kK, lb);
          // dV += P^T dO.
          product(true, nk, g.Ev, nq, T(1), s.data(), kK, dob, g.Ev, true, dvp + j0 * g.Ev, g.Ev);
          if (want_caps) {
            // The Captured reads of each visible score's modifier call (the raw
            // score recomputed), then one call per read that wants a gradient,
            // seeding it: d loss / d read = P (dP - D) d f / d read.
            for (int64_t r = 0; r < nq; ++r)
              for (int64_t c = 0; c < nk; ++c) {
                const T p = s[static_cast<size_t>(r * kK + c)];
                if (p == T(0)) continue;
                const T ds = p * (dp[static_cast<size_t>(r * kK + c)] - D[static_cast<size_t>(r)]);
                const T sraw = static_cast<T>(g.scale) * dot(qb + r * g.E, kp + (j0 + c) * g.E, g.E);
                log.seed = -1, log.count = 0;
                g_read_log = &log;
                (void)score_mod(Dual<double>(static_cast<double>(sraw), 0.0), b, h, i0 + r, j0 + c);
                g_read_log = nullptr;
                const int n = log.count;
                if (n > ReadLog::kMax) {
                  mark_bad_read();
                  continue;
                }
                for (int rj = 0; rj < n; ++rj) {
                  const CapturedState* which = log.which[rj];
                  size_t ci = 0;
                  while (ci < caps.size() && caps[ci].get() != which) ++ci;
                  if (ci == caps.size()) continue;
                  ReadLog seeded;
                  seeded.seed = rj;
                  g_read_log = &seeded;
                  const Dual<double> rr =
                      to_dual(score_mod(Dual<double>(static_cast<double>(sraw), 0.0), b, h, i0 + r, j0 + c));
                  g_read_log = nullptr;
                  auto& buf = mine[ci];
                  if (buf.empty()) buf.assign(static_cast<size_t>(state_tensor(*which).numel()), 0.0);
                  buf[static_cast<size_t>(log.index[rj])] += static_cast<double>(ds) * rr.d;
                }
              }
          }
          // dS = P (dP - D) f' scale;  dQ += dS K;  dK += dS^T Q.
          score_grad(s.data(), dp.data(), identity ? nullptr : fs.data(), D.data(), nq, nk, kK, static_cast<T>(g.scale));
          product(false, nq, g.E, nk, T(1), dp.data(), kK, kp + j0 * g.E, g.E, true, dqb, g.E);
          product(true, nk, g.E, nq, T(1), dp.data(), kK, qb, g.E, true, dkp + j0 * g.E, g.E);
        }
      }
    }
    bad[static_cast<size_t>(task)] = take_bad_read();
  });
  return std::any_of(bad.begin(), bad.end(), [](char c) { return c != 0; });
}

}  // namespace attn::nn::functional::flex::detail

namespace attn::nn::functional {

template <class MaskMod>
flex::BlockMask flex::create_block_mask(MaskMod&& mask_mod, int64_t B, int64_t H, int64_t L, int64_t S) {
  ATTN_CHECK(B >= 1 && H >= 1 && L >= 0 && S >= 0, "create_block_mask: B and H must be >= 1 and L, S >= 0, got ", B,
             ", ", H, ", ", L, ", ", S);
  BlockMask m;
  m.B = B, m.H = H, m.L = L, m.S = S;
  m.QB = (L + BlockMask::kBlock - 1) / BlockMask::kBlock;
  m.KB = (S + BlockMask::kBlock - 1) / BlockMask::kBlock;
  m.states.assign(static_cast<size_t>(B * H * m.QB * m.KB), BlockMask::Empty);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t qb = 0; qb < m.QB; ++qb)
        for (int64_t kb = 0; kb < m.KB; ++kb) {
          int64_t seen = 0, all = 0;
          for (int64_t i = qb * BlockMask::kBlock; i < std::min(L, (qb + 1) * BlockMask::kBlock); ++i)
            for (int64_t j = kb * BlockMask::kBlock; j < std::min(S, (kb + 1) * BlockMask::kBlock); ++j) {
              seen += mask_mod(b, h, i, j) ? 1 : 0;
              ++all;
            }
          m.states[static_cast<size_t>(((b * H + h) * m.QB + qb) * m.KB + kb)] =
              seen == 0 ? BlockMask::Empty : seen == all ? BlockMask::Full : BlockMask::Partial;
        }
  return m;
}

template <class ScoreMod, class MaskMod>
std::tuple<Tensor, Tensor> flex_attention_with_lse(const Tensor& q, const Tensor& k, const Tensor& v,
                                                   ScoreMod score_mod, MaskMod mask_mod, const FlexOptions& o) {
  namespace d = flex::detail;
  const d::Geometry g = d::check(q, k, v, o);
  const flex::BlockMask* bm = o.block_mask();
  Tensor q3 = q.detach().contiguous(), k3 = k.detach().contiguous(), v3 = v.detach().contiguous();
  Tensor out = Tensor::make(g.out_shape, q.dtype()), lse = Tensor::make(g.lse_shape, q.dtype());
  const Tensor& table = o.relative_values();
  Tensor rt3 = g.R ? table.detach().contiguous() : Tensor();
  Tensor W = g.R ? Tensor::make({g.B * g.Hq, g.L, g.R}, q.dtype()) : Tensor();  // per-distance probability sums
  auto run_forward = [&](auto tag) {
    using T = decltype(tag);
    return d::forward<T>(g, q3.data<T>(), k3.data<T>(), v3.data<T>(), out.data<T>(), lse.data<T>(), score_mod,
                         mask_mod, bm, g.R ? rt3.data<T>() : nullptr, g.R ? W.data<T>() : nullptr);
  };
  if (q.dtype() == kFloat32 ? run_forward(float{}) : run_forward(double{})) d::bad_read();
  // Inputs of the node: q, k, v and the live Captured tensors that want a gradient.
  std::vector<std::shared_ptr<flex::detail::CapturedState>> caps;
  std::vector<Tensor> inputs = {q, k, v};
  for (auto& s : d::live_captured())
    if (d::state_wants_grad(*s)) {
      caps.push_back(s);
      inputs.push_back(d::state_tensor(*s));
    }
  const bool table_grad = g.R && table.requires_grad();
  if (table_grad) inputs.push_back(table);
  if (d::should_record(inputs)) {
    std::shared_ptr<flex::BlockMask> mask_copy = bm ? std::make_shared<flex::BlockMask>(*bm) : nullptr;
    Tensor os = out.detach(), ls = lse.detach();  // aliases: the node must not hold its own output
    d::record(inputs, out, [=](const Tensor& grad) mutable {
      Tensor dout = grad.contiguous();
      Tensor rt_t = g.R ? rt3.t().contiguous() : Tensor();
      Tensor dq = Tensor::make(q3.shape(), q3.dtype()), dk = Tensor::make(k3.shape(), k3.dtype());
      Tensor dv = Tensor::make(v3.shape(), v3.dtype());
      std::vector<std::vector<std::vector<double>>> cap_grads(static_cast<size_t>(g.B * g.Hk),
                                                              std::vector<std::vector<double>>(caps.size()));
      auto run_backward = [&](auto tag) {
        using T = decltype(tag);
        return d::backward<T>(g, q3.data<T>(), k3.data<T>(), v3.data<T>(), os.data<T>(), ls.data<T>(),
                              dout.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>(), score_mod, mask_mod,
                              mask_copy.get(), caps, cap_grads, g.R ? rt_t.data<T>() : nullptr);
      };
      if (q3.dtype() == kFloat32 ? run_backward(float{}) : run_backward(double{})) d::bad_read();
      std::vector<Tensor> grads = {dq, dk, dv};
      for (size_t c = 0; c < caps.size(); ++c) {
        const Tensor& t = d::state_tensor(*caps[c]);
        std::vector<double> sum(static_cast<size_t>(t.numel()), 0.0);
        bool any = false;
        for (auto& task : cap_grads)  // in task order: the same sum at any thread count
          if (!task[c].empty()) {
            any = true;
            for (size_t e = 0; e < sum.size(); ++e) sum[e] += task[c][e];
          }
        grads.push_back(any ? from_vector(sum, t.shape()).to(t.dtype()) : Tensor());
      }
      if (table_grad)  // d table = W^T dout over every row of every head
        grads.push_back(matmul(W.reshape({g.B * g.Hq * g.L, g.R}).t(), dout.reshape({g.B * g.Hq * g.L, g.Ev})));
      return grads;
    });
  }
  return {out, lse};
}

}  // namespace attn::nn::functional
