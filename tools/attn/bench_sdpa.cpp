// Scaled-dot-product attention benchmark: median milliseconds per row,
// GFLOPS (forward 4*B*H*L*S*E, halved when causal; forward + backward counted
// as 3.5 x forward), the ratio to a 2048^3 OpenBLAS SGEMM timed in the same
// run, and the row's peak RSS (each row runs in its own child process).
#include "bench_sdpa.h"

#include <attn/attn.h>
#include <cblas.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

namespace attn::tools {

namespace {

double median_ms(const std::function<void()>& f, int min_reps, double min_seconds) {
  f();  // warm up
  std::vector<double> t;
  const auto start = std::chrono::steady_clock::now();
  while (static_cast<int>(t.size()) < min_reps ||
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < min_seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (t.size() >= 200) break;
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// OpenBLAS's own threaded cblas_sgemm on 2048^3: the machine's ceiling.
double sgemm_gflops(const SdpaBenchOptions& o) {
  Generator g(1);
  Tensor a = randn({2048, 2048}, kFloat32, &g), b = randn({2048, 2048}, kFloat32, &g), c = empty({2048, 2048});
  const double ms = median_ms(
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2048, 2048, 2048, 1.0f, a.data<float>(), 2048,
                    b.data<float>(), 2048, 0.0f, c.data<float>(), 2048);
      },
      o.min_reps, o.min_seconds);
  return 2.0 * 2048.0 * 2048.0 * 2048.0 / ms / 1e6;
}

struct Measured {
  double ms = 0, peak_rss_mb = 0;
};

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
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  m.peak_rss_mb = static_cast<double>(u.ru_maxrss) / 1024.0;
  return m;
}

// Forks, runs `f` in the child, reads its double result back through a pipe.
// The parent never starts OpenMP threads: libgomp is not fork-safe once its
// pool exists, so every measurement (the SGEMM ceiling too) runs in a child.
bool in_child(const std::function<Measured()>& f, Measured& out) {
  int fd[2];
  if (pipe(fd) != 0) return false;
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    close(fd[0]);
    Measured m{};
    try {
      m = f();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench sdpa: %s\n", e.what());
      _exit(1);
    }
    const ssize_t w = write(fd[1], &m, sizeof m);
    _exit(w == static_cast<ssize_t>(sizeof m) ? 0 : 1);
  }
  close(fd[1]);
  const ssize_t n = read(fd[0], &out, sizeof out);
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return n == static_cast<ssize_t>(sizeof out) && WIFEXITED(status) && WEXITSTATUS(status) == 0;
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
  if (!in_child([&] { return Measured{sgemm_gflops(o), 0}; }, ceiling)) {
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
