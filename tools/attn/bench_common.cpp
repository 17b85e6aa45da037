// Shared benchmark helpers (see bench_common.h).
#include "bench_common.h"

#include <attn/attn.h>
#include <nlohmann/json.hpp>
#include <cblas.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace attn::tools {

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

double sgemm_gflops(int min_reps, double min_seconds) {
  Generator g(1);
  Tensor a = randn({2048, 2048}, kFloat32, &g), b = randn({2048, 2048}, kFloat32, &g), c = empty({2048, 2048});
  const double ms = median_ms(
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2048, 2048, 2048, 1.0f, a.data<float>(), 2048,
                    b.data<float>(), 2048, 0.0f, c.data<float>(), 2048);
      },
      min_reps, min_seconds);
  return 2.0 * 2048.0 * 2048.0 * 2048.0 / ms / 1e6;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

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
      std::fprintf(stderr, "bench: %s\n", e.what());
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

bool measure_rows(size_t n, CeilingTimer& ceilings, const std::function<Measured(size_t)>& measure, RowTimes& out) {
  out.got.assign(n, Measured{});
  out.ok.assign(n, false);
  if (!ceilings.next()) return false;
  for (size_t i = 0; i < n; ++i) {
    out.ok[i] = in_child([&] { return measure(i); }, out.got[i]);
    if (!ceilings.next()) return false;
  }
  return true;
}

namespace {
// a in single quotes for /bin/sh, its own single quotes escaped
std::string shell_quote(const std::string& a) {
  std::string q = "'";
  for (char c : a) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  q += '\'';
  return q;
}
}  // namespace

std::map<std::string, double> run_timing_script(const ScriptRun& run, const std::vector<std::string>& row_keys,
                                                const std::function<std::string(const std::string&)>& key_of,
                                                std::string& why, const std::vector<std::string>& extra_args) {
  std::map<std::string, double> out;
  if (run.script.empty() || !std::ifstream(run.script)) {
    why = "the script " + (run.script.empty() ? std::string("for ") + run.what : run.script) + " was not found";
    return out;
  }
  std::string cmd = "'" + run.python + "' '" + run.script + "' --min-seconds " + std::to_string(run.min_seconds) +
                    " --min-reps " + std::to_string(run.min_reps) + " --threads " + std::to_string(get_num_threads());
  for (const auto& k : row_keys) cmd += " --row " + k;
  for (const auto& a : extra_args) {
    cmd += ' ';
    cmd += shell_quote(a);
  }
  cmd += " 2>&1";
  std::fflush(stdout);
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) {
    why = "could not run " + run.python;
    return out;
  }
  char line[4096];
  std::string rest;
  while (std::fgets(line, sizeof line, pipe.get())) {
    try {
      const std::string k = key_of(line);
      out[k] = nlohmann::json::parse(line).at("ms").get<double>();
    } catch (const std::exception&) {
      rest += line;
    }
  }
  if (out.empty()) why = run.what + " did not run: " + (rest.size() > 300 ? rest.substr(0, 300) + "..." : rest);
  return out;
}

Machine machine() {
  Machine m{"unknown", simd_target(), blas_core()};
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) m.cpu = line.substr(line.find_first_not_of(" \t", colon + 1));
    break;
  }
  return m;
}

bool CeilingTimer::next() {
  Measured m;
  if (!in_child([&] { return Measured{sgemm_gflops(reps_, seconds_), 0}; }, m)) return false;
  times_.push_back(m.ms);  // GFLOPS, carried in the first field
  return true;
}

}  // namespace attn::tools
