// Internal helpers shared by the checkpoint readers: mapping a file, and the
// element conversions of the formats (float16 to float32, narrow integers to
// int64).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace attn::io::files {

// A file mapped copy-on-write (writes stay private to the process).
struct Mapped {
  const char* data = nullptr;
  size_t size = 0;
  std::shared_ptr<void> owner;  // unmaps when the last user lets go
};
// Maps `path`; on failure returns the reason in `error` and data == nullptr.
// An empty file maps to size 0 and no data, without an error.
Mapped map_file(const std::string& path, std::string& error);

// Writes the parts, in order, to a temporary file beside `path`, syncs it and
// renames it over `path`; attn::Error starting with `op` on any failure.
void write_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts, const char* op);

inline float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      uint32_t m = man;
      do {
        ++e;
        m <<= 1;
      } while (!(m & 0x400));
      bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// dst[i] = To(From at src + i * sizeof(From)), for unaligned little-endian src.
template <class From, class To>
void convert_copy(const char* src, To* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    From v;
    std::memcpy(&v, src + i * sizeof(From), sizeof(From));
    dst[i] = static_cast<To>(v);
  }
}

}  // namespace attn::io::files
