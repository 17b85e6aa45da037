// libFuzzer target: attn::io::parse_safetensors on arbitrary bytes. Each
// input parses or throws an attn::Error that names the parser and the file;
// every tensor it returns is read whole (ASan checks the reads); the heap held
// at the parse's peak stays under kHeapPerByte bytes per input byte plus
// kHeapSlack (widening dtypes such as U8 -> int64 take 8 bytes per byte, and
// the JSON header's parse tree some more), never a size the header claims.
#include <attn/attn.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "alloc_watch.h"

namespace {
constexpr size_t kHeapPerByte = 64;
constexpr size_t kHeapSlack = size_t{1} << 20;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t base = attn::fuzz::watch_start();
  try {
    attn::io::SafetensorsFile f = attn::io::parse_safetensors(data, size, "input");
    attn::fuzz::watch_check(base, kHeapPerByte * size + kHeapSlack, size);
    volatile double sink = 0;
    for (const auto& [name, t] : f.tensors) {
      if (t.numel() < 0 || static_cast<size_t>(t.numel()) * t.itemsize() > 8 * size) std::abort();
      sink = sink + attn::fuzz::touch(t);
    }
    for (const auto& [k, v] : f.metadata) sink = sink + static_cast<double>(k.size() + v.size());
  } catch (const attn::Error& e) {
    attn::fuzz::watch_check(base, kHeapPerByte * size + kHeapSlack, size);
    // A malformed file is named for what is wrong: "load_safetensors: input: <what>".
    attn::fuzz::expect_error_text(e.what(), "load_safetensors: input: ");
  }
  return 0;
}
