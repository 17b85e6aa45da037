// The score and mask stage of the built-in SDPA kernel (see pattern.h).
#include "kernels/cpu/attention/pattern.h"

#include <cmath>
#include <limits>

#include "core/parallel.h"

namespace attn::kernels::cpu::parts {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

Groups make_groups(const SdpaParams& p) {
  Groups g;
  const int64_t s = p.stride;
  g.s = s;
  g.qoff.assign(static_cast<size_t>(s + 1), 0);
  g.koff.assign(static_cast<size_t>(s + 1), 0);
  g.qorig.reserve(static_cast<size_t>(p.L));
  g.korig.reserve(static_cast<size_t>(p.S));
  for (int64_t r = 0; r < s; ++r) {
    for (int64_t i = ((r - p.diag) % s + s) % s; i < p.L; i += s) g.qorig.push_back(i);
    for (int64_t j = r; j < p.S; j += s) g.korig.push_back(j);
    g.qoff[r + 1] = static_cast<int64_t>(g.qorig.size());
    g.koff[r + 1] = static_cast<int64_t>(g.korig.size());
  }
  return g;
}

Tiles make_tiles(const std::vector<int64_t>* group_off, int64_t n, int64_t size) {
  Tiles t;
  t.off.push_back(0);
  const int64_t groups = group_off ? static_cast<int64_t>(group_off->size()) - 1 : 1;
  for (int64_t r = 0; r < groups; ++r) {
    const int64_t a = group_off ? (*group_off)[r] : 0, b = group_off ? (*group_off)[r + 1] : n;
    for (int64_t x = a; x < b; x += size) t.start.push_back(x), t.len.push_back(std::min(size, b - x));
    t.off.push_back(static_cast<int64_t>(t.start.size()));
  }
  return t;
}

// dst (H, N, W) = src (H, N, W) with rows reordered: dst[h][x] = src[h][order[x]].
void gather_rows(const float* src, float* dst, int64_t H, int64_t W, const std::vector<int64_t>& order) {
  const int64_t N = static_cast<int64_t>(order.size());
  detail::parallel_for(H * N, 1024, [&](int64_t b, int64_t e) {
    for (int64_t x = b; x < e; ++x) {
      const float* s = src + ((x / N) * N + order[x % N]) * W;
      std::copy(s, s + W, dst + x * W);
    }
  });
}

// dst[h][order[x]] += src[h][x]: the inverse of gather_rows, accumulating.
void scatter_add_rows(const float* src, float* dst, int64_t H, int64_t W, const std::vector<int64_t>& order) {
  const int64_t N = static_cast<int64_t>(order.size());
  detail::parallel_for(H * N, 1024, [&](int64_t b, int64_t e) {
    for (int64_t x = b; x < e; ++x) {
      float* d = dst + ((x / N) * N + order[x % N]) * W;
      const float* s = src + x * W;
      for (int64_t w = 0; w < W; ++w) d[w] += s[w];
    }
  });
}

// Applies the score transforms and masks to a (rows, cols) tile of raw
// scaled scores whose original row and key indices are ri.at(r) and
// cj.at(c); `softcap_grad` (optional) receives the softcap derivative
// 1 - tanh^2 for the backward.
void transform_tile(const SdpaParams& p, Part part, int64_t bh, Axis ri, int64_t rows, Axis cj, int64_t cols,
                    int64_t klen, float* s, int64_t lds, float* softcap_grad) {
  const int64_t b = bh / p.Hq, h = bh % p.Hq;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = ri.at(r);
    float* row = s + r * lds;
    const Band bd = band(p, i, klen);
    if (p.softcap > 0) {
      float* g = softcap_grad ? softcap_grad + r * lds : nullptr;
      for (int64_t c = 0; c < cols; ++c) {
        const float t = std::tanh(row[c] / p.softcap);
        row[c] = p.softcap * t;
        if (g) g[c] = 1.0f - t * t;
      }
    }
    add_score_terms(p, bh, i, cj, cols, row);  // ALiBi, a float mask
    if (p.mask && p.mask_is_bool) {
      const bool* m = static_cast<const bool*>(p.mask) + b * p.mask_sb + h * p.mask_sh + i * p.mask_si +
                      cj.start * p.mask_sj;
      const int64_t sj = cj.step * p.mask_sj;
      for (int64_t c = 0; c < cols; ++c)
        if (!m[c * sj]) row[c] = kNegInf;
    }
    if (sparse(p)) {  // the band, the global keys and the strided keys
      const int64_t d = i + p.diag;
      for (int64_t x = 0; x < cols; ++x) {
        const int64_t j = cj.at(x);
        const bool local = (j >= bd.lo && j < bd.hi) || j < bd.glob_hi;
        bool keep = local;
        if (part == Part::Strided)  // the grouped layout puts only strided keys in the tile
          keep = !local && j < bd.reach_hi;
        else if (part == Part::All && !local && p.stride > 0)
          keep = j < bd.reach_hi && ((d - j) % p.stride + p.stride) % p.stride == 0;
        if (!keep) row[x] = kNegInf;
      }
      continue;
    }
    // keys outside the band: a prefix and a suffix of the tile (step 1 here)
    const int64_t pre = std::clamp<int64_t>(bd.lo - cj.start, 0, cols);
    const int64_t post = std::clamp<int64_t>(bd.hi - cj.start, pre, cols);
    std::fill(row, row + pre, kNegInf);
    std::fill(row + post, row + cols, kNegInf);
  }
}

namespace {

// The keys [j0, j1) a query tile [i0, i1) can reach through its band.
void key_block_range(const SdpaParams& p, Part part, int64_t i0, int64_t i1, int64_t klen, int64_t& j0,
                     int64_t& j1) {
  const Band first = band(p, i0, klen), last = band(p, i1 - 1, klen);
  j0 = std::min(first.lo, last.lo);
  j1 = std::max(first.hi, last.hi);
  if (p.stride > 0 && part == Part::All) j0 = 0, j1 = std::max(first.reach_hi, last.reach_hi);  // strided keys lie everywhere
  if (j1 <= j0) j0 = j1 = 0;
}

}  // namespace

// The key ranges a query tile [i0, i1) (natural layout) must visit, in
// order: the global keys before the band (when there are any), then the
// band. At most two.
int64_t key_segments(const SdpaParams& p, Part part, int64_t i0, int64_t i1, int64_t klen, int64_t seg[2][2]) {
  int64_t jlo, jhi;
  key_block_range(p, part, i0, i1, klen, jlo, jhi);
  int64_t n = 0;
  const int64_t g = std::min(std::max(band(p, i0, klen).glob_hi, band(p, i1 - 1, klen).glob_hi), jhi > jlo ? jlo : klen);
  if (g > 0) seg[n][0] = 0, seg[n][1] = g, ++n;
  if (jhi > jlo) seg[n][0] = std::max(jlo, g), seg[n][1] = jhi, n += seg[n][1] > seg[n][0];
  return n;
}

// The grouped keys [lo, hi) of group r that query rows with original
// indices i_first..i_last (increasing) may reach in the strided pass: past
// the global keys, below the causal / length limit.
void group_key_range(const SdpaParams& p, const Groups& gr, int64_t r, int64_t i_first, int64_t i_last,
                     int64_t klen, int64_t& lo, int64_t& hi) {
  const int64_t s = gr.s, n = gr.koff[r + 1] - gr.koff[r];
  auto below = [&](int64_t limit) { return std::min(n, limit > r ? (limit - 1 - r) / s + 1 : 0); };  // keys r + s b < limit
  const int64_t reach = std::max(band(p, i_first, klen).reach_hi, band(p, i_last, klen).reach_hi);
  lo = gr.koff[r] + below(std::min(p.global_tokens, reach));
  hi = gr.koff[r] + below(reach);
  if (i_last < p.global_tokens || hi < lo) hi = lo;  // global queries see everything in the local pass
}

}  // namespace attn::kernels::cpu::parts
