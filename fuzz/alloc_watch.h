// Heap watch for the fuzz targets: sanitizer malloc/free hooks keep the bytes
// live in this process and the peak since the last reset, so a target can
// check that parsing an input never holds more memory than a bound
// proportional to the input (a size claimed by a header but absent from the
// file must not be allocated).
#pragma once

#include <sanitizer/allocator_interface.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>

namespace attn::fuzz {

inline size_t g_live = 0, g_peak = 0;

inline void on_malloc(const volatile void*, size_t size) {
  g_live += size;
  if (g_live > g_peak) g_peak = g_live;
}
inline void on_free(const volatile void* p) {
  // The hooks see every thread's calls; the targets parse on one thread.
  g_live -= __sanitizer_get_allocated_size(const_cast<const void*>(p));
}

// Installs the hooks once; returns the live bytes now, which become the base
// of the peak measured until the next call of peak_since().
inline size_t watch_start() {
  static const bool installed = [] {
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    return true;
  }();
  (void)installed;
  g_peak = g_live;
  return g_live;
}

// Traps (a crash libFuzzer reports with the input) when the heap grew by more
// than `bound` bytes above `base` since watch_start().
inline void watch_check(size_t base, size_t bound, size_t input_size) {
  if (g_peak - base > bound) {
    std::fprintf(stderr, "fuzz: parsing %zu bytes held %zu bytes of heap at its peak (bound %zu)\n", input_size,
                 g_peak - base, bound);
    std::abort();
  }
}

}  // namespace attn::fuzz
