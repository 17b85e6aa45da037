// Internal: the fused SDPA's score transforms and masks as flex_attention
// modifiers (16 keys per call), and the SDPA forward and backward that run
// flex's loops with them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "attn/flex.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention/pattern.h"

namespace attn::ops {

using nn::functional::flex::kLanes;  // ATTN_LANES_FOR's trip count

// Softcap (c tanh(s / c)), then the terms parts::add_score_terms defines
// (ALiBi, a float attn_mask), as the fused kernel's loops apply them.
struct SdpaScoreMod {
  // softcap, ALiBi slopes, diagonal, float mask: a copy, as in SdpaMaskMod
  kernels::cpu::SdpaParams p;
  template <class S, class B, class H, class I, class J>
  auto operator()(S s, B b, H h, I i, J j) const {
    using std::tanh;
    namespace parts = kernels::cpu::parts;
    S x = s;
    if (p.softcap > 0) x = S(p.softcap * tanh(s / p.softcap));
    if (!p.alibi && !(p.mask && !p.mask_is_bool)) return x;
    // The terms do not depend on the score: formed in float (on zeros) and
    // added once (with a Dual score, to its value).
    const int64_t bh = b * p.Hq + h;
    if constexpr (nn::functional::flex::is_lanes<J>::value) {
      nn::functional::flex::Lanes<float> t;
      ATTN_LANES_FOR(l) t[l] = 0.0f;
      if (j[kLanes - 1] - j[0] == kLanes - 1) {  // consecutive keys
        parts::add_score_terms<true>(p, bh, i, parts::Axis{j[0], 1}, std::integral_constant<int64_t, kLanes>(), t.x);
      } else {  // a row's last keys: the lanes past its end repeat its last key
        for (int l = 0; l < kLanes; ++l) parts::add_score_terms(p, bh, i, parts::Axis{j[l], 1}, 1, t.x + l);
      }
      return S(x + t);
    } else {
      float t = 0.0f;
      parts::add_score_terms(p, bh, i, parts::Axis{j, 1}, 1, &t);
      return S(x + t);
    }
  }
};

// The keys query i of batch b sees, as the fused kernel's band
// (parts::band, the one definition): the causal / sliding-window band
// [lo, hi) cut at the key length, the global keys [0, gk) (queries i <
// global_tokens see every key up to the length and the causal limit), and
// where a bool attn_mask is false, nothing.
struct SdpaMaskMod {
  // causal, windows, diagonal, global tokens, key lengths: a copy, read in
  // the 16-key loops without a pointer's indirection (2% per score)
  kernels::cpu::SdpaParams p;
  // p's bool attn_mask, viewed as (B, Hq, L, S) with p's element strides;
  // null without one (or with a float mask, which SdpaScoreMod adds)
  const bool* mask = nullptr;
  explicit SdpaMaskMod(const kernels::cpu::SdpaParams& params)
      : p(params), mask(params.mask && params.mask_is_bool ? static_cast<const bool*>(params.mask) : nullptr) {}

  struct Row {
    int64_t lo, hi, gk;
  };
  Row row(int64_t b, int64_t i) const {
    namespace parts = kernels::cpu::parts;
    const parts::Band bd = parts::band(p, i, parts::key_length(p, b * p.Hq));
    return {bd.lo, bd.hi, bd.glob_hi};
  }
  template <class B, class H, class I, class J>
  auto operator()(B b, H h, I i, J j) const {
    const Row r = row(b, i);
    const bool* m = mask ? mask + b * p.mask_sb + h * p.mask_sh + i * p.mask_si : nullptr;
    const int64_t msj = p.mask_sj;
    if constexpr (nn::functional::flex::is_lanes<J>::value) {
      // One loop over the lanes into bytes, with & and | (no short-circuit
      // branches), vectorized: a chain of Lanes<bool> operations would store
      // each step's bytes, and loops over bool stay scalar in GCC.
      uint8_t f[kLanes];
      if (j[kLanes - 1] - j[0] == kLanes - 1) {
        // Consecutive keys (all but a row's last group): the bounds as lane
        // numbers, 32-bit compares of one vector, and one load of the mask.
        auto lane = [&](int64_t x) { return static_cast<int32_t>(std::clamp<int64_t>(x - j[0], 0, kLanes)); };
        const int32_t lo = lane(r.lo), hi = lane(r.hi), gk = lane(r.gk);
        if (m && msj == 1) {
          const auto* mj = reinterpret_cast<const uint8_t*>(m + j[0]);
          ATTN_LANES_FOR(l) f[l] = static_cast<uint8_t>((((l >= lo) & (l < hi)) | (l < gk)) & mj[l]);
        } else if (m) {
          const auto* mj = reinterpret_cast<const uint8_t*>(m + j[0] * msj);
          ATTN_LANES_FOR(l) f[l] = static_cast<uint8_t>((((l >= lo) & (l < hi)) | (l < gk)) & mj[l * msj]);
        } else {
          ATTN_LANES_FOR(l) f[l] = static_cast<uint8_t>(((l >= lo) & (l < hi)) | (l < gk));
        }
      } else if (m) {
        const auto* m8 = reinterpret_cast<const uint8_t*>(m);
        ATTN_LANES_FOR(l) f[l] = static_cast<uint8_t>((((j[l] >= r.lo) & (j[l] < r.hi)) | (j[l] < r.gk)) & m8[j[l] * msj]);
      } else {
        ATTN_LANES_FOR(l) f[l] = static_cast<uint8_t>(((j[l] >= r.lo) & (j[l] < r.hi)) | (j[l] < r.gk));
      }
      nn::functional::flex::Lanes<bool> seen;
      std::memcpy(&seen, f, sizeof f);  // bytes of 0 and 1: valid bools
      return seen;
    } else {
      return ((j >= r.lo && j < r.hi) || j < r.gk) && (!m || m[j * msj]);
    }
  }
  // The tiles of (L, S), per batch when there are key lengths: empty when no
  // row sees any of the tile, full when every row sees all of it (partial
  // with a bool mask, which decides per element), else partial.
  nn::functional::flex::BlockMask block_mask(int64_t B, int64_t L) const;
};

// out (BH, L, Ev) and lse (BH, L) of the fused SDPA through flex_attention's
// forward loop with the modifiers above, from dense q (BH, L, E), k and v
// (BH / G, S, E / Ev), when the call has a bool mask or global tokens (where
// that loop measured faster than the SDPA's own: per-element mask tests on
// 16 keys at a time), no stride or dropout, and at least 8 queries (fewer
// read K in place in the SDPA's loop). Returns false (and computes nothing)
// otherwise.
bool sdpa_forward_by_modifiers(const kernels::cpu::SdpaParams& p, const float* q, const float* k, const float* v,
                               const Tensor& out, const Tensor& lse);

// dQ, dK, dV of the fused SDPA through flex_attention's backward loop with the
// modifiers above, when p's options are all they cover (scale, causal,
// windows, diagonal offset, global tokens, key lengths, ALiBi, softcap, bool
// and float masks; not strides or dropout) and there are at least as many
// (batch, kv head) tasks as threads. Returns false (and computes nothing)
// otherwise. A float mask's own gradient is not computed here.
bool sdpa_backward_by_modifiers(const kernels::cpu::SdpaParams& p, const Tensor& dout, const Tensor& q,
                                const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                                const Tensor& dq, const Tensor& dk, const Tensor& dv);

}  // namespace attn::ops
