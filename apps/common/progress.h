// A training progress line: step / total, loss, throughput and ETA, redrawn
// in place on a terminal; on anything else (a pipe, a log file, CI) nothing
// is drawn, only the lines the caller prints itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace attn::apps {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "examples");
  // After step `step` (1-based) of `total`: loss and the examples processed in it.
  void update(int64_t step, double loss, int64_t examples);
  void finish();
  bool on_terminal() const { return tty_; }
  double seconds() const;

 private:
  std::string label_, unit_;
  int64_t total_, examples_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  double smoothed_ = 0;
  bool drawn_ = false;
};

}  // namespace attn::apps
