// The register-blocked tile product of the fused attention loops, and the
// packing of K^T it reads. The product is compiled for every SIMD target
// Highway can build here (SSE2 ... AVX-512) and the best one this CPU runs is
// chosen at the first call (see simd.cpp for what is reported).
// GCC 12 reports the _mm512_undefined_ps() inside its own AVX-512 shuffle
// intrinsics as "may be used uninitialized" when they are inlined into a
// function compiled for AVX-512 by target attribute (the portable build):
// a false positive in the compiler's header, silenced for this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention/tile_gemm.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#if HWY_ARCH_X86
#include <immintrin.h>
#endif

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

// Rows [c0, c0 + n) of K, floats [x0, x0 + w), transposed into d (rows
// `tile` apart): one element at a time (the edges of the blocks below).
HWY_INLINE void pack_block_scalar(const float* K, int64_t ldk, int64_t c0, int64_t n, int64_t x0, int64_t w,
                                  float* d, int64_t tile) {
  for (int64_t x = x0; x < x0 + w; ++x)
    for (int64_t c = c0; c < c0 + n; ++c) d[x * tile + c] = K[c * ldk + x];
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// 16 rows of 16 floats (src, rows lds apart) transposed into dst (rows ldd
// apart) in registers: 16 loads, 64 shuffles, 16 stores.
HWY_INLINE void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), e = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
  }
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 4; ++k) {
      t[8 * i + k] = _mm512_shuffle_f32x4(r[8 * i + k], r[8 * i + 4 + k], 0x88);
      t[8 * i + 4 + k] = _mm512_shuffle_f32x4(r[8 * i + k], r[8 * i + 4 + k], 0xdd);
    }
  for (int k = 0; k < 8; ++k) {
    r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
    r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xdd);
  }
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
}
constexpr int64_t kPackBlock = 16;
#elif HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2
// 8 rows of 8 floats transposed in registers.
HWY_INLINE void transpose8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    r[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
    r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
  }
  for (int k = 0; k < 4; ++k) {
    t[k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x20);
    t[4 + k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x31);
  }
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + i * ldd, t[i]);
}
constexpr int64_t kPackBlock = 8;
#else
constexpr int64_t kPackBlock = 0;  // element by element
#endif

// See pack_kt in parts.h. Square blocks of rows go through register
// transposes where the target has them: reading a weight panel from memory
// ran at 23 GB/s that way on AVX-512 against 11-16 element by element.
void PackKt(const float* K, int64_t S, int64_t E, int64_t ldk, int64_t tile, float* dst) {
  for (int64_t j0 = 0; j0 < S; j0 += tile) {
    const int64_t cols = std::min(tile, S - j0);
    float* d = dst + (j0 / tile) * E * tile;
    const float* Kt = K + j0 * ldk;
    int64_t c0 = 0;
    if constexpr (kPackBlock > 0) {
      for (; c0 + kPackBlock <= cols; c0 += kPackBlock) {
        int64_t x = 0;
        for (; x + kPackBlock <= E; x += kPackBlock) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
          transpose16(Kt + c0 * ldk + x, ldk, d + x * tile + c0, tile);
#elif HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2
          transpose8(Kt + c0 * ldk + x, ldk, d + x * tile + c0, tile);
#endif
        }
        pack_block_scalar(Kt, ldk, c0, kPackBlock, x, E - x, d, tile);
      }
    }
    // 16 keys at a time: their rows (16 x E) stay in L1 while each of the E
    // rows of the tile gets up to 16 consecutive floats
    for (; c0 < cols; c0 += 16) pack_block_scalar(Kt, ldk, c0, std::min<int64_t>(16, cols - c0), 0, E, d, tile);
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

HWY_EXPORT(PackKt);

void pack_kt(const float* K, int64_t S, int64_t E, int64_t ldk, int64_t tile, float* dst) {
  choose_simd_target();
  HWY_DYNAMIC_DISPATCH(PackKt)(K, S, E, ldk, tile, dst);
}

}  // namespace attn::kernels::cpu::parts
#endif  // HWY_ONCE
