// The attention benchmark table (the same as `attn bench sdpa`).
//   build/bin/bench_sdpa [--json]
#include <cstdio>
#include <cstring>

#include "bench_sdpa.h"

int main(int argc, char** argv) {
  attn::tools::SdpaBenchOptions o;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) {
      o.json = true;
    } else {
      std::fprintf(stderr, "usage: bench_sdpa [--json]\n");
      return 2;
    }
  }
  return attn::tools::run_sdpa_bench(o);
}
