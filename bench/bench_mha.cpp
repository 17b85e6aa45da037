// The module benchmark table (the same as `attn bench mha`).
//   build/bin/bench_mha [--json] [--no-torch]
#include <cstdio>
#include <cstring>

#include "bench_mha.h"

int main(int argc, char** argv) {
  attn::tools::MhaBenchOptions o;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) {
      o.json = true;
    } else if (!std::strcmp(argv[i], "--no-torch")) {
      o.torch = false;
    } else {
      std::fprintf(stderr, "usage: bench_mha [--json] [--no-torch]\n");
      return 2;
    }
  }
  return attn::tools::run_mha_bench(o);
}
