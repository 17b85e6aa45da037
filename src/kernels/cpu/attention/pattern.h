// Internal: the score and mask stage of the built-in SDPA kernel and the
// layouts it runs in, one job each: which keys a query row sees (the band,
// global and strided keys, key lengths), the tiles a pass visits, the
// stride's regrouped layout, the transforms applied to a tile of raw scores
// (softcap, ALiBi, masks), and the dropout multipliers. The loops that use
// them are in kernels/cpu/attention.cpp; the products and the softmax in
// parts.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/attention.h"

namespace attn::kernels::cpu::parts {

// The keys query row i may attend to: the band [lo, hi) (empty when lo >=
// hi), plus with a sparse pattern the global keys [0, glob_hi) and, with a
// stride, every stride-th key below reach_hi (the causal / length limit).
struct Band {
  int64_t lo, hi, glob_hi = 0, reach_hi = 0;
};
inline Band band(const SdpaParams& p, int64_t i, int64_t klen) {
  const int64_t c = i + p.diag;
  const int64_t reach = std::max<int64_t>(p.causal ? std::min(klen, c + 1) : klen, 0);
  if (i < p.global_tokens) return {0, reach, 0, reach};  // a global query sees every key
  int64_t lo = 0, hi = reach;
  if (p.win_right >= 0) hi = std::min(hi, c + p.win_right + 1);
  if (p.win_left >= 0) lo = std::max(lo, c - p.win_left);
  return {std::max<int64_t>(lo, 0), std::max<int64_t>(hi, 0), std::min(p.global_tokens, reach), reach};
}

inline bool sparse(const SdpaParams& p) { return p.global_tokens > 0 || p.stride > 0; }

inline int64_t key_length(const SdpaParams& p, int64_t bh) {
  return p.key_lengths ? std::clamp<int64_t>(p.key_lengths[bh / p.Hq], 0, p.S) : p.S;
}

// Which keys a pass attends. All: the whole pattern. Local: the band and the
// global keys. Strided: the strided keys outside those two. With a stride
// the forward and backward run Local in the natural layout and Strided in
// the grouped one (see Groups); the two merge through their LSEs.
enum class Part { All, Local, Strided };

// The original index of position x along a tile's rows or keys: start + x *
// step (step = stride for the grouped layout's tiles).
struct Axis {
  int64_t start = 0, step = 1;
  int64_t at(int64_t x) const { return start + x * step; }
};

// The strided pass's layout: queries grouped by the residue of their
// aligned diagonal, (i + diag) mod s, keys by j mod s, each group in
// increasing order. Query i's strided keys all lie in its own group, so the
// pass is dense attention inside each group: s blocks of about L / s queries
// by S / s keys, L * S / s scores in all instead of L * S.
struct Groups {
  int64_t s = 0;
  std::vector<int64_t> qoff, koff;    // (s + 1): where each group starts
  std::vector<int64_t> qorig, korig;  // (L), (S): grouped position -> original index
};

Groups make_groups(const SdpaParams& p);

// Query or key tiles of at most `size` rows that never straddle a group:
// tiles of group r are [off[r], off[r + 1]). Without groups, one group.
struct Tiles {
  std::vector<int64_t> start, len, off;
};

Tiles make_tiles(const std::vector<int64_t>* group_off, int64_t n, int64_t size);

// The score terms that do not depend on the score, added in place to the n
// scores s of query row i of head bh at keys cj.at(0..n), after softcap:
// ALiBi's -slope |i + diag - j|, then a float attn_mask's values. The one
// definition of both: the SDPA's loops apply it to whole rows, its
// modifiers (ops/sdpa_modifiers.h) to 16 keys at a time.
// N: the count, an int64_t or a std::integral_constant (16 keys of the
// modifiers: loops of a fixed trip count); kUnit: keys one apart (cj.step 1)
// and a mask read along its rows, both known at compile time.
template <bool kUnit = false, class N = int64_t>
inline void add_score_terms(const SdpaParams& p, int64_t bh, int64_t i, Axis cj, N n, float* s) {
  const int64_t step = kUnit ? 1 : cj.step;
  if (p.alibi) {
    const float slope = p.alibi[bh];
    const int64_t d0 = i + p.diag - cj.start;  // the distance at x = 0, then - x step
    for (int64_t x = 0; x < n; ++x) {
      const int64_t d = d0 - x * step;
      s[x] -= slope * static_cast<float>(d < 0 ? -d : d);
    }
  }
  if (p.mask && !p.mask_is_bool) {
    const int64_t b = bh / p.Hq, h = bh % p.Hq;
    const float* m = static_cast<const float*>(p.mask) + b * p.mask_sb + h * p.mask_sh + i * p.mask_si +
                     cj.start * p.mask_sj;
    const int64_t sj = step * p.mask_sj;
    if (sj == 1) {
      for (int64_t x = 0; x < n; ++x) s[x] += m[x];
    } else {
      for (int64_t x = 0; x < n; ++x) s[x] += m[x * sj];
    }
  }
}

// dst (H, N, W) = src (H, N, W) with rows reordered: dst[h][x] = src[h][order[x]].
void gather_rows(const float* src, float* dst, int64_t H, int64_t W, const std::vector<int64_t>& order);

// dst[h][order[x]] += src[h][x]: the inverse of gather_rows, accumulating.
void scatter_add_rows(const float* src, float* dst, int64_t H, int64_t W, const std::vector<int64_t>& order);

// Applies the score transforms and masks to a (rows, cols) tile of raw
// scaled scores whose original row and key indices are ri.at(r) and
// cj.at(c); `softcap_grad` (optional) receives the softcap derivative
// 1 - tanh^2 for the backward.
void transform_tile(const SdpaParams& p, Part part, int64_t bh, Axis ri, int64_t rows, Axis cj, int64_t cols,
                    int64_t klen, float* s, int64_t lds, float* softcap_grad);

// The key ranges a query tile [i0, i1) (natural layout) must visit, in
// order: the global keys before the band (when there are any), then the
// band. At most two.
int64_t key_segments(const SdpaParams& p, Part part, int64_t i0, int64_t i1, int64_t klen, int64_t seg[2][2]);

// The grouped keys [lo, hi) of group r that query rows with original
// indices i_first..i_last (increasing) may reach in the strided pass: past
// the global keys, below the causal / length limit.
void group_key_range(const SdpaParams& p, const Groups& gr, int64_t r, int64_t i_first, int64_t i_last,
                     int64_t klen, int64_t& lo, int64_t& hi);

// Dropout multipliers (1/keep or 0) of row (bh, i) for keys cj.at(0..n)
// (attention/dropout.cpp).
void dropout_scales(const Generator& g, const SdpaParams& p, int64_t bh, int64_t i, Axis cj, int64_t n, float* out);

}  // namespace attn::kernels::cpu::parts
