// The loops of flex_attention (included by attn/flex.h; not a header to
// include alone). The modifiers are template parameters, so they are inlined
// into these loops; what does not depend on them (checks, the thread pool,
// autograd, the Captured registry) is compiled once in src/ops/flex.cpp.
//
// Work is split by (batch, key-value head): a task owns that head's dK and
// dV, the dQ rows of its query heads and its own buffers for the Captured
// gradients, summed in task order afterwards, so results do not depend on the
// number of threads.
#pragma once

#include <algorithm>
#include <limits>

namespace attn::nn::functional::flex::detail {

struct Geometry {
  int64_t B = 1, Hq = 1, Hk = 1, G = 1, L = 0, S = 0, E = 0, Ev = 0;
  double scale = 1.0;
  Shape out_shape, lse_shape;
};
Geometry check(const Tensor& q, const Tensor& k, const Tensor& v, const FlexOptions& o);
void run_tasks(int64_t n, const std::function<void(int64_t)>& task);
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

// The fused kernel's parts (float32): the register-blocked tile product
// C = alpha A B (+ C) and exp(x - m) with its sum (-inf gives 0).
void tile_product(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                  int64_t ldb, bool accumulate, float* C, int64_t ldc);
float exp_shift_sum(float* x, int64_t n, float m);

// The same for any T (float64: plain loops).
template <class T>
void product(int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
             bool accumulate, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    tile_product(M, N, K, alpha, A, lda, B, ldb, accumulate, C, ldc);
  } else {
    for (int64_t r = 0; r < M; ++r) {
      T* cr = C + r * ldc;
      if (!accumulate)
        for (int64_t c = 0; c < N; ++c) cr[c] = 0;
      for (int64_t kk = 0; kk < K; ++kk) {
        const T a = alpha * A[r * lda + kk];
        const T* br = B + kk * ldb;
        for (int64_t c = 0; c < N; ++c) cr[c] += a * br[c];
      }
    }
  }
}

template <class T>
T exp_sum(T* x, int64_t n, T m) {
  if constexpr (std::is_same_v<T, float>) {
    return exp_shift_sum(x, n, m);
  } else {
    T s = 0;
    for (int64_t i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
    return s;
  }
}

// dst (cols x rows, leading dim ldd) = src (rows x cols, leading dim lds) transposed.
template <class T>
void transpose(const T* src, int64_t rows, int64_t cols, int64_t lds, T* dst, int64_t ldd) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
}

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

// Tiles: kQ queries x kK keys, the block mask's tile: a tile lies in one
// block-mask tile.
inline constexpr int64_t kQ = BlockMask::kBlock, kK = BlockMask::kBlock;

// The state of tile (query block starting at i0, key block kb): Empty, Full
// or Partial (mask_mod decides per element). Without a block mask, Full when
// the mask is flex::full, else Partial.
template <class MaskMod>
BlockMask::State tile_state(const BlockMask* bm, int64_t b, int64_t h, int64_t i0, int64_t kb) {
  if (bm) return bm->at(b, h, i0 / BlockMask::kBlock, kb);
  return std::is_same_v<std::decay_t<MaskMod>, Full> ? BlockMask::Full : BlockMask::Partial;
}

// The modified scores of a tile, in place: s (nq x nk, leading dim kK) holds
// the scaled q.k on entry and score_mod's value (or -inf where masked) on exit.
template <class T, class ScoreMod, class MaskMod>
void modify_tile(T* s, int64_t nq, int64_t nk, BlockMask::State st, ScoreMod& score_mod, MaskMod& mask_mod, int64_t b,
                 int64_t h, int64_t i0, int64_t j0) {
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  const bool identity = std::is_same_v<std::decay_t<ScoreMod>, Identity>;
  for (int64_t r = 0; r < nq; ++r) {
    T* sr = s + r * kK;
    for (int64_t c = 0; c < nk; ++c) {
      if (st == BlockMask::Partial && !mask_mod(b, h, i0 + r, j0 + c))
        sr[c] = ninf;
      else if (!identity)
        sr[c] = static_cast<T>(to_dual(score_mod(sr[c], b, h, i0 + r, j0 + c)).v);
    }
  }
}

template <class T, class ScoreMod, class MaskMod>
void forward(const Geometry& g, const T* q, const T* k, const T* v, T* out, T* lse, ScoreMod& score_mod,
             MaskMod& mask_mod, const BlockMask* bm, std::vector<char>& bad) {
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  run_tasks(g.B * g.Hk, [&](int64_t task) {
    take_bad_read();
    const int64_t b = task / g.Hk, hk = task % g.Hk;
    std::vector<T> kt(static_cast<size_t>(g.E * kK)), s(static_cast<size_t>(kQ * kK));
    std::vector<T> acc(static_cast<size_t>(kQ * g.Ev)), m(kQ), l(kQ);
    const T* kp = k + (b * g.Hk + hk) * g.S * g.E;
    const T* vp = v + (b * g.Hk + hk) * g.S * g.Ev;
    for (int64_t gq = 0; gq < g.G; ++gq) {
      const int64_t h = hk * g.G + gq, bh = b * g.Hq + h;
      for (int64_t i0 = 0; i0 < g.L; i0 += kQ) {
        const int64_t nq = std::min(kQ, g.L - i0);
        std::fill(acc.begin(), acc.end(), T(0));
        std::fill(m.begin(), m.end(), ninf);
        std::fill(l.begin(), l.end(), T(0));
        for (int64_t kb = 0, j0 = 0; j0 < g.S; ++kb, j0 += kK) {
          const auto st = tile_state<MaskMod>(bm, b, h, i0, kb);
          if (st == BlockMask::Empty) continue;
          const int64_t nk = std::min(kK, g.S - j0);
          transpose(kp + j0 * g.E, nk, g.E, g.E, kt.data(), kK);  // K's block as (E, keys)
          product<T>(nq, nk, g.E, static_cast<T>(g.scale), q + (bh * g.L + i0) * g.E, g.E, kt.data(), kK, false,
                     s.data(), kK);
          modify_tile(s.data(), nq, nk, st, score_mod, mask_mod, b, h, i0, j0);
          // Online softmax: rescale what each row has, add this tile's exp(s - max).
          for (int64_t r = 0; r < nq; ++r) {
            T* sr = s.data() + r * kK;
            T mx = m[static_cast<size_t>(r)];
            for (int64_t c = 0; c < nk; ++c) mx = std::max(mx, sr[c]);
            if (mx == ninf) {  // nothing visible in this row yet
              std::fill(sr, sr + nk, T(0));
              continue;
            }
            const T corr = std::exp(m[static_cast<size_t>(r)] - mx);  // 0 when nothing was seen before
            if (corr != T(1)) {
              T* ar = acc.data() + r * g.Ev;
              for (int64_t e = 0; e < g.Ev; ++e) ar[e] *= corr;
            }
            l[static_cast<size_t>(r)] = l[static_cast<size_t>(r)] * corr + exp_sum(sr, nk, mx);
            m[static_cast<size_t>(r)] = mx;
          }
          product<T>(nq, g.Ev, nk, T(1), s.data(), kK, vp + j0 * g.Ev, g.Ev, true, acc.data(), g.Ev);
        }
        for (int64_t r = 0; r < nq; ++r) {
          T* oi = out + (bh * g.L + i0 + r) * g.Ev;
          const T li = l[static_cast<size_t>(r)];
          if (m[static_cast<size_t>(r)] == ninf || li == T(0)) {  // nothing visible: output 0, LSE -inf
            std::fill(oi, oi + g.Ev, T(0));
            lse[bh * g.L + i0 + r] = ninf;
            continue;
          }
          const T* ar = acc.data() + r * g.Ev;
          for (int64_t e = 0; e < g.Ev; ++e) oi[e] = ar[e] / li;
          lse[bh * g.L + i0 + r] = m[static_cast<size_t>(r)] + std::log(li);
        }
      }
    }
    bad[static_cast<size_t>(task)] = take_bad_read();
  });
}

// Gradients; cap_grads[task][c] are the task's buffers for captured[c]
// (float64, allocated on first use).
template <class T, class ScoreMod, class MaskMod>
void backward(const Geometry& g, const T* q, const T* k, const T* v, const T* out, const T* lse, const T* dout,
              T* dq, T* dk, T* dv, ScoreMod& score_mod, MaskMod& mask_mod, const BlockMask* bm,
              const std::vector<std::shared_ptr<CapturedState>>& caps, std::vector<std::vector<std::vector<double>>>& cap_grads,
              std::vector<char>& bad) {
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  const bool want_caps = !caps.empty();
  const bool identity = std::is_same_v<std::decay_t<ScoreMod>, Identity>;
  run_tasks(g.B * g.Hk, [&](int64_t task) {
    take_bad_read();
    const int64_t b = task / g.Hk, hk = task % g.Hk;
    const T* kp = k + (b * g.Hk + hk) * g.S * g.E;
    const T* vp = v + (b * g.Hk + hk) * g.S * g.Ev;
    T* dkp = dk + (b * g.Hk + hk) * g.S * g.E;
    T* dvp = dv + (b * g.Hk + hk) * g.S * g.Ev;
    std::fill(dkp, dkp + g.S * g.E, T(0));
    std::fill(dvp, dvp + g.S * g.Ev, T(0));
    auto& mine = cap_grads[static_cast<size_t>(task)];
    const size_t tile = static_cast<size_t>(kQ * kK);
    std::vector<T> kt(static_cast<size_t>(std::max(g.E, g.Ev) * kK)), s(tile), dp(tile), fs(tile), t(tile), D(kQ);
    ReadLog log;
    for (int64_t gq = 0; gq < g.G; ++gq) {
      const int64_t h = hk * g.G + gq, bh = b * g.Hq + h;
      for (int64_t i0 = 0; i0 < g.L; i0 += kQ) {
        const int64_t nq = std::min(kQ, g.L - i0);
        const T* qb = q + (bh * g.L + i0) * g.E;
        const T* dob = dout + (bh * g.L + i0) * g.Ev;
        T* dqb = dq + (bh * g.L + i0) * g.E;
        std::fill(dqb, dqb + nq * g.E, T(0));
        for (int64_t r = 0; r < nq; ++r) D[static_cast<size_t>(r)] = dot(dob + r * g.Ev, out + (bh * g.L + i0 + r) * g.Ev, g.Ev);
        for (int64_t kb = 0, j0 = 0; j0 < g.S; ++kb, j0 += kK) {
          const auto st = tile_state<MaskMod>(bm, b, h, i0, kb);
          if (st == BlockMask::Empty) continue;
          const int64_t nk = std::min(kK, g.S - j0);
          transpose(kp + j0 * g.E, nk, g.E, g.E, kt.data(), kK);
          product<T>(nq, nk, g.E, static_cast<T>(g.scale), qb, g.E, kt.data(), kK, false, s.data(), kK);
          transpose(vp + j0 * g.Ev, nk, g.Ev, g.Ev, kt.data(), kK);
          product<T>(nq, nk, g.Ev, T(1), dob, g.Ev, kt.data(), kK, false, dp.data(), kK);  // dout . v
          // s -> the modified score (or -inf), fs -> its derivative by the raw score.
          for (int64_t r = 0; r < nq; ++r) {
            T* sr = s.data() + r * kK;
            T* fr = fs.data() + r * kK;
            for (int64_t c = 0; c < nk; ++c) {
              if (st == BlockMask::Partial && !mask_mod(b, h, i0 + r, j0 + c)) {
                sr[c] = ninf;
              } else if (identity) {
                fr[c] = T(1);
              } else {
                const Dual<double> res = to_dual(score_mod(Dual<double>(static_cast<double>(sr[c]), 1.0), b, h, i0 + r, j0 + c));
                sr[c] = static_cast<T>(res.v);
                fr[c] = static_cast<T>(res.d);
              }
            }
            const T li = lse[bh * g.L + i0 + r];
            if (li == ninf) {
              std::fill(sr, sr + nk, T(0));
              continue;
            }
            exp_sum(sr, nk, li);  // p = exp(f - lse); 0 where masked
          }
          // dV += p^T dout;  g = p (dp - D) f' scale;  dQ += g K;  dK += g^T Q.
          transpose(s.data(), nq, nk, kK, t.data(), kQ);
          product<T>(nk, g.Ev, nq, T(1), t.data(), kQ, dob, g.Ev, true, dvp + j0 * g.Ev, g.Ev);
          for (int64_t r = 0; r < nq; ++r) {
            const T* pr = s.data() + r * kK;
            T* gr = dp.data() + r * kK;
            const T* fr = fs.data() + r * kK;
            for (int64_t c = 0; c < nk; ++c) {
              const T ds = pr[c] * (gr[c] - D[static_cast<size_t>(r)]);  // d loss / d modified score
              gr[c] = pr[c] == T(0) ? T(0) : ds * fr[c] * static_cast<T>(g.scale);
              if (!want_caps || pr[c] == T(0)) continue;
              // The Captured reads of this call (the raw score recomputed), then one
              // call per read that wants a gradient, seeding it.
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
                const Dual<double> rr = to_dual(score_mod(Dual<double>(static_cast<double>(sraw), 0.0), b, h, i0 + r, j0 + c));
                g_read_log = nullptr;
                auto& buf = mine[ci];
                if (buf.empty()) buf.assign(static_cast<size_t>(state_tensor(*which).numel()), 0.0);
                buf[static_cast<size_t>(log.index[rj])] += static_cast<double>(ds) * rr.d;
              }
            }
          }
          product<T>(nq, g.E, nk, T(1), dp.data(), kK, kp + j0 * g.E, g.E, true, dqb, g.E);
          transpose(dp.data(), nq, nk, kK, t.data(), kQ);
          product<T>(nk, g.E, nq, T(1), t.data(), kQ, qb, g.E, true, dkp + j0 * g.E, g.E);
        }
      }
    }
    bad[static_cast<size_t>(task)] = take_bad_read();
  });
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
  std::vector<char> bad(static_cast<size_t>(g.B * g.Hk), 0);
  auto run_forward = [&](auto tag) {
    using T = decltype(tag);
    d::forward<T>(g, q3.data<T>(), k3.data<T>(), v3.data<T>(), out.data<T>(), lse.data<T>(), score_mod, mask_mod, bm,
                  bad);
  };
  if (q.dtype() == kFloat32) run_forward(float{}); else run_forward(double{});
  for (char c : bad)
    if (c) d::bad_read();
  // Inputs of the node: q, k, v and the live Captured tensors that want a gradient.
  std::vector<std::shared_ptr<flex::detail::CapturedState>> caps;
  std::vector<Tensor> inputs = {q, k, v};
  for (auto& s : d::live_captured())
    if (d::state_wants_grad(*s)) {
      caps.push_back(s);
      inputs.push_back(d::state_tensor(*s));
    }
  if (d::should_record(inputs)) {
    std::shared_ptr<flex::BlockMask> mask_copy = bm ? std::make_shared<flex::BlockMask>(*bm) : nullptr;
    Tensor os = out.detach(), ls = lse.detach();  // aliases: the node must not hold its own output
    d::record(inputs, out, [=](const Tensor& grad) mutable {
      Tensor dout = grad.contiguous();
      Tensor dq = Tensor::make(q3.shape(), q3.dtype()), dk = Tensor::make(k3.shape(), k3.dtype());
      Tensor dv = Tensor::make(v3.shape(), v3.dtype());
      std::vector<std::vector<std::vector<double>>> cap_grads(static_cast<size_t>(g.B * g.Hk),
                                                              std::vector<std::vector<double>>(caps.size()));
      std::vector<char> bad2(static_cast<size_t>(g.B * g.Hk), 0);
      auto run_backward = [&](auto tag) {
        using T = decltype(tag);
        d::backward<T>(g, q3.data<T>(), k3.data<T>(), v3.data<T>(), os.data<T>(), ls.data<T>(), dout.data<T>(),
                       dq.data<T>(), dk.data<T>(), dv.data<T>(), score_mod, mask_mod, mask_copy.get(), caps,
                       cap_grads, bad2);
      };
      if (q3.dtype() == kFloat32) run_backward(float{}); else run_backward(double{});
      for (char c : bad2)
        if (c) d::bad_read();
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
      return grads;
    });
  }
  return {out, lse};
}

}  // namespace attn::nn::functional
