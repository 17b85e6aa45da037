// Helpers shared by the benchmarks: median timing, the in-run SGEMM ceiling,
// and running a measurement in a forked child (so peak RSS is the row's own).
#pragma once

#include <functional>

namespace attn::tools {

struct Measured {
  double ms = 0, peak_rss_mb = 0;
};

// Median milliseconds of f over at least min_reps calls and min_seconds (after one warm-up call).
double median_ms(const std::function<void()>& f, int min_reps, double min_seconds);
// GFLOPS of OpenBLAS's own threaded cblas_sgemm on 2048^3: the machine's ceiling.
double sgemm_gflops(int min_reps, double min_seconds);
// This process's peak RSS in MB.
double peak_rss_mb();
// Forks, runs f in the child and reads its result back through a pipe. The
// parent must never start OpenMP threads: libgomp is not fork-safe once its
// pool exists, so every measurement (the SGEMM ceiling too) runs in a child.
bool in_child(const std::function<Measured()>& f, Measured& out);

}  // namespace attn::tools
