// Scaled-dot-product attention benchmark: median milliseconds per row,
// GFLOPS (forward 4*B*H*L*S*E, halved when causal; forward + backward counted
// as 3.5 x forward), the ratio to a 2048^3 OpenBLAS SGEMM timed in the same
// run, and the row's peak RSS (each row runs in its own child process).
#include "bench_sdpa.h"

#include "bench_common.h"

#include <attn/attn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

namespace attn::tools {

namespace {

// Runs in the child: times the row, returns ms and peak RSS.
Measured measure(const SdpaBenchRow& r, const SdpaBenchOptions& o) {
  Generator g(2);
  Tensor q = randn({r.B, r.H, r.L, r.E}, kFloat32, &g), k = randn({r.B, r.H, r.S, r.E}, kFloat32, &g);
  Tensor v = randn({r.B, r.H, r.S, r.E}, kFloat32, &g);
  F::SdpaOptions opt = F::SdpaOptions().is_causal(r.causal);
  Measured m;
  if (r.backward) {
    q.requires_grad_(true), k.requires_grad_(true), v.requires_grad_(true);
    Tensor gout = randn({r.B, r.H, r.L, r.E}, kFloat32, &g);
    m.ms = median_ms(
        [&] {
          Tensor out = F::scaled_dot_product_attention(q, k, v, opt);
          out.backward(gout);
          q.set_grad({}), k.set_grad({}), v.set_grad({});
        },
        o.min_reps, o.min_seconds);
  } else {
    NoGradGuard ng;
    m.ms = median_ms([&] { F::scaled_dot_product_attention(q, k, v, opt); }, o.min_reps, o.min_seconds);
  }
  m.peak_rss_mb = peak_rss_mb();
  return m;
}

}  // namespace

std::vector<SdpaBenchRow> standard_sdpa_rows() {
  std::vector<SdpaBenchRow> rows;
  const int64_t shapes[][3] = {{8, 512, 64}, {8, 1024, 64}, {8, 2048, 64}, {4, 4096, 64}, {2, 16384, 64}};
  for (bool bwd : {false, true})
    for (bool causal : {false, true})
      for (const auto& s : shapes) rows.push_back({1, s[0], s[1], s[1], s[2], causal, bwd});
  return rows;
}

int run_sdpa_bench(const SdpaBenchOptions& o) {
  const std::vector<SdpaBenchRow> rows = o.rows.empty() ? standard_sdpa_rows() : o.rows;
  Measured ceiling;
  if (!in_child([&] { return Measured{sgemm_gflops(o.min_reps, o.min_seconds), 0}; }, ceiling)) {
    std::fprintf(stderr, "bench sdpa: timing the SGEMM ceiling failed\n");
    return 1;
  }
  const double sg = ceiling.ms;  // GFLOPS, carried in the first field
  if (!o.json) {
    std::printf("scaled_dot_product_attention, float32, %d threads; SGEMM 2048^3 in this run: %.1f GFLOPS\n",
                get_num_threads(), sg);
    std::printf("%3s %3s %6s %6s %4s %-6s %-8s %10s %9s %7s %8s\n", "B", "H", "L", "S", "E", "causal", "pass", "ms",
                "GFLOPS", "ratio", "rss MB");
  }
  int failures = 0;
  for (const SdpaBenchRow& r : rows) {
    Measured m;
    if (!in_child([&] { return measure(r, o); }, m)) {
      std::fprintf(stderr, "bench sdpa: the row B=%lld H=%lld L=%lld failed\n", static_cast<long long>(r.B),
                   static_cast<long long>(r.H), static_cast<long long>(r.L));
      ++failures;
      continue;
    }
    double flops = 4.0 * r.B * r.H * r.L * r.S * r.E;
    if (r.causal) flops /= 2;
    if (r.backward) flops *= 3.5;
    const double gf = flops / m.ms / 1e6;
    const char* pass = r.backward ? "fwd+bwd" : "fwd";
    if (o.json)
      std::printf("{\"B\": %lld, \"H\": %lld, \"L\": %lld, \"S\": %lld, \"E\": %lld, \"causal\": %s, \"pass\": \"%s\", "
                  "\"ms\": %.3f, \"gflops\": %.2f, \"sgemm_gflops\": %.2f, \"ratio\": %.4f, \"peak_rss_mb\": %.1f}\n",
                  static_cast<long long>(r.B), static_cast<long long>(r.H), static_cast<long long>(r.L),
                  static_cast<long long>(r.S), static_cast<long long>(r.E), r.causal ? "true" : "false", pass, m.ms, gf,
                  sg, gf / sg, m.peak_rss_mb);
    else
      std::printf("%3lld %3lld %6lld %6lld %4lld %-6s %-8s %10.2f %9.1f %7.3f %8.1f\n", static_cast<long long>(r.B),
                  static_cast<long long>(r.H), static_cast<long long>(r.L), static_cast<long long>(r.S),
                  static_cast<long long>(r.E), r.causal ? "yes" : "no", pass, m.ms, gf, gf / sg, m.peak_rss_mb);
    std::fflush(stdout);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace attn::tools
