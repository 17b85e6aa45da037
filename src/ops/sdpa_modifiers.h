// Internal: the fused SDPA's score transforms and band masks as flex_attention
// modifiers (16 keys per call), and the SDPA backward that runs flex's
// backward loop with them.
#pragma once

#include <algorithm>
#include <cstdint>

#include "attn/flex.h"
#include "kernels/cpu/attention.h"

namespace attn::ops {

// Softcap (c tanh(s / c)), then ALiBi (- slope[b Hq + h] |i + diag - j|), as
// the fused kernel applies them.
struct SdpaScoreMod {
  float softcap = 0.0f;
  const float* slopes = nullptr;  // (B Hq) or null
  int64_t Hq = 1, diag = 0;
  template <class S, class B, class H, class I, class J>
  auto operator()(S s, B b, H h, I i, J j) const {
    using std::abs;
    using std::tanh;
    const S x = softcap > 0 ? S(softcap * tanh(s / softcap)) : s;
    if (!slopes) return x;
    return S(x - slopes[b * Hq + h] * abs(i + diag - j));
  }
};

// The causal / sliding-window band: key j is visible from query i when
// lo(i) <= j <= hi(i), with c = i + diag, hi = min(c if causal, c + right,
// S - 1) and lo = max(c - left, 0); both grow with i.
struct SdpaBandMask {
  bool causal = false;
  int64_t diag = 0, left = -1, right = -1, S = 0;
  int64_t lo(int64_t i) const { return left >= 0 ? std::max<int64_t>(i + diag - left, 0) : 0; }
  int64_t hi(int64_t i) const {
    int64_t h = S - 1;
    if (causal) h = std::min(h, i + diag);
    if (right >= 0) h = std::min(h, i + diag + right);
    return h;
  }
  template <class B, class H, class I, class J>
  auto operator()(B, H, I i, J j) const {
    return (j >= lo(i)) && (j <= hi(i));
  }
  // The tiles of (L, S) from the band's edges: full when every row sees the
  // whole tile, empty when none sees any of it, else partial.
  nn::functional::flex::BlockMask block_mask(int64_t L) const;
};

// dQ, dK, dV of the fused SDPA through flex_attention's backward loop with the
// modifiers above, when p's options are all it covers (scale, causal,
// windows, diagonal offset, ALiBi, softcap; no masks, key lengths, dropout,
// global tokens or strides) and there are at least as many (batch, kv head)
// tasks as threads. Returns false (and computes nothing) otherwise.
bool sdpa_backward_by_modifiers(const kernels::cpu::SdpaParams& p, const Tensor& dout, const Tensor& q,
                                const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                                const Tensor& dq, const Tensor& dk, const Tensor& dv);

}  // namespace attn::ops
