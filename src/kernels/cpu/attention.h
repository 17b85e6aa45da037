// Internal: the fused scaled-dot-product attention kernels (float32) and the
// pieces the composed reference shares with them (the dropout draw).
//
// Legend: BH = batch * query heads (flattened), L = queries, S = keys,
// E = q/k head dim, Ev = v head dim, G = Hq / Hk (query heads per kv head).
//   q: (BH, L, E)  k, v: (B * Hk, S, E / Ev)  out: (BH, L, Ev)  lse: (BH, L)
// All contiguous, except where SdpaParams' row layouts say otherwise. The score transforms and masks are those of
// include/attn/attention.h.
#pragma once

#include <array>
#include <cstdint>

#include "attn/generator.h"
#include "attn/tensor.h"

namespace attn::kernels::cpu {

struct SdpaParams {
  int64_t BH = 0, Hq = 1, G = 1, L = 0, S = 0, E = 0, Ev = 0;
  float scale = 1.0f;
  float softcap = 0.0f;   // 0: off
  bool causal = false;
  int64_t diag = 0;       // query i is aligned with key i + diag
  int64_t win_left = -1, win_right = -1;  // -1: unbounded
  int64_t global_tokens = 0;              // keys j < g seen by all; queries i < g see all
  int64_t stride = 0;                     // also keys with (i + diag - j) % stride == 0
  const float* alibi = nullptr;           // (BH) slopes, or null
  // attn_mask viewed as (B, Hq, L, S) with element strides (0 where
  // broadcast), bh = b * Hq + h; null if none. Bool: true = attend.
  const void* mask = nullptr;
  bool mask_is_bool = false;
  int64_t mask_sb = 0, mask_sh = 0, mask_si = 0, mask_sj = 0;
  const int64_t* key_lengths = nullptr;   // (BH / Hq) per batch, or null
  // sdpa_forward only: where each head's rows of q, k and v are. heads[i] is
  // the element offset of head i's first row from the tensor's data (q: BH
  // heads, k and v: BH / G), rows `row` elements apart, unit stride within a
  // row; null: dense, the legend's layout. Lets the forward read the head
  // views of a projection (q, k and v interleaved in one (L, 3, H, D) buffer)
  // and a KV cache's (B, H, capacity, D) storage in place.
  struct Rows {
    const int64_t* heads = nullptr;
    int64_t row = 0;
  };
  Rows q_rows, k_rows, v_rows;
  // dropout: keep probability < 1 turns it on
  double keep = 1.0;
  uint64_t seed = 0, offset = 0;
  // Whether the keys form a band (causal or a window): most tiles are then
  // wholly visible or wholly hidden, and the kernels pick smaller tiles.
  bool banded() const { return causal || win_left >= 0 || win_right >= 0; }
};

// Counter blocks a dropout draw over (BH, L, S) uses.
inline uint64_t sdpa_dropout_blocks(int64_t BH, int64_t L, int64_t S) {
  return static_cast<uint64_t>(BH) * static_cast<uint64_t>(L) * static_cast<uint64_t>((S + 3) / 4);
}

// Whether dropout keeps probability (bh, i, j): Philox block
// offset + (bh * L + i) * ceil(S / 4) + j / 4, word j % 4, uniform in (0, 1]
// compared with keep. Fused kernels and the reference call this alike.
inline bool sdpa_dropout_keep(const Generator& gen, uint64_t offset, int64_t bh, int64_t i, int64_t j, int64_t L,
                              int64_t S, double keep) {
  const uint64_t blk = offset + (static_cast<uint64_t>(bh) * L + i) * static_cast<uint64_t>((S + 3) / 4) + j / 4;
  const uint32_t w = gen.block(blk, /*stream=*/1)[j % 4];
  return (static_cast<double>(w) + 1.0) * (1.0 / 4294967296.0) <= keep;
}

// The multipliers of row (bh, i), keys [j0, j0 + n): scale where
// sdpa_dropout_keep holds, else 0; the row's blocks are drawn together.
void sdpa_dropout_row(const Generator& gen, uint64_t offset, int64_t bh, int64_t i, int64_t j0, int64_t n,
                      int64_t L, int64_t S, double keep, float scale, float* out);

// The dropout multiplier (BH, L, S): 1/keep where kept, else 0 (for the reference).
void sdpa_dropout_mask(const Tensor& out, double keep, uint64_t seed, uint64_t offset);

// out (BH, L, Ev) and lse (BH, L), both float32 and allocated by the caller.
void sdpa_forward(const Tensor& q, const Tensor& k, const Tensor& v, const SdpaParams& p, const Tensor& out,
                  const Tensor& lse);

// Gradients from dout (BH, L, Ev); dq, dk, dv allocated by the caller.
// dscores (BH, L, S), when defined, accumulates the gradient of the scores
// after softcap (what an additive mask receives); the caller zeroes it.
void sdpa_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                   const Tensor& lse, const SdpaParams& p, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dscores);

// Probabilities exp(scores - lse), 0 where masked, tile by tile: probs is
// (BH, L, S), or with average_heads (BH / Hq, L, S), the mean over each
// batch's Hq heads (summed in head order, then divided by Hq).
void sdpa_probs(const Tensor& q, const Tensor& k, const Tensor& lse, const SdpaParams& p, const Tensor& probs,
                bool average_heads = false);

}  // namespace attn::kernels::cpu
