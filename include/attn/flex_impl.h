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

// Tiles: kQ queries x kK keys. kK is the block mask's tile width, and kQ
// divides it, so a tile lies in one block-mask tile.
inline constexpr int64_t kQ = 32, kK = BlockMask::kBlock;

// The state of tile (query block starting at i0, key block kb): Empty, Full
// or Partial (mask_mod decides per element). Without a block mask, Full when
// the mask is flex::full, else Partial.
template <class MaskMod>
BlockMask::State tile_state(const BlockMask* bm, int64_t b, int64_t h, int64_t i0, int64_t kb) {
  if (bm) return bm->at(b, h, i0 / BlockMask::kBlock, kb);
  return std::is_same_v<std::decay_t<MaskMod>, Full> ? BlockMask::Full : BlockMask::Partial;
}

// s[r][c] = scale * q_{i0 + r} . k_{j0 + c} for r < nq, c < nk (s is kQ x kK):
// K's block is transposed into kt (E x kK) so the inner loop runs along keys.
template <class T>
void score_tile(const Geometry& g, const T* q, const T* k, int64_t nq, int64_t nk, T* kt, T* s) {
  for (int64_t c = 0; c < nk; ++c)
    for (int64_t e = 0; e < g.E; ++e) kt[e * kK + c] = k[c * g.E + e];
  const T scale = static_cast<T>(g.scale);
  for (int64_t r = 0; r < nq; ++r) {
    T* sr = s + r * kK;
    for (int64_t c = 0; c < kK; ++c) sr[c] = 0;
    const T* qr = q + r * g.E;
    for (int64_t e = 0; e < g.E; ++e) {
      const T qe = qr[e] * scale;
      const T* kte = kt + e * kK;
      for (int64_t c = 0; c < nk; ++c) sr[c] += qe * kte[c];
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
          score_tile(g, q + (bh * g.L + i0) * g.E, kp + j0 * g.E, nq, nk, kt.data(), s.data());
          for (int64_t r = 0; r < nq; ++r) {
            const int64_t i = i0 + r;
            T* sr = s.data() + r * kK;
            T mx = m[static_cast<size_t>(r)];
            for (int64_t c = 0; c < nk; ++c) {
              const int64_t j = j0 + c;
              if (st == BlockMask::Partial && !mask_mod(b, h, i, j)) {
                sr[c] = ninf;
                continue;
              }
              sr[c] = static_cast<T>(to_dual(score_mod(sr[c], b, h, i, j)).v);
              mx = std::max(mx, sr[c]);
            }
            if (mx == ninf) continue;  // nothing visible in this row yet
            const T corr = std::exp(m[static_cast<size_t>(r)] - mx);  // 0 when m was -inf
            T* ar = acc.data() + r * g.Ev;
            if (corr != T(1))
              for (int64_t e = 0; e < g.Ev; ++e) ar[e] *= corr;
            T sum = 0;
            for (int64_t c = 0; c < nk; ++c) {
              if (sr[c] == ninf) continue;
              const T p = std::exp(sr[c] - mx);
              sum += p;
              const T* vj = vp + (j0 + c) * g.Ev;
              for (int64_t e = 0; e < g.Ev; ++e) ar[e] += p * vj[e];
            }
            l[static_cast<size_t>(r)] = l[static_cast<size_t>(r)] * corr + sum;
            m[static_cast<size_t>(r)] = mx;
          }
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
    std::vector<T> kt(static_cast<size_t>(std::max(g.E, g.Ev) * kK)), s(static_cast<size_t>(kQ * kK));
    std::vector<T> dp(static_cast<size_t>(kQ * kK)), D(kQ);
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
          score_tile(g, qb, kp + j0 * g.E, nq, nk, kt.data(), s.data());
          // dp[r][c] = dout_r . v_c, as the scores (with unit scale).
          {
            Geometry gv = g;
            gv.E = g.Ev;
            gv.scale = 1.0;
            score_tile(gv, dob, vp + j0 * g.Ev, nq, nk, kt.data(), dp.data());
          }
          for (int64_t r = 0; r < nq; ++r) {
            const int64_t i = i0 + r;
            const T li = lse[bh * g.L + i];
            T* sr = s.data() + r * kK;  // becomes p, then the gradient of the raw score
            T* dpr = dp.data() + r * kK;
            for (int64_t c = 0; c < nk; ++c) {
              const int64_t j = j0 + c;
              if (li == ninf || (st == BlockMask::Partial && !mask_mod(b, h, i, j))) {
                sr[c] = 0;
                dpr[c] = 0;
                continue;
              }
              const double raw = static_cast<double>(sr[c]);
              log.seed = -1, log.count = 0;
              g_read_log = want_caps ? &log : nullptr;
              const Dual<double> res = to_dual(score_mod(Dual<double>(raw, 1.0), b, h, i, j));
              g_read_log = nullptr;
              const T f = static_cast<T>(res.v);
              if (f == ninf) {
                sr[c] = 0;
                dpr[c] = 0;
                continue;
              }
              const T p = std::exp(f - li);
              const T ds = p * (dpr[c] - D[static_cast<size_t>(r)]);  // d loss / d modified score
              // dV uses p; dQ and dK the raw score's gradient.
              dpr[c] = p;
              sr[c] = ds * static_cast<T>(res.d) * static_cast<T>(g.scale);
              const int n = log.count;
              if (n > ReadLog::kMax) {
                mark_bad_read();
                continue;
              }
              for (int rj = 0; rj < n; ++rj) {  // one more call per read of a Captured that wants a gradient
                const CapturedState* which = log.which[rj];
                size_t ci = 0;
                while (ci < caps.size() && caps[ci].get() != which) ++ci;
                if (ci == caps.size()) continue;
                const int64_t index = log.index[rj];
                ReadLog seeded;
                seeded.seed = rj;
                g_read_log = &seeded;
                const Dual<double> rr = to_dual(score_mod(Dual<double>(raw, 0.0), b, h, i, j));
                g_read_log = nullptr;
                auto& buf = mine[ci];
                if (buf.empty()) buf.assign(static_cast<size_t>(state_tensor(*which).numel()), 0.0);
                buf[static_cast<size_t>(index)] += static_cast<double>(ds) * rr.d;
              }
            }
          }
          // dV_c += sum_r p_rc dout_r; dK_c += sum_r g_rc q_r; dQ_r += sum_c g_rc k_c.
          for (int64_t r = 0; r < nq; ++r) {
            const T* pr = dp.data() + r * kK;
            const T* gr = s.data() + r * kK;
            const T* dor = dob + r * g.Ev;
            const T* qr = qb + r * g.E;
            T* dqr = dqb + r * g.E;
            for (int64_t c = 0; c < nk; ++c) {
              if (pr[c] != T(0)) {
                T* dvc = dvp + (j0 + c) * g.Ev;
                for (int64_t e = 0; e < g.Ev; ++e) dvc[e] += pr[c] * dor[e];
              }
              if (gr[c] != T(0)) {
                const T* kc = kp + (j0 + c) * g.E;
                T* dkc = dkp + (j0 + c) * g.E;
                for (int64_t e = 0; e < g.E; ++e) {
                  dqr[e] += gr[c] * kc[e];
                  dkc[e] += gr[c] * qr[e];
                }
              }
            }
          }
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
    Tensor os = out, ls = lse;
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
