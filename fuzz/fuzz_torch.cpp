// libFuzzer target: attn::io::parse_torch (a torch.save zip archive and its
// pickle) on arbitrary bytes. Each input loads or throws an attn::Error that
// names the reader and the file; every tensor it returns is read whole (ASan
// checks the reads); the heap held at the parse's peak stays under
// kHeapPerByte bytes per input byte plus kHeapSlack. The bound is set by
// deflated entries, which may expand 1032x (torch.save stores its entries;
// a stored entry is bounded by the file, 8x after widening int8 to int64).
#include <attn/attn.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "alloc_watch.h"

namespace {
constexpr size_t kHeapPerByte = 1100;
constexpr size_t kHeapSlack = size_t{1} << 20;

double touch(const attn::Tensor& t) {
  const attn::Tensor c = t.contiguous();
  const auto* bytes = static_cast<const unsigned char*>(c.raw_data());
  double s = 0;
  for (size_t i = 0, n = static_cast<size_t>(c.numel()) * c.itemsize(); i < n; ++i) s += bytes[i];
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t base = attn::fuzz::watch_start();
  try {
    attn::io::TorchFile f = attn::io::parse_torch(data, size, "input");
    attn::fuzz::watch_check(base, kHeapPerByte * size + kHeapSlack, size);
    volatile double sink = 0;
    for (const auto& [name, t] : f.tensors) sink = sink + touch(t);
    for (const auto& [k, v] : f.values) sink = sink + static_cast<double>(k.size() + v.size());
  } catch (const attn::Error& e) {
    attn::fuzz::watch_check(base, kHeapPerByte * size + kHeapSlack, size);
    // A malformed file is named for what is wrong: "load_torch: input: <what>".
    if (std::strncmp(e.what(), "load_torch: input: ", 19) != 0 || std::strlen(e.what()) <= 19) {
      std::fprintf(stderr, "fuzz: unexpected error text: %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}
