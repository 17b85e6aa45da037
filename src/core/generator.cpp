// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
#include "attn/generator.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "attn/error.h"

namespace attn {

namespace {
thread_local BatchShard g_shard;
}

const BatchShard& batch_shard() { return g_shard; }

BatchShardGuard::BatchShardGuard(int64_t begin, int64_t rows, int64_t total) : prev_(g_shard) {
  ATTN_CHECK(rows > 0 && begin >= 0 && begin + rows <= total, "BatchShardGuard: rows [", begin, ", ", begin + rows,
             ") must lie within a batch of ", total);
  g_shard = {begin, rows, total};
}

BatchShardGuard::~BatchShardGuard() { g_shard = prev_; }

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kM0) * c[0];
    uint64_t p1 = static_cast<uint64_t>(kM1) * c[2];
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kW0;
    k[1] += kW1;
  }
  return c;
}

std::array<uint32_t, 4> Generator::block(uint64_t counter, uint32_t stream) const {
  return philox4x32({static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), stream, 0},
                    {static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)});
}

#if defined(__AVX2__)
namespace {
// 32 x 32 -> 64-bit products of 8 lanes by m: (hi, lo) words.
inline void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);                          // lanes 0, 2, 4, 6
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);    // lanes 1, 3, 5, 7
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}
}  // namespace
#endif

void Generator::blocks(uint64_t first, int64_t n, uint32_t* words, uint32_t stream) const {
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m256i w0 = _mm256_set1_epi32(static_cast<int>(0x9E3779B9u));
  const __m256i w1 = _mm256_set1_epi32(static_cast<int>(0xBB67AE85u));
  for (; i + 8 <= n; i += 8) {
    alignas(32) uint32_t lo[8], hi[8];
    for (int l = 0; l < 8; ++l) {
      const uint64_t c = first + static_cast<uint64_t>(i + l);
      lo[l] = static_cast<uint32_t>(c);
      hi[l] = static_cast<uint32_t>(c >> 32);
    }
    __m256i c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));
    __m256i c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
    __m256i c2 = _mm256_set1_epi32(static_cast<int>(stream));
    __m256i c3 = _mm256_setzero_si256();
    __m256i k0 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(seed_)));
    __m256i k1 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(seed_ >> 32)));
    for (int round = 0; round < 10; ++round) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo8(c0, m0, hi0, lo0);
      mulhilo8(c2, m1, hi1, lo1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), k0);
      c1 = lo1;
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), k1);
      c3 = lo0;
      k0 = _mm256_add_epi32(k0, w0);
      k1 = _mm256_add_epi32(k1, w1);
    }
    // Interleave the four word vectors into blocks: words[4 * l + w].
    const __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
    const __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
    const __m256i b0 = _mm256_unpacklo_epi64(t0, t2), b1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i b2 = _mm256_unpacklo_epi64(t1, t3), b3 = _mm256_unpackhi_epi64(t1, t3);
    // b0 = blocks (0, 4), b1 = (1, 5), b2 = (2, 6), b3 = (3, 7) by 128-bit half
    __m256i* out = reinterpret_cast<__m256i*>(words + 4 * i);
    _mm256_storeu_si256(out + 0, _mm256_permute2x128_si256(b0, b1, 0x20));
    _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(b2, b3, 0x20));
    _mm256_storeu_si256(out + 2, _mm256_permute2x128_si256(b0, b1, 0x31));
    _mm256_storeu_si256(out + 3, _mm256_permute2x128_si256(b2, b3, 0x31));
  }
#endif
  for (; i < n; ++i) {
    const auto w = block(first + static_cast<uint64_t>(i), stream);
    for (int x = 0; x < 4; ++x) words[4 * i + x] = w[x];
  }
}

Generator& default_generator() {
  static Generator g(0x5eed);
  return g;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace attn
