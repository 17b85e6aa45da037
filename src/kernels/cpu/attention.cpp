// Fused scaled-dot-product attention on the CPU, float32.
//
// Forward: one task per (bh, query block), dynamically scheduled; per key
// block S = Q K^T (the register-blocked tile product of the parts in
// kernels/cpu/attention/, shared with flex_attention) then scale, softcap, ALiBi,
// masks and the row max; key blocks wholly outside the causal/window/length
// band are skipped; P = exp(S - m) (Highway), the accumulator is rescaled only
// when a row max moves; O += P V. Epilogue O / l (l = 0 gives 0), LSE.
// Memory beyond the inputs: per task one (Bq, Bk) score tile and a (Bq, Ev)
// accumulator.
//
// Backward (FlashAttention-2): D = rowsum(dO * O); P is recomputed from the
// LSE. One task per (batch, kv head) loops over its key blocks and, inside,
// over the query blocks and the G query heads that read it, so dK, dV and dQ
// of a task are written by that task alone: no atomics and bit-identical
// results at any thread count. With a single kv head in all, a key-tile pass
// (dK, dV) and a query-tile pass (dQ) keep every thread busy instead.
//
// A stride (Sparse Transformer) runs as two passes: the band and global keys
// in the natural layout, the remaining strided keys in a layout regrouped by
// residue mod stride, where they form dense blocks (L * S / stride scores,
// not L * S); the outputs merge row by row through the LSEs, and the
// backward runs both passes with the merged LSE and D.
#include "kernels/cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/parallel.h"
#include "kernels/cpu/attention/parts.h"
#include "kernels/cpu/attention/pattern.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/loop.h"

namespace attn::kernels::cpu {

namespace {

using parts::Axis;
using parts::Band;
using parts::Groups;
using parts::Part;
using parts::Tiles;
using parts::band;
using parts::dropout_scales;
using parts::exp_sub_sum;
using parts::gather_rows;
using parts::group_key_range;
using parts::key_length;
using parts::key_segments;
using parts::make_groups;
using parts::make_tiles;
using parts::row_max;
using parts::scatter_add_rows;
using parts::tile_gemm;
using parts::transform_tile;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Tile sizes: measured on 2 Zen 4 cores at (1, 8, 1024, 64), forward, ratio
// to SGEMM: 64x128 0.58, 128x128 0.62, 128x256 0.63, 128x512 0.64 (bigger
// key tiles waste more work on the causal diagonal).
// Tile sizes, measured on 2 Zen 4 cores (AVX2 here) at (1, 8, 1024, 64),
// forward ratio to SGEMM, non-causal / causal: 48x256 0.67 / 0.59,
// 64x256 0.62 / 0.56, 96x256 0.67 / 0.57, 128x256 0.66 / 0.55 (row counts
// that are multiples of the kernel's 6-row block do best; small query tiles
// waste less on the causal diagonal). The backward keeps 128 x 256 (64 x 64
// for banded patterns: see backward_pass).
constexpr int64_t kBk = 256;  // keys per tile
constexpr int64_t kBq = 128;  // query rows per backward tile
// Below this many queries the forward reads K's rows in place (decoding).
constexpr int64_t kDirectRows = 8;

int64_t forward_rows(const SdpaParams& p) { return p.banded() ? 48 : 96; }

// Element offsets of (head, row) in a tensor laid out as SdpaParams::Rows
// says, or densely as (heads, rows, cols).
struct RowsAt {
  const int64_t* heads;
  int64_t row, head;
  RowsAt(const SdpaParams::Rows& r, int64_t rows, int64_t cols)
      : heads(r.heads), row(r.heads ? r.row : cols), head(rows * cols) {}
  int64_t at(int64_t h, int64_t i) const { return (heads ? heads[h] : h * head) + i * row; }
};

// The width of a packed K^T tile: kBk, or the keys rounded up to 64 when they
// all fit in one tile (Swin's 49-key windows pack 64 columns, not 256).
// Widths off a multiple of 64 measured slower (ViT-B's 197 keys packed 208
// wide: 0.83 -> 1.22 ms per call).
int64_t kt_width(const SdpaParams& p) { return std::clamp<int64_t>((p.S + 63) / 64 * 64, 64, kBk); }

// K^T packed once per kv head, one contiguous (E, kt_width) block per key
// tile: (BH / G, tiles, E, kt_width), from K laid out as `layout` says. A plain (E, S) layout would walk a
// tile's rows at a stride of S floats, a power of two that maps them onto the
// same cache sets.
Tensor pack_kt(const float* K, const SdpaParams& p, const SdpaParams::Rows& layout = {}) {
  const int64_t S = p.S, E = p.E, BKV = p.BH / p.G, kw = kt_width(p), ktiles = (S + kw - 1) / kw;
  const RowsAt kr(layout, S, E);
  // a tensor's storage, not a vector: large blocks come from the allocator's
  // cache of freed blocks, not freshly mapped and zeroed pages (Swin-T's
  // first stage at batch 8 packs 12 MB per call)
  Tensor buf = Tensor::make({BKV * ktiles * E * kw}, kFloat32);
  float* kt = buf.data<float>();
  detail::parallel_for(BKV * ktiles, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {  // one key tile of one head
      const int64_t h = t / ktiles, j0 = (t % ktiles) * kw;
      parts::pack_kt(K + kr.at(h, j0), std::min(kw, S - j0), E, kr.row, kw, kt + t * E * kw);
    }
  });
  return buf;
}

// Scores of query rows [i0, i0 + rows) against keys [j0, j0 + cols) from the
// packed K^T of one kv head, into tile (leading dimension ldt): a key range
// that starts mid-tile spans two packed tiles.
void packed_scores(const SdpaParams& p, const float* Qt, int64_t ldq, const float* KTh, int64_t rows, int64_t j0,
                   int64_t cols, float* tile, int64_t ldt) {
  const int64_t E = p.E, kw = kt_width(p), tt = j0 / kw, off = j0 - tt * kw, c1 = std::min(cols, kw - off);
  tile_gemm(rows, c1, E, p.scale, Qt, ldq, KTh + tt * E * kw + off, kw, false, tile, ldt);
  if (cols > c1) tile_gemm(rows, cols - c1, E, p.scale, Qt, ldq, KTh + (tt + 1) * E * kw, kw, false, tile + c1, ldt);
}

// One forward pass of `part` in the natural layout (gr null: Q, K and V
// where p's row layouts say) or the grouped one (dense copies): Q (BH, L, E),
// packed K^T, V (BH / G, S, Ev) and the outputs O, LSE in that layout. With
// kt undefined, the scores come from the rows of K itself (direct: a few
// queries, as in decoding, where packing K^T would copy all of it for one
// row of scores).
void forward_pass(const float* Q, const Tensor& kt, const float* K, const float* V, const SdpaParams& p,
                  Part part, const Groups* gr, float* O, float* LSE) {
  const int64_t L = p.L, S = p.S, E = p.E, Ev = p.Ev;
  const SdpaParams::Rows dense;
  const RowsAt qr(gr ? dense : p.q_rows, L, E), kr(gr ? dense : p.k_rows, S, E), vr(gr ? dense : p.v_rows, S, Ev);
  const bool direct = !kt.defined();
  const int64_t bq = forward_rows(p);
  const Tiles qt = make_tiles(gr ? &gr->qoff : nullptr, L, bq);
  const int64_t ntiles = static_cast<int64_t>(qt.start.size());
  const int64_t tasks = p.BH * ntiles;
  const Generator gen(p.seed);
  const bool dropout = p.keep < 1.0;
  const int64_t kw = kt_width(p), ktiles = (S + kw - 1) / kw;
  // Keys folded into the softmax at once: two packed tiles without a band
  // (half the rescaling passes and a longer P V product; (1, 8, 2048, 64)
  // 198 -> 201 GFLOPS, four tiles gained nothing more), one with it (the
  // causal diagonal would waste more).
  const bool banded = p.banded();
  const int64_t chunk = !direct && !banded && S > kw ? 2 * kw : kw;
  auto row_axis = [&](int64_t x0) { return gr ? Axis{gr->qorig[x0], gr->s} : Axis{x0, 1}; };
  auto col_axis = [&](int64_t j0) { return gr ? Axis{gr->korig[j0], gr->s} : Axis{j0, 1}; };
#pragma omp parallel if (tasks > 1 && !omp_in_parallel())
  {
    detail::DenormalGuard dg;
    std::vector<float> tile(bq * chunk), acc(bq * Ev), m(bq), l(bq), zs(chunk);  // a tile's keys: <= chunk
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t bh = t / ntiles, ti = t % ntiles, i0 = qt.start[ti], rows = qt.len[ti];
      const int64_t kvh = bh / p.G;  // the kv head this query head reads
      const float* Qt = Q + qr.at(bh, i0);
      const float* KTh = direct ? nullptr : kt.data<float>() + kvh * ktiles * E * kw;
      const float* Kh = K + kr.at(kvh, 0);
      const float* Vh = V + vr.at(kvh, 0);
      const int64_t klen = key_length(p, bh);
      const Axis ri = row_axis(i0);
      std::fill(acc.begin(), acc.begin() + rows * Ev, 0.0f);
      std::fill(m.begin(), m.begin() + rows, kNegInf);
      std::fill(l.begin(), l.begin() + rows, 0.0f);
      int64_t seg[2][2];
      int64_t nseg = 0;
      if (gr) {
        const int64_t r = ((ri.start + p.diag) % gr->s + gr->s) % gr->s;  // the group: (i + diag) mod s
        group_key_range(p, *gr, r, ri.start, ri.at(rows - 1), klen, seg[0][0], seg[0][1]);
        nseg = seg[0][1] > seg[0][0];
      } else {
        nseg = key_segments(p, part, i0, i0 + rows, klen, seg);
      }
      for (int64_t sg = 0; sg < nseg; ++sg)
        for (int64_t j0 = seg[sg][0], jhi = seg[sg][1]; j0 < jhi; j0 += chunk) {
          const int64_t cols = std::min(chunk, jhi - j0);
          const Axis cj = col_axis(j0);
          if (direct)
            gemm(false, true, rows, cols, E, p.scale, Qt, qr.row, Kh + j0 * kr.row, kr.row, 0.0, tile.data(), chunk);
          else
            for (int64_t c0 = 0; c0 < cols; c0 += kw)
              packed_scores(p, Qt, qr.row, KTh, rows, j0 + c0, std::min(kw, cols - c0), tile.data() + c0, chunk);
          transform_tile(p, part, bh, ri, rows, cj, cols, klen, tile.data(), chunk, nullptr);
          parts::online_softmax(tile.data(), rows, cols, chunk, m.data(), l.data(), acc.data(), Ev);
          if (dropout)
            for (int64_t r = 0; r < rows; ++r) {
              float* s = tile.data() + r * chunk;
              dropout_scales(gen, p, bh, ri.at(r), cj, cols, zs.data());
              for (int64_t c = 0; c < cols; ++c) s[c] *= zs[c];
            }
          tile_gemm(rows, Ev, cols, 1.0f, tile.data(), chunk, Vh + j0 * vr.row, vr.row, true, acc.data(), Ev);
        }
      for (int64_t r = 0; r < rows; ++r) {
        float* o = O + (bh * L + i0 + r) * Ev;
        const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
        for (int64_t e = 0; e < Ev; ++e) o[e] = acc[r * Ev + e] * inv;
        LSE[bh * L + i0 + r] = l[r] > 0 ? m[r] + std::log(l[r]) : kNegInf;
      }
    }
  }
}

// The grouped copies of Q, K and V (and of whatever else a pass reads).
struct Grouped {
  std::vector<float> Q, K, V;
};

Grouped group_inputs(const float* Q, const float* K, const float* V, const SdpaParams& p, const Groups& gr) {
  Grouped g;
  const int64_t BKV = p.BH / p.G;
  g.Q.resize(static_cast<size_t>(p.BH * p.L * p.E));
  g.K.resize(static_cast<size_t>(BKV * p.S * p.E));
  g.V.resize(static_cast<size_t>(BKV * p.S * p.Ev));
  gather_rows(Q, g.Q.data(), p.BH, p.E, gr.qorig);
  gather_rows(K, g.K.data(), BKV, p.E, gr.korig);
  gather_rows(V, g.V.data(), BKV, p.Ev, gr.korig);
  return g;
}

}  // namespace

void sdpa_forward(const Tensor& q, const Tensor& k, const Tensor& v, const SdpaParams& p, const Tensor& out,
                  const Tensor& lse) {
  const float* Q = q.data<float>();
  const float* K = k.data<float>();
  const float* V = v.data<float>();
  float* O = out.data<float>();
  float* LSE = lse.data<float>();
  // Few queries read K directly; more share one packed copy of K^T.
  const bool direct = p.L < kDirectRows;
  ATTN_CHECK(p.stride <= 0 || (!p.q_rows.heads && !p.k_rows.heads && !p.v_rows.heads),
             "sdpa_forward: strided patterns need dense q, k and v");
  forward_pass(Q, direct ? Tensor() : pack_kt(K, p, p.k_rows), K, V, p, Part::Local, nullptr, O, LSE);
  if (p.stride <= 0 || p.L == 0 || p.S == 0) return;
  // The strided keys outside the band, in the grouped layout, then merged
  // row by row: O = (O_a e^(lse_a) + O_b e^(lse_b)) / (e^(lse_a) + e^(lse_b)).
  const Groups gr = make_groups(p);
  const Grouped in = group_inputs(Q, K, V, p, gr);
  std::vector<float> Og(static_cast<size_t>(p.BH * p.L * p.Ev)), LSEg(static_cast<size_t>(p.BH * p.L));
  forward_pass(in.Q.data(), pack_kt(in.K.data(), p), in.K.data(), in.V.data(), p, Part::Strided, &gr, Og.data(),
               LSEg.data());
  parts::merge_by_lse(O, LSE, Og.data(), LSEg.data(), p.BH, p.L, p.Ev, gr.qorig);
}

namespace {

// What a backward pass reads and writes, in its layout (natural or grouped).
struct GradViews {
  const float *Q, *K, *V, *dO, *LSE, *D;
  float *dQ, *dK, *dV;
  const Groups* gr;  // null: natural layout
};

// One backward pass of `part` (FlashAttention-2 with the full LSE and D, so
// the passes' gradients add up to those of the merged attention).
void backward_pass(const GradViews& w, const SdpaParams& p, Part part, float* dSc) {
  const int64_t L = p.L, S = p.S, E = p.E, Ev = p.Ev, G = p.G;
  const int64_t BKV = p.BH / G;
  const Generator gen(p.seed);
  const bool dropout = p.keep < 1.0;
  const Groups* gr = w.gr;
  auto row_axis = [&](int64_t x0) { return gr ? Axis{gr->qorig[x0], gr->s} : Axis{x0, 1}; };
  auto col_axis = [&](int64_t j0) { return gr ? Axis{gr->korig[j0], gr->s} : Axis{j0, 1}; };

  // Per-thread tile buffers.
  struct Buffers {
    std::vector<float> P, dP, cg, Pd, Z;  // Z: dropout multipliers
    Buffers() : P(kBq * kBk), dP(kBq * kBk), cg(kBq * kBk), Pd(kBq * kBk), Z(kBq * kBk) {}
  };
  // For the tile (query rows [i0, i0 + rows) of head bh, keys [j0, j0 + cols)):
  // P = exp(S - lse) in b.P (0 where masked), P * Z in b.Pd when dropout is
  // on, and dS (the score gradient, times the softcap derivative) in b.dP.
  // Returns false when the tile lies outside the pass's keys.
  auto tile_grad = [&](Buffers& b, int64_t bh, int64_t i0, int64_t rows, int64_t j0, int64_t cols,
                       bool write_dscores) {
    const int64_t klen = key_length(p, bh);
    const Axis ri = row_axis(i0), cj = col_axis(j0);
    if (cj.start >= klen) return false;
    int64_t seg[2][2];
    int64_t nseg = 0;
    if (gr) {
      group_key_range(p, *gr, cj.start % gr->s, ri.start, ri.at(rows - 1), klen, seg[0][0], seg[0][1]);
      nseg = 1;
    } else {
      nseg = key_segments(p, part, i0, i0 + rows, klen, seg);
    }
    bool hit = false;
    for (int64_t sg = 0; sg < nseg; ++sg) hit = hit || (j0 + cols > seg[sg][0] && j0 < seg[sg][1]);
    if (!hit) return false;
    const int64_t kvh = bh / G;
    const float* Qt = w.Q + (bh * L + i0) * E;
    const float* dOt = w.dO + (bh * L + i0) * Ev;
    gemm(false, true, rows, cols, E, p.scale, Qt, E, w.K + (kvh * S + j0) * E, E, 0.0, b.P.data(), kBk);
    transform_tile(p, part, bh, ri, rows, cj, cols, klen, b.P.data(), kBk, p.softcap > 0 ? b.cg.data() : nullptr);
    for (int64_t r = 0; r < rows; ++r) {
      const float ls = w.LSE[bh * L + i0 + r];
      float* pr = b.P.data() + r * kBk;
      if (ls == kNegInf) {
        std::fill(pr, pr + cols, 0.0f);
      } else {
        for (int64_t c = 0; c < cols; ++c) pr[c] -= ls;
        exp_sub_sum(pr, cols, 0.0f);
      }
    }
    if (dropout)
      for (int64_t r = 0; r < rows; ++r) {
        dropout_scales(gen, p, bh, ri.at(r), cj, cols, b.Z.data() + r * kBk);
        for (int64_t c = 0; c < cols; ++c) b.Pd[r * kBk + c] = b.P[r * kBk + c] * b.Z[r * kBk + c];
      }
    // dP = dO V^T (* Z); dS = P * (dP - D)
    gemm(false, true, rows, cols, Ev, 1.0, dOt, Ev, w.V + (kvh * S + j0) * Ev, Ev, 0.0, b.dP.data(), kBk);
    for (int64_t r = 0; r < rows; ++r) {
      const float Di = w.D[bh * L + i0 + r];
      float* ds = dSc && write_dscores ? dSc + (bh * L + ri.at(r)) * S + cj.start : nullptr;
      for (int64_t c = 0; c < cols; ++c) {
        float d = b.dP[r * kBk + c];
        if (dropout) d *= b.Z[r * kBk + c];
        d = b.P[r * kBk + c] * (d - Di);
        if (ds) ds[c * cj.step] += d;  // the two passes of a strided pattern meet in one tile
        if (p.softcap > 0) d *= b.cg[r * kBk + c];
        b.dP[r * kBk + c] = d;
      }
    }
    return true;
  };
  // dV += (P * Z)^T dO and dK += dS^T Q * scale for the tile.
  auto add_dkdv = [&](Buffers& b, int64_t bh, int64_t i0, int64_t rows, int64_t j0, int64_t cols) {
    const int64_t kvh = bh / G;
    gemm(true, false, cols, Ev, rows, 1.0, dropout ? b.Pd.data() : b.P.data(), kBk, w.dO + (bh * L + i0) * Ev, Ev,
         1.0, w.dV + (kvh * S + j0) * Ev, Ev);
    gemm(true, false, cols, E, rows, p.scale, b.dP.data(), kBk, w.Q + (bh * L + i0) * E, E, 1.0,
         w.dK + (kvh * S + j0) * E, E);
  };
  // dQ += dS K * scale for the tile.
  auto add_dq = [&](Buffers& b, int64_t bh, int64_t i0, int64_t rows, int64_t j0, int64_t cols) {
    gemm(false, false, rows, E, cols, p.scale, b.dP.data(), kBk, w.K + ((bh / G) * S + j0) * E, E, 1.0,
         w.dQ + (bh * L + i0) * E, E);
  };

  // Query and key tiles; a key tile meets only the query tiles of its group.
  // Banded patterns (causal, windows) take 64 x 64 tiles, which waste less
  // on the diagonal. Measured on 2 AMD EPYC cores (AVX-512) at (1, 8, 1024,
  // 64) and (1, 4, 2048, 64) causal, forward + backward ratio to SGEMM:
  // 128 x 256 0.622 / 0.707, 128 x 128 0.654 / 0.708, 64 x 128 0.672 / 0.731,
  // 64 x 64 0.685 / 0.752. The buffers stay kBq x kBk with leading dim kBk.
  const bool banded = p.banded();
  const int64_t bq = banded ? 64 : kBq, bk = banded ? 64 : kBk;
  const Tiles qt = make_tiles(gr ? &gr->qoff : nullptr, L, bq), kt = make_tiles(gr ? &gr->koff : nullptr, S, bk);
  const int64_t groups = static_cast<int64_t>(kt.off.size()) - 1;
  const int64_t nkt = static_cast<int64_t>(kt.start.size()), nqt = static_cast<int64_t>(qt.start.size());
  std::vector<int64_t> kgroup(static_cast<size_t>(nkt)), qgroup(static_cast<size_t>(nqt));
  for (int64_t r = 0; r < groups; ++r) {
    for (int64_t x = kt.off[r]; x < kt.off[r + 1]; ++x) kgroup[x] = r;
    for (int64_t x = qt.off[r]; x < qt.off[r + 1]; ++x) qgroup[x] = r;
  }
  if (BKV > 1) {
    // One task per (batch, kv head): it owns that head's dK and dV and the dQ
    // of the G query heads that read it, so nothing is reduced across tasks.
#pragma omp parallel if (!omp_in_parallel())
    {
      detail::DenormalGuard dg;
      Buffers b;
#pragma omp for schedule(dynamic, 1)
      for (int64_t kvh = 0; kvh < BKV; ++kvh)
        for (int64_t jt = 0; jt < nkt; ++jt)
          for (int64_t g = 0; g < G; ++g)
            for (int64_t it = qt.off[kgroup[jt]]; it < qt.off[kgroup[jt] + 1]; ++it) {
              const int64_t bh = kvh * G + g, i0 = qt.start[it], j0 = kt.start[jt];
              const int64_t rows = qt.len[it], cols = kt.len[jt];
              if (!tile_grad(b, bh, i0, rows, j0, cols, true)) continue;
              add_dkdv(b, bh, i0, rows, j0, cols);
              add_dq(b, bh, i0, rows, j0, cols);
            }
    }
  } else {
    // A single kv head (batch 1): one pass over key tiles for dK and dV, a
    // second over query tiles for dQ (recomputing P and dS), so both cores
    // work and every output still has exactly one writer. The choice depends
    // on the shape only, so results stay bit-identical at any thread count.
#pragma omp parallel if (!omp_in_parallel())
    {
      detail::DenormalGuard dg;
      Buffers b;
#pragma omp for schedule(dynamic, 1)
      for (int64_t jt = 0; jt < nkt; ++jt)
        for (int64_t g = 0; g < G; ++g)
          for (int64_t it = qt.off[kgroup[jt]]; it < qt.off[kgroup[jt] + 1]; ++it) {
            const int64_t i0 = qt.start[it], j0 = kt.start[jt], rows = qt.len[it], cols = kt.len[jt];
            if (tile_grad(b, g, i0, rows, j0, cols, true)) add_dkdv(b, g, i0, rows, j0, cols);
          }
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < G * nqt; ++t)
        for (int64_t jt = kt.off[qgroup[t % nqt]]; jt < kt.off[qgroup[t % nqt] + 1]; ++jt) {
          const int64_t g = t / nqt, it = t % nqt;
          const int64_t i0 = qt.start[it], j0 = kt.start[jt], rows = qt.len[it], cols = kt.len[jt];
          if (tile_grad(b, g, i0, rows, j0, cols, false)) add_dq(b, g, i0, rows, j0, cols);
        }
    }
  }
}

}  // namespace

void sdpa_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                   const Tensor& lse, const SdpaParams& p, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dscores) {
  const float* Q = q.data<float>();
  const float* K = k.data<float>();
  const float* V = v.data<float>();
  const float* O = out.data<float>();
  const float* dO = dout.data<float>();
  const float* LSE = lse.data<float>();
  float* dQ = dq.data<float>();
  float* dK = dk.data<float>();
  float* dV = dv.data<float>();
  float* dSc = dscores.defined() ? dscores.data<float>() : nullptr;
  const int64_t L = p.L, S = p.S, E = p.E, Ev = p.Ev;
  const int64_t BKV = p.BH / p.G;
  // D = rowsum(dO * O), (BH, L)
  std::vector<float> Dv(static_cast<size_t>(p.BH * L));
  detail::parallel_for(p.BH * L, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      double s = 0;
      for (int64_t x = 0; x < Ev; ++x) s += static_cast<double>(dO[r * Ev + x]) * O[r * Ev + x];
      Dv[r] = static_cast<float>(s);
    }
  });
  std::fill(dQ, dQ + p.BH * L * E, 0.0f);
  std::fill(dK, dK + BKV * S * E, 0.0f);
  std::fill(dV, dV + BKV * S * Ev, 0.0f);
  backward_pass({Q, K, V, dO, LSE, Dv.data(), dQ, dK, dV, nullptr}, p, Part::Local, dSc);
  if (p.stride <= 0 || L == 0 || S == 0) return;
  // The strided pass in the grouped layout, its gradients added back.
  const Groups gr = make_groups(p);
  const Grouped in = group_inputs(Q, K, V, p, gr);
  std::vector<float> dOg(static_cast<size_t>(p.BH * L * Ev)), LSEg(static_cast<size_t>(p.BH * L)),
      Dg(static_cast<size_t>(p.BH * L));
  gather_rows(dO, dOg.data(), p.BH, Ev, gr.qorig);
  gather_rows(LSE, LSEg.data(), p.BH, 1, gr.qorig);
  gather_rows(Dv.data(), Dg.data(), p.BH, 1, gr.qorig);
  std::vector<float> dQg(in.Q.size(), 0.0f), dKg(in.K.size(), 0.0f), dVg(in.V.size(), 0.0f);
  backward_pass({in.Q.data(), in.K.data(), in.V.data(), dOg.data(), LSEg.data(), Dg.data(), dQg.data(), dKg.data(),
                 dVg.data(), &gr},
                p, Part::Strided, dSc);
  scatter_add_rows(dQg.data(), dQ, p.BH, E, gr.qorig);
  scatter_add_rows(dKg.data(), dK, BKV, E, gr.korig);
  scatter_add_rows(dVg.data(), dV, BKV, Ev, gr.korig);
}

void sdpa_probs(const Tensor& q, const Tensor& k, const Tensor& lse, const SdpaParams& p, const Tensor& probs,
                bool average_heads) {
  const float* Q = q.data<float>();
  const float* K = k.data<float>();
  const float* LSE = lse.data<float>();
  float* Pr = probs.data<float>();
  const int64_t L = p.L, S = p.S;
  const int64_t qblocks = (L + kBq - 1) / kBq;
  // A task owns rows of the output: (bh, query block), or (batch, query
  // block) looping over the batch's heads when averaging.
  const int64_t heads = average_heads ? p.Hq : 1, tasks = p.BH / heads * qblocks;
  const float inv_heads = 1.0f / static_cast<float>(heads);
  const Tensor kt = pack_kt(K, p);
  const int64_t kw = kt_width(p), ktiles = (S + kw - 1) / kw;
#pragma omp parallel if (tasks > 1 && !omp_in_parallel())
  {
    detail::DenormalGuard dg;
    std::vector<float> tile(kBq * kBk);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t ob = t / qblocks, i0 = (t % qblocks) * kBq, rows = std::min(kBq, L - i0);
      float* out = Pr + (ob * L + i0) * S;  // rows x S, owned by this task
      std::fill(out, out + rows * S, 0.0f);
      for (int64_t hh = 0; hh < heads; ++hh) {
        const int64_t bh = ob * heads + hh;
        const float* KTh = kt.data<float>() + (bh / p.G) * ktiles * p.E * kw;
        const int64_t klen = key_length(p, bh);
        int64_t seg[2][2];
        const int64_t nseg = key_segments(p, Part::All, i0, i0 + rows, klen, seg);
        for (int64_t sg = 0; sg < nseg; ++sg)
        for (int64_t j0 = seg[sg][0], jhi = seg[sg][1]; j0 < jhi; j0 += kBk) {
          const int64_t cols = std::min(kBk, jhi - j0);
          float* s = heads == 1 ? out + j0 : tile.data();  // averaging sums through a tile
          const int64_t lds = heads == 1 ? S : kBk;
          packed_scores(p, Q + (bh * L + i0) * p.E, p.E, KTh, rows, j0, cols, s, lds);
          transform_tile(p, Part::All, bh, Axis{i0, 1}, rows, Axis{j0, 1}, cols, klen, s, lds, nullptr);
          for (int64_t r = 0; r < rows; ++r) {
            float* sr = s + r * lds;
            const float ls = LSE[bh * L + i0 + r];
            if (ls == kNegInf) {
              if (heads == 1) std::fill(sr, sr + cols, 0.0f);
              continue;
            }
            exp_sub_sum(sr, cols, ls);
            if (heads > 1) {
              float* o = out + r * S + j0;
              for (int64_t c = 0; c < cols; ++c) o[c] += sr[c];
            }
          }
        }
      }
      if (heads > 1)
        for (int64_t x = 0; x < rows * S; ++x) out[x] *= inv_heads;
    }
  }
}

}  // namespace attn::kernels::cpu
