// The register-blocked tile product of the fused attention loops, and the
// packing of K^T it reads. The product is compiled for every SIMD target
// Highway can build here (SSE2 ... AVX-512) and the best one this CPU runs is
// chosen at the first call (see simd.cpp for what is reported).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention/tile_gemm.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>

#include "kernels/cpu/attention/parts.h"
#include "kernels/cpu/kernels.h"

HWY_BEFORE_NAMESPACE();
namespace attn::kernels::cpu::parts {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// C (M, N) = alpha * A (M, K) @ B (K, N) (+ C when accumulate), row-major,
// register-blocked: MR rows x NV vectors of accumulators, A broadcast, B
// loaded. For the attention tiles (K = 64 or 256, N = 64 or 256) this runs
// faster than the BLAS available here, whose kernel on this CPU is AVX2.
constexpr int kNV = HWY_LANES(float) >= 16 ? 4 : 2;  // vectors per column chunk
constexpr int kMR = 6;                              // rows per register block

// The first n lanes from p, the rest zero, and their store: AVX2 and AVX-512
// mask the memory access itself; other targets go through a local buffer
// (their masked forms may touch memory past p + n).
template <class D>
HWY_INLINE hn::Vec<D> load_first(D d, const float* p, int64_t n) {
#if HWY_TARGET <= HWY_AVX2
  return hn::MaskedLoad(hn::FirstN(d, static_cast<size_t>(n)), d, p);
#else
  HWY_ALIGN float buf[hn::MaxLanes(d)] = {};
  std::copy(p, p + n, buf);
  return hn::Load(d, buf);
#endif
}
template <class D>
HWY_INLINE void store_first(D d, hn::Vec<D> v, float* p, int64_t n) {
#if HWY_TARGET <= HWY_AVX2
  hn::BlendedStore(v, hn::FirstN(d, static_cast<size_t>(n)), d, p);
#else
  HWY_ALIGN float buf[hn::MaxLanes(d)];
  hn::Store(v, d, buf);
  std::copy(buf, buf + n, p);
#endif
}

// MR rows x NV vectors of C; ncols <= NV lanes-wide (a narrower chunk, the
// last of a row, runs with only the vectors it needs: 5 keys cost one vector,
// not kNV). kPartial: the last vector has fewer than all lanes. One k loop
// per instantiation, and every index in it and in the epilogue a constant:
// with two loops, or a runtime column count per vector, GCC stored every
// accumulator to the stack on each k step.
template <int MR, int NV, bool kPartial>
HWY_INLINE void micro_kernel(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                             int64_t K, float alpha, bool accumulate, int64_t ncols) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  using V = decltype(hn::Zero(d));
  const int64_t last = ncols - (NV - 1) * N;  // 1 .. N columns in the last vector
#if HWY_TARGET <= HWY_AVX2
  const auto first = hn::FirstN(d, static_cast<size_t>(last));
#endif
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = hn::Zero(d);
  for (int64_t k = 0; k < K; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) {
      const float* p = B + k * ldb + v * N;
      if (!kPartial || v + 1 < NV)
        b[v] = hn::LoadU(d, p);
      else
#if HWY_TARGET <= HWY_AVX2
        b[v] = hn::MaskedLoad(first, d, p);
#else
        b[v] = load_first(d, p, last);
#endif
    }
    for (int r = 0; r < MR; ++r) {
      const V a = hn::Set(d, A[r * lda + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = hn::MulAdd(a, b[v], acc[r][v]);
    }
  }
  const V va = hn::Set(d, alpha);
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      float* c = C + r * ldc + v * N;
      V x = hn::Mul(acc[r][v], va);
      if (!kPartial || v + 1 < NV) {
        if (accumulate) x = hn::Add(x, hn::LoadU(d, c));
        hn::StoreU(x, d, c);
      } else {
        if (accumulate) x = hn::Add(x, load_first(d, c, last));
        store_first(d, x, c, last);
      }
    }
}

// Rows [0, M) of one column chunk of width n (<= NV vectors): kMR rows at a
// time, then the remainder.
template <int NV, bool kPartial>
HWY_INLINE void column_chunk_rows(int64_t M, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                                  int64_t ldb, bool accumulate, float* C, int64_t ldc, int64_t n) {
  int64_t r = 0;
  for (; r + kMR <= M; r += kMR)
    micro_kernel<kMR, NV, kPartial>(A + r * lda, lda, B, ldb, C + r * ldc, ldc, K, alpha, accumulate, n);
  const float* Ar = A + r * lda;
  float* Cr = C + r * ldc;
  switch (M - r) {
    case 5: micro_kernel<5, NV, kPartial>(Ar, lda, B, ldb, Cr, ldc, K, alpha, accumulate, n); break;
    case 4: micro_kernel<4, NV, kPartial>(Ar, lda, B, ldb, Cr, ldc, K, alpha, accumulate, n); break;
    case 3: micro_kernel<3, NV, kPartial>(Ar, lda, B, ldb, Cr, ldc, K, alpha, accumulate, n); break;
    case 2: micro_kernel<2, NV, kPartial>(Ar, lda, B, ldb, Cr, ldc, K, alpha, accumulate, n); break;
    case 1: micro_kernel<1, NV, kPartial>(Ar, lda, B, ldb, Cr, ldc, K, alpha, accumulate, n); break;
    default: break;
  }
}

// Rows [0, M) of one column chunk of width n (NV vectors, the last one full
// or not).
template <int NV>
HWY_INLINE void column_chunk(int64_t M, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                             int64_t ldb, bool accumulate, float* C, int64_t ldc, int64_t n) {
  if (n == NV * static_cast<int64_t>(hn::Lanes(hn::ScalableTag<float>())))
    column_chunk_rows<NV, false>(M, K, alpha, A, lda, B, ldb, accumulate, C, ldc, n);
  else
    column_chunk_rows<NV, true>(M, K, alpha, A, lda, B, ldb, accumulate, C, ldc, n);
}

void TileGemm(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
               bool accumulate, float* C, int64_t ldc) {
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(hn::ScalableTag<float>()));
  const int64_t cw = kNV * lanes;
  for (int64_t c0 = 0; c0 < N; c0 += cw) {
    const int64_t n = std::min(cw, N - c0);
    const int64_t nv = (n + lanes - 1) / lanes;
    if (nv >= kNV)
      column_chunk<kNV>(M, K, alpha, A, lda, B + c0, ldb, accumulate, C + c0, ldc, n);
    else if (nv == 3)
      column_chunk<3>(M, K, alpha, A, lda, B + c0, ldb, accumulate, C + c0, ldc, n);
    else if (nv == 2)
      column_chunk<2>(M, K, alpha, A, lda, B + c0, ldb, accumulate, C + c0, ldc, n);
    else
      column_chunk<1>(M, K, alpha, A, lda, B + c0, ldb, accumulate, C + c0, ldc, n);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn::kernels::cpu::parts
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn::kernels::cpu::parts {

HWY_EXPORT(TileGemm);

void tile_gemm(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
               bool accumulate, float* C, int64_t ldc) {
  choose_simd_target();
  HWY_DYNAMIC_DISPATCH(TileGemm)(M, N, K, alpha, A, lda, B, ldb, accumulate, C, ldc);
}

void pack_kt(const float* K, int64_t S, int64_t E, int64_t ldk, int64_t tile, float* dst) {
  for (int64_t j0 = 0; j0 < S; j0 += tile) {
    const int64_t cols = std::min(tile, S - j0);
    float* d = dst + (j0 / tile) * E * tile;
    // 16 keys at a time: their rows (16 x E) stay in L1 while each of the E
    // rows of the tile gets 16 consecutive floats
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const int64_t c1 = std::min(cols, c0 + 16);
      for (int64_t x = 0; x < E; ++x)
        for (int64_t c = c0; c < c1; ++c) d[x * tile + c] = K[(j0 + c) * ldk + x];
    }
  }
}

}  // namespace attn::kernels::cpu::parts
#endif  // HWY_ONCE
