// Internal: the OpenMP pool. parallel_for splits [0, n) into contiguous
// ranges, one per thread (static, so a given thread count always splits the
// same way), with flush-to-zero and denormals-are-zero set in every worker
// for the duration of the region.
#pragma once

#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>

namespace attn::detail {

// Sets FTZ and DAZ for its scope and restores the caller's MXCSR after.
class DenormalGuard {
 public:
  DenormalGuard() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~DenormalGuard() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
};

// f(begin, end) over [0, n), in parallel when n >= grain and not already
// inside a parallel region.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  const int threads = omp_get_max_threads();
  if (threads <= 1 || n < grain || omp_in_parallel()) {
    DenormalGuard g;
    f(int64_t{0}, n);
    return;
  }
  const int64_t tasks = std::min<int64_t>(threads, (n + grain - 1) / std::max<int64_t>(grain, 1));
#pragma omp parallel num_threads(static_cast<int>(tasks))
  {
    DenormalGuard g;
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) f(begin, end);
  }
}

}  // namespace attn::detail
