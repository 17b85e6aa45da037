// Helpers shared by the benchmarks: median timing, the in-run SGEMM ceiling,
// and running a measurement in a forked child (so peak RSS is the row's own).
#pragma once

#include <algorithm>
#include <cmath>

#include <functional>
#include <map>
#include <string>
#include <vector>

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

// Runs a PyTorch timing script (bench/torch_*.py) with the given --row keys
// and the run's repetition settings; returns ms by row key, read from the JSON
// lines the script prints (keyed by key_of). Empty, with the reason in `why`,
// when the script or Python is missing or prints no row.
struct ScriptRun {
  std::string python, script, what;  // what: "PyTorch", "torchvision" (for messages)
  int min_reps = 5;
  double min_seconds = 1.0;
};
std::map<std::string, double> run_timing_script(const ScriptRun& run, const std::vector<std::string>& row_keys,
                                                const std::function<std::string(const std::string& json_line)>& key_of,
                                                std::string& why, const std::vector<std::string>& extra_args = {});

// The CPU's model name (/proc/cpuinfo), the SIMD target of attn's kernels and
// OpenBLAS's kernel, for every row of a benchmark.
struct Machine {
  std::string cpu, simd, blas;
};
Machine machine();

// The SGEMM ceiling timed around each row, in a child before the first row
// and after every row: row i gets ceilings i (before) and i + 1 (after), their
// mean as the ceiling its ratio is taken against, and is flagged noisy when
// the two differ by more than 10% (the load on the machine changed while it
// ran). A load change during a run then shows in the rows it touched instead
// of shifting every ratio.
struct Ceiling {
  double before = 0, after = 0;
  double gflops() const { return 0.5 * (before + after); }
  bool noisy() const { return std::abs(before - after) > 0.1 * std::max(before, after); }
};
class CeilingTimer {
 public:
  CeilingTimer(int min_reps, double min_seconds) : reps_(min_reps), seconds_(min_seconds) {}
  // Times the SGEMM once more; false when the child failed.
  bool next();
  // The ceilings around row i (after next() has been called i + 2 times).
  Ceiling around(size_t i) const { return {times_.at(i), times_.at(i + 1)}; }
  double first() const { return times_.empty() ? 0 : times_.front(); }

 private:
  int reps_;
  double seconds_;
  std::vector<double> times_;
};

// Measures n rows, each in its own child, the ceiling timed before the first
// and after every row. ok[i] says whether row i ran; false when a ceiling
// could not be timed (the rows after it are not run).
struct RowTimes {
  std::vector<Measured> got;
  std::vector<bool> ok;
};
bool measure_rows(size_t n, CeilingTimer& ceilings, const std::function<Measured(size_t)>& measure, RowTimes& out);

}  // namespace attn::tools
