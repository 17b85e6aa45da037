// attn::matmul against a raw OpenBLAS cblas_sgemm (OpenBLAS's own threading)
// on the same float32 operands, in the same run: median times over repeats,
// GFLOPS, attn's overhead, and peak RSS.
//
//   build/bin/bench_matmul [--reps N] [--json]
#include <attn/attn.h>
#include <cblas.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

double median_ms(int reps, const std::function<void()>& f) {
  f();  // warm up
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 15;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_matmul [--reps N] [--json]\n");
      return 2;
    }
  }
  const int threads = attn::get_num_threads();
  if (!json)
    std::printf("matmul, float32, %d threads, median of %d runs; raw = cblas_sgemm with OpenBLAS's threading\n"
                "%6s %6s %6s %10s %10s %10s %10s %9s %9s\n",
                threads, reps, "M", "N", "K", "raw ms", "attn ms", "raw GF/s", "attn GF/s", "attn/raw", "rss MB");
  const std::vector<std::array<int64_t, 3>> shapes = {{256, 256, 256},    {512, 512, 512}, {1024, 1024, 1024},
                                                     {2048, 2048, 2048}, {4096, 1024, 64}, {8192, 64, 1024}};
  attn::Generator gen(1);
  for (auto [M, N, K] : shapes) {
    attn::Tensor a = attn::randn({M, K}, attn::kFloat32, &gen), b = attn::randn({K, N}, attn::kFloat32, &gen);
    attn::Tensor c = attn::empty({M, N});
    const float* pa = a.data<float>();
    const float* pb = b.data<float>();
    float* pc = c.data<float>();
    const double raw = median_ms(reps, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(M), static_cast<int>(N),
                  static_cast<int>(K), 1.0f, pa, static_cast<int>(K), pb, static_cast<int>(N), 0.0f, pc,
                  static_cast<int>(N));
    });
    attn::NoGradGuard ng;
    const double ours = median_ms(reps, [&] { attn::Tensor r = attn::matmul(a, b); });
    const double gf = 2.0 * static_cast<double>(M) * N * K / 1e6;
    if (json)
      std::printf("{\"M\": %lld, \"N\": %lld, \"K\": %lld, \"threads\": %d, \"raw_ms\": %.4f, \"attn_ms\": %.4f, "
                  "\"raw_gflops\": %.2f, \"attn_gflops\": %.2f, \"ratio\": %.4f, \"peak_rss_mb\": %.1f}\n",
                  static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K), threads, raw, ours,
                  gf / raw, gf / ours, raw / ours, peak_rss_mb());
    else
      std::printf("%6lld %6lld %6lld %10.3f %10.3f %10.1f %10.1f %9.3f %9.1f\n", static_cast<long long>(M),
                  static_cast<long long>(N), static_cast<long long>(K), raw, ours, gf / raw, gf / ours, raw / ours,
                  peak_rss_mb());
  }
  return 0;
}
