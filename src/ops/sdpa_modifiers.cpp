// The fused SDPA's forward and backward as flex_attention's loops with the
// SDPA options written as modifiers (see sdpa_modifiers.h).
#include "ops/sdpa_modifiers.h"

#include <omp.h>

namespace attn::ops {

namespace flex = nn::functional::flex;

flex::BlockMask SdpaMaskMod::block_mask(int64_t B, int64_t L) const {
  flex::BlockMask m;
  constexpr int64_t T = flex::BlockMask::kBlock;
  const int64_t S = p.S, global = p.global_tokens;
  m.B = p.key_lengths ? B : 1, m.H = 1, m.L = L, m.S = S, m.QB = (L + T - 1) / T, m.KB = (S + T - 1) / T;
  m.states.assign(static_cast<size_t>(m.B * m.QB * m.KB), flex::BlockMask::Partial);
  for (int64_t b = 0; b < m.B; ++b)
    for (int64_t qb = 0; qb < m.QB; ++qb) {
      const int64_t i0 = qb * T, i1 = std::min(L, i0 + T);
      for (int64_t kb = 0; kb < m.KB; ++kb) {
        const int64_t j0 = kb * T, j1 = std::min(S, j0 + T) - 1;  // keys [j0, j1]
        bool none = true, all = !mask;  // a bool mask decides per element
        if (global <= 0) {
          // Without global keys a row's keys are [lo, hi), both growing
          // with i: the first and last rows bound the tile (empty may be
          // missed, when the band passes between them, and the tile is then
          // partial).
          const Row first = row(b, i0), last = row(b, i1 - 1);
          none = last.hi <= j0 || first.lo > j1 || first.lo >= last.hi;
          all = all && last.lo <= j0 && j1 < first.hi;
        } else {
          for (int64_t i = i0; i < i1 && (none || all); ++i) {
            const Row r = row(b, i);
            const bool band = r.lo < r.hi;
            none = none && j0 >= r.gk && (!band || r.hi <= j0 || r.lo > j1);
            // the row's keys: [0, gk) and [lo, hi), one interval when they touch
            const bool joined = band && r.lo <= r.gk;
            all = all && (j1 < r.gk || (band && (joined ? 0 : r.lo) <= j0 && j1 < std::max(r.hi, r.gk)));
          }
        }
        auto& st = m.states[static_cast<size_t>((b * m.QB + qb) * m.KB + kb)];
        if (none)
          st = flex::BlockMask::Empty;
        else if (all)
          st = flex::BlockMask::Full;
      }
    }
  return m;
}

namespace {

namespace d = flex::detail;

// p's options as the two modifiers, with the block mask when there is a mask
// at all, and p's shape as flex's geometry.
struct Modifiers {
  d::Geometry g;
  SdpaScoreMod score;
  SdpaMaskMod seen;
  bool scored = false, masked = false;
  flex::BlockMask bm;
  explicit Modifiers(const kernels::cpu::SdpaParams& p)
      : score{p}, seen{p} {
    g.B = p.BH / p.Hq, g.Hq = p.Hq, g.G = p.G, g.Hk = p.Hq / p.G, g.L = p.L, g.S = p.S, g.E = p.E, g.Ev = p.Ev;
    g.scale = p.scale;
    scored = p.softcap > 0 || p.alibi || (p.mask && !p.mask_is_bool);
    masked = p.banded() || p.global_tokens > 0 || p.key_lengths || seen.mask;
    if (masked) bm = seen.block_mask(g.B, p.L);
  }
  // run(score_mod, mask_mod, block mask or null) with the modifiers the
  // options need (the identity and full ones cost nothing).
  template <class Run>
  void apply(Run&& run) const {
    if (masked) {
      if (scored) run(flex::vectorized(score), flex::vectorized(seen), &bm);
      else run(flex::identity, flex::vectorized(seen), &bm);
    } else {
      if (scored) run(flex::vectorized(score), flex::full, nullptr);
      else run(flex::identity, flex::full, nullptr);
    }
  }
};

}  // namespace

bool sdpa_forward_by_modifiers(const kernels::cpu::SdpaParams& p, const float* q, const float* k, const float* v,
                               const Tensor& out, const Tensor& lse) {
  if ((!(p.mask && p.mask_is_bool) && p.global_tokens <= 0) || p.keep < 1.0 || p.stride > 0 || p.L < 8 ||
      p.S == 0 || p.q_rows.heads || p.k_rows.heads || p.v_rows.heads)
    return false;
  const Modifiers mods(p);
  mods.apply([&](auto score_mod, auto mask_mod, const flex::BlockMask* m) {
    d::forward<float>(mods.g, q, k, v, out.data<float>(), lse.data<float>(), score_mod, mask_mod, m);
  });
  return true;
}

bool sdpa_backward_by_modifiers(const kernels::cpu::SdpaParams& p, const Tensor& dout, const Tensor& q,
                                const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                                const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  const int64_t BKV = p.G > 0 ? p.BH / p.G : 0;
  if (p.keep < 1.0 || p.stride > 0 || p.L == 0 || p.S == 0 || BKV < omp_get_max_threads()) return false;
  const Modifiers mods(p);
  std::vector<std::shared_ptr<d::CapturedState>> caps;
  std::vector<std::vector<std::vector<double>>> cap_grads(static_cast<size_t>(BKV));
  mods.apply([&](auto score_mod, auto mask_mod, const flex::BlockMask* m) {
    d::backward<float>(mods.g, q.data<float>(), k.data<float>(), v.data<float>(), out.data<float>(),
                       lse.data<float>(), dout.data<float>(), dq.data<float>(), dk.data<float>(), dv.data<float>(),
                       score_mod, mask_mod, m, caps, cap_grads);
  });
  return true;
}

}  // namespace attn::ops
