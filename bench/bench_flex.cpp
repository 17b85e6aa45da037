// flex_attention beside the built-in fused SDPA on the same attention:
// a causal mask_mod against is_causal, an ALiBi score_mod against
// alibi_slopes (16 keys per call, and per key), and document masking (8
// documents, with its block mask) against dense attention; forward and
// forward + backward, median of reps. `attn bench sdpa --flex` gives the
// same comparisons with GFLOPS, the SGEMM ratio and peak memory.
//
//   build/bin/bench_flex [--seq N] [--heads H] [--dim E] [--reps R]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "attn/attn.h"
#include "attn/flex.h"

namespace {

using namespace attn;
namespace F = attn::nn::functional;
namespace flex = attn::nn::functional::flex;
using Clock = std::chrono::steady_clock;

template <class Fn>
std::pair<double, double> time_it(int reps, Tensor q, Tensor k, Tensor v, Fn&& f) {
  std::vector<double> fwd, both;
  q.requires_grad_(), k.requires_grad_(), v.requires_grad_();
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    Tensor out = f(q, k, v);
    const double a = std::chrono::duration<double>(Clock::now() - t0).count();
    out.sum().backward();
    both.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    fwd.push_back(a);
    q.set_grad({}), k.set_grad({}), v.set_grad({});
  }
  std::sort(fwd.begin(), fwd.end());
  std::sort(both.begin(), both.end());
  return {fwd[fwd.size() / 2], both[both.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  int64_t N = 2048, H = 4, E = 64;
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int64_t x = std::stoll(argv[i + 1]);
    if (a == "--seq") N = x;
    else if (a == "--heads") H = x;
    else if (a == "--dim") E = x;
    else if (a == "--reps") reps = static_cast<int>(x);
  }
  Generator g(1);
  Tensor q = randn({1, H, N, E}, {}, &g), k = randn({1, H, N, E}, {}, &g), v = randn({1, H, N, E}, {}, &g);
  Tensor slopes = F::alibi_slopes(H);
  flex::Captured sl(slopes);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < N; ++i) ids.push_back(i * 8 / N);
  flex::Captured doc(from_vector(ids, {N}));
  // Modifiers on 16 keys per call, and the ALiBi one called per key.
  auto causal = flex::vectorized([](auto, auto, auto i, auto j) { return j <= i; });
  auto alibi = flex::vectorized([sl](auto s, auto, auto h, auto i, auto j) {
    using std::abs;
    return s - sl(h) * abs(i - j);
  });
  auto alibi_per_key = [sl](auto s, int64_t, int64_t h, int64_t i, int64_t j) {
    return s - sl(h) * static_cast<double>(i > j ? i - j : j - i);
  };
  auto same_doc = flex::vectorized([doc](auto, auto, auto i, auto j) { return doc(i) == doc(j); });
  const flex::BlockMask bc = flex::create_block_mask(causal, 1, 1, N, N);
  const flex::BlockMask bd = flex::create_block_mask(same_doc, 1, 1, N, N);
  std::printf("flex_attention beside the fused SDPA, (1, %lld, %lld, %lld) float32, %d threads; median of %d\n",
              static_cast<long long>(H), static_cast<long long>(N), static_cast<long long>(E), get_num_threads(), reps);
  std::printf("%-34s %12s %12s %12s %12s\n", "row", "fwd (ms)", "fwd+bwd (ms)", "built-in fwd", "built-in f+b");
  auto row = [&](const char* name, std::pair<double, double> flex_t, std::pair<double, double> ref_t) {
    std::printf("%-34s %12.1f %12.1f %12.1f %12.1f   flex/built-in: %.3f fwd, %.3f f+b\n", name, flex_t.first * 1e3,
                flex_t.second * 1e3, ref_t.first * 1e3, ref_t.second * 1e3, ref_t.first / flex_t.first,
                ref_t.second / flex_t.second);
  };
  row("causal mask_mod (block mask)",
      time_it(reps, q, k, v, [&](auto a, auto b, auto c) { return F::flex_attention(a, b, c, flex::identity, causal, F::FlexOptions().block_mask(&bc)); }),
      time_it(reps, q, k, v, [&](auto a, auto b, auto c) { return F::scaled_dot_product_attention(a, b, c, F::SdpaOptions().is_causal(true)); }));
  row("alibi score_mod",
      time_it(reps, q, k, v, [&](auto a, auto b, auto c) { return F::flex_attention(a, b, c, alibi); }),
      time_it(reps, q, k, v, [&](auto a, auto b, auto c) { return F::scaled_dot_product_attention(a, b, c, F::SdpaOptions().alibi_slopes(slopes)); }));
  row("alibi score_mod, per key",
      time_it(reps, q, k, v, [&](auto a, auto b, auto c) { return F::flex_attention(a, b, c, alibi_per_key); }),
      time_it(reps, q, k, v, [&](auto a, auto b, auto c) { return F::scaled_dot_product_attention(a, b, c, F::SdpaOptions().alibi_slopes(slopes)); }));
  row("8 documents (block mask) vs dense",
      time_it(reps, q, k, v, [&](auto a, auto b, auto c) { return F::flex_attention(a, b, c, flex::identity, same_doc, F::FlexOptions().block_mask(&bd)); }),
      time_it(reps, q, k, v, [&](auto a, auto b, auto c) { return F::scaled_dot_product_attention(a, b, c); }));
  return 0;
}
