#include "common/progress.h"

#include <unistd.h>

#include <cstdio>

namespace attn::apps {

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t step, double loss, int64_t examples) {
  examples_ += examples;
  smoothed_ = step == 1 ? loss : 0.95 * smoothed_ + 0.05 * loss;
  if (!tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (step != total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double t = seconds(), rate = t > 0 ? static_cast<double>(examples_) / t : 0.0;
  const double eta = step > 0 ? t * static_cast<double>(total_ - step) / static_cast<double>(step) : 0.0;
  constexpr int kWidth = 24;
  const int filled = total_ > 0 ? static_cast<int>(kWidth * step / total_) : kWidth;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r%s [%s] %lld/%lld loss %.4f  %.0f %s/s  ETA %.0fs   ", label_.c_str(), bar.c_str(),
               static_cast<long long>(step), static_cast<long long>(total_), smoothed_, rate, unit_.c_str(), eta);
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace attn::apps
