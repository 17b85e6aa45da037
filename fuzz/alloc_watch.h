// Shared by the fuzz targets: the heap watch, reading a result whole, and the
// error-text check. Heap watch: sanitizer malloc/free hooks keep the bytes
// live in this process and the peak since the last reset, so a target can
// check that parsing an input never holds more memory than a bound
// proportional to the input (a size claimed by a header but absent from the
// file must not be allocated).
#pragma once

#include <sanitizer/allocator_interface.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

// Reads every byte of a tensor (so ASan checks that its storage is there) and
// returns their sum, to be kept from the optimiser.
template <class Tensor>
double touch(const Tensor& t) {
  const Tensor c = t.contiguous();
  const auto* bytes = static_cast<const unsigned char*>(c.raw_data());
  double s = 0;
  for (size_t i = 0, n = static_cast<size_t>(c.numel()) * c.itemsize(); i < n; ++i) s += bytes[i];
  return s;
}

// Traps unless an error names the reader and the input: "<prefix><what>".
inline void expect_error_text(const char* what, const char* prefix) {
  const size_t n = std::strlen(prefix);
  if (std::strncmp(what, prefix, n) != 0 || std::strlen(what) <= n) {
    std::fprintf(stderr, "fuzz: unexpected error text: %s\n", what);
    std::abort();
  }
}

}  // namespace attn::fuzz
