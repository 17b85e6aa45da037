// libFuzzer target: attn::io::parse_torch (a torch.save zip archive and its
// pickle) on arbitrary bytes. Each input loads or throws an attn::Error that
// names the reader and the file; every tensor it returns is read whole (ASan
// checks the reads); the heap held at the parse's peak stays under
// kHeapPerByte bytes per input byte plus kHeapSlack. The per-byte bound is set
// by deflated entries, which may expand 1032x (torch.save stores its entries;
// a stored entry is bounded by the file, 8x after widening int8 to int64); the
// slack by libzip, which sizes its entry table from the count the end of
// central directory declares (up to 65535 entries, 2 MiB) before checking it
// against the directory (found by this target).
#include <attn/attn.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "alloc_watch.h"

namespace {
constexpr size_t kHeapPerByte = 1100;
constexpr size_t kHeapSlack = size_t{4} << 20;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t base = attn::fuzz::watch_start();
  try {
    attn::io::TorchFile f = attn::io::parse_torch(data, size, "input");
    attn::fuzz::watch_check(base, kHeapPerByte * size + kHeapSlack, size);
    volatile double sink = 0;
    for (const auto& [name, t] : f.tensors) sink = sink + attn::fuzz::touch(t);
    for (const auto& [k, v] : f.values) sink = sink + static_cast<double>(k.size() + v.size());
  } catch (const attn::Error& e) {
    attn::fuzz::watch_check(base, kHeapPerByte * size + kHeapSlack, size);
    // A malformed file is named for what is wrong: "load_torch: input: <what>".
    attn::fuzz::expect_error_text(e.what(), "load_torch: input: ");
  }
  return 0;
}
