// SDPA dropout: the keep / drop draw of every (bh, i, j) from the counter-
// based generator (4 keys per block of 128 random bits), so the forward, the
// backward and sdpa_dropout_mask agree on every element, in any order.
#include <vector>

#include "kernels/cpu/attention/pattern.h"
#include "kernels/cpu/loop.h"

namespace attn::kernels::cpu {

void sdpa_dropout_row(const Generator& gen, uint64_t offset, int64_t bh, int64_t i, int64_t j0, int64_t n,
                      int64_t L, int64_t S, double keep, float scale, float* out) {
  if (n <= 0) return;
  const int64_t b0 = j0 / 4, nb = (j0 + n - 1) / 4 - b0 + 1;
  const uint64_t first = offset + (static_cast<uint64_t>(bh) * L + i) * static_cast<uint64_t>((S + 3) / 4) + b0;
  constexpr int64_t kMax = 256;  // blocks per draw
  alignas(32) uint32_t words[4 * kMax];
  for (int64_t c0 = 0; c0 < nb; c0 += kMax) {
    const int64_t m = std::min(kMax, nb - c0);
    gen.blocks(first + static_cast<uint64_t>(c0), m, words, /*stream=*/1);
    const int64_t jlo = std::max(j0, 4 * (b0 + c0)), jhi = std::min(j0 + n, 4 * (b0 + c0 + m));
    for (int64_t j = jlo; j < jhi; ++j) {
      const uint32_t w = words[j - 4 * (b0 + c0)];
      out[j - j0] = (static_cast<double>(w) + 1.0) * (1.0 / 4294967296.0) <= keep ? scale : 0.0f;
    }
  }
}

void sdpa_dropout_mask(const Tensor& out, double keep, uint64_t seed, uint64_t offset) {
  const int64_t BH = out.size(0), L = out.size(1), S = out.size(2);
  Generator g(seed);
  const float scale = static_cast<float>(keep > 0 ? 1.0 / keep : 0.0);
  dispatch_float(out.dtype(), "sdpa_dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* po = out.data<T>();
    detail::parallel_for(BH * L, 16, [&](int64_t b, int64_t e) {
      std::vector<float> row(static_cast<size_t>(S));
      for (int64_t r = b; r < e; ++r) {
        sdpa_dropout_row(g, offset, r / L, r % L, 0, S, L, S, keep, scale, row.data());
        for (int64_t j = 0; j < S; ++j) po[r * S + j] = static_cast<T>(row[j]);
      }
    });
  });
}

namespace parts {

// Dropout multipliers (1/keep or 0) of row (bh, i) for keys cj.at(0..n).
void dropout_scales(const Generator& g, const SdpaParams& p, int64_t bh, int64_t i, Axis cj, int64_t n, float* out) {
  const float scale = static_cast<float>(1.0 / p.keep);
  if (cj.step == 1) return sdpa_dropout_row(g, p.offset, bh, i, cj.start, n, p.L, p.S, p.keep, scale, out);
  for (int64_t x = 0; x < n; ++x)
    out[x] = sdpa_dropout_keep(g, p.offset, bh, i, cj.at(x), p.L, p.S, p.keep) ? scale : 0.0f;
}

}  // namespace parts

}  // namespace attn::kernels::cpu
