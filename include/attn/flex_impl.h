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

// Calls visit(j) for every key j visible from query i of head h, and
// `hidden(j0, j1)` for runs the block mask rules out entirely.
template <class MaskMod, class Visit>
void for_visible(const Geometry& g, const BlockMask* bm, MaskMod& mask_mod, int64_t b, int64_t h, int64_t i,
                 Visit&& visit) {
  if (!bm) {
    for (int64_t j = 0; j < g.S; ++j)
      if (mask_mod(b, h, i, j)) visit(j);
    return;
  }
  const int64_t qb = i / BlockMask::kBlock;
  for (int64_t kb = 0; kb < bm->KB; ++kb) {
    const auto st = bm->at(b, h, qb, kb);
    if (st == BlockMask::Empty) continue;
    const int64_t j1 = std::min(g.S, (kb + 1) * BlockMask::kBlock);
    for (int64_t j = kb * BlockMask::kBlock; j < j1; ++j)
      if (st == BlockMask::Full || mask_mod(b, h, i, j)) visit(j);
  }
}

template <class T, class ScoreMod, class MaskMod>
void forward(const Geometry& g, const T* q, const T* k, const T* v, T* out, T* lse, ScoreMod& score_mod,
             MaskMod& mask_mod, const BlockMask* bm, std::vector<char>& bad) {
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  run_tasks(g.B * g.Hk, [&](int64_t task) {
    take_bad_read();
    const int64_t b = task / g.Hk, hk = task % g.Hk;
    std::vector<T> row(static_cast<size_t>(g.S));
    std::vector<T> acc(static_cast<size_t>(g.Ev));
    const T* kp = k + (b * g.Hk + hk) * g.S * g.E;
    const T* vp = v + (b * g.Hk + hk) * g.S * g.Ev;
    for (int64_t gq = 0; gq < g.G; ++gq) {
      const int64_t h = hk * g.G + gq, bh = b * g.Hq + h;
      for (int64_t i = 0; i < g.L; ++i) {
        const T* qi = q + (bh * g.L + i) * g.E;
        T m = ninf;
        std::fill(row.begin(), row.end(), ninf);
        for_visible(g, bm, mask_mod, b, h, i, [&](int64_t j) {
          const T s = static_cast<T>(g.scale) * dot(qi, kp + j * g.E, g.E);
          const T f = static_cast<T>(to_dual(score_mod(s, b, h, i, j)).v);
          row[static_cast<size_t>(j)] = f;
          m = std::max(m, f);
        });
        T* oi = out + (bh * g.L + i) * g.Ev;
        if (m == ninf) {  // nothing visible: output 0, LSE -inf
          std::fill(oi, oi + g.Ev, T(0));
          lse[bh * g.L + i] = ninf;
          continue;
        }
        std::fill(acc.begin(), acc.end(), T(0));
        T sum = 0;
        for (int64_t j = 0; j < g.S; ++j) {
          if (row[static_cast<size_t>(j)] == ninf) continue;
          const T p = std::exp(row[static_cast<size_t>(j)] - m);
          sum += p;
          const T* vj = vp + j * g.Ev;
          for (int64_t e = 0; e < g.Ev; ++e) acc[static_cast<size_t>(e)] += p * vj[e];
        }
        for (int64_t e = 0; e < g.Ev; ++e) oi[e] = acc[static_cast<size_t>(e)] / sum;
        lse[bh * g.L + i] = m + std::log(sum);
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
    ReadLog log;
    for (int64_t gq = 0; gq < g.G; ++gq) {
      const int64_t h = hk * g.G + gq, bh = b * g.Hq + h;
      for (int64_t i = 0; i < g.L; ++i) {
        const T* qi = q + (bh * g.L + i) * g.E;
        T* dqi = dq + (bh * g.L + i) * g.E;
        std::fill(dqi, dqi + g.E, T(0));
        const T li = lse[bh * g.L + i];
        if (li == ninf) continue;
        const T* doi = dout + (bh * g.L + i) * g.Ev;
        const T D = dot(doi, out + (bh * g.L + i) * g.Ev, g.Ev);
        for_visible(g, bm, mask_mod, b, h, i, [&](int64_t j) {
          const T s = static_cast<T>(g.scale) * dot(qi, kp + j * g.E, g.E);
          log.seed = -1, log.count = 0;
          g_read_log = want_caps ? &log : nullptr;
          const Dual<double> r = to_dual(score_mod(Dual<double>(static_cast<double>(s), 1.0), b, h, i, j));
          g_read_log = nullptr;
          const T f = static_cast<T>(r.v);
          if (f == ninf) return;
          const T p = std::exp(f - li);
          const T* vj = vp + j * g.Ev;
          T* dvj = dvp + j * g.Ev;
          for (int64_t e = 0; e < g.Ev; ++e) dvj[e] += p * doi[e];
          const T ds = p * (dot(doi, vj, g.Ev) - D);  // d loss / d modified score
          const T draw = ds * static_cast<T>(r.d) * static_cast<T>(g.scale);
          const T* kj = kp + j * g.E;
          T* dkj = dkp + j * g.E;
          for (int64_t e = 0; e < g.E; ++e) {
            dqi[e] += draw * kj[e];
            dkj[e] += draw * qi[e];
          }
          // One more call per read of a Captured that wants a gradient, seeding that read.
          const int n = log.count;
          if (n > ReadLog::kMax) {
            mark_bad_read();
            return;
          }
          for (int rj = 0; rj < n; ++rj) {
            const CapturedState* which = log.which[rj];
            size_t c = 0;
            while (c < caps.size() && caps[c].get() != which) ++c;
            if (c == caps.size()) continue;  // a tensor without gradient
            const int64_t index = log.index[rj];
            ReadLog seeded;
            seeded.seed = rj;
            g_read_log = &seeded;
            const Dual<double> rr = to_dual(score_mod(Dual<double>(static_cast<double>(s), 0.0), b, h, i, j));
            g_read_log = nullptr;
            auto& buf = mine[c];
            if (buf.empty()) buf.assign(static_cast<size_t>(state_tensor(*which).numel()), 0.0);
            buf[static_cast<size_t>(index)] += static_cast<double>(ds) * rr.d;
          }
        });
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
