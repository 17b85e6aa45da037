// libFuzzer target: Module::load (safetensors file -> load_state_dict) on
// arbitrary file contents, strict and not, into a small model with an
// attention layer, a LayerNorm and a Linear. Each load succeeds or throws an
// attn::Error; a failed load leaves every parameter exactly as it was; a
// successful one gives a model whose forward runs; the heap held stays under a
// bound proportional to the file.
#include <attn/attn.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>

#include "alloc_watch.h"

namespace {
namespace nn = attn::nn;

struct Model : nn::Module {
  nn::MultiheadAttention attn{8, 2};
  nn::LayerNorm norm{nn::LayerNormOptions({8})};
  nn::Linear out{8, 3};
  Model() {
    register_module("attn", attn);
    register_module("norm", norm);
    register_module("out", out);
  }
  attn::Tensor forward(const attn::Tensor& x) { return out.forward(norm.forward(std::get<0>(attn.forward(x, x, x)) + x)); }
};

bool same_state(const nn::StateDict& a, const nn::StateDict& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, t] : a) {
    const attn::Tensor& u = b.at(k);
    if (t.shape() != u.shape() || t.dtype() != u.dtype()) return false;
    const attn::Tensor tc = t.contiguous(), uc = u.contiguous();
    if (std::memcmp(tc.raw_data(), uc.raw_data(), static_cast<size_t>(t.numel()) * t.itemsize()) != 0) return false;
  }
  return true;
}

nn::StateDict snapshot(const nn::Module& m) {
  nn::StateDict s;
  for (const auto& [k, t] : m.state_dict()) s[k] = t.clone();
  return s;
}

const std::string& path() {
  static const std::string p = "/tmp/attn_fuzz_state_dict_" + std::to_string(::getpid()) + ".safetensors";
  return p;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Model model;
  std::FILE* f = std::fopen(path().c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  for (bool strict : {true, false}) {
    const nn::StateDict before = snapshot(model);
    const size_t base = attn::fuzz::watch_start();
    try {
      model.load(path(), strict);
      attn::fuzz::watch_check(base, 64 * size + (size_t{1} << 20), size);
      attn::NoGradGuard ng;
      volatile float sink = model.forward(attn::zeros({2, 4, 8})).sum().item<float>();
      (void)sink;
    } catch (const attn::Error& e) {
      attn::fuzz::watch_check(base, 64 * size + (size_t{1} << 20), size);
      const bool named = std::strncmp(e.what(), "load_safetensors: ", 18) == 0 ||
                         std::strncmp(e.what(), "Module.load_state_dict: ", 24) == 0;
      if (!named) {
        std::fprintf(stderr, "fuzz: unexpected error text: %s\n", e.what());
        std::abort();
      }
      if (!same_state(before, model.state_dict())) {
        std::fprintf(stderr, "fuzz: a failed load changed the model (%s)\n", e.what());
        std::abort();
      }
    }
  }
  return 0;
}
