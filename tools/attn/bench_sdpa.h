// The scaled-dot-product attention benchmark behind `attn bench sdpa` and
// build/bin/bench_sdpa.
#pragma once

#include <cstdint>
#include <vector>

namespace attn::tools {

struct SdpaBenchRow {
  int64_t B, H, L, S, E;
  bool causal;
  bool backward;  // forward + backward
  int64_t win_left = -1, win_right = -1;  // a sliding window (-1: unbounded)
  int64_t global_tokens = 0, stride = 0;  // sparse patterns (see SdpaOptions)
  bool linear = false;                    // F::linear_attention instead (elu + 1 features)
};

struct SdpaBenchOptions {
  std::vector<SdpaBenchRow> rows;  // empty: the standard table
  bool json = false;
  int min_reps = 5;
  double min_seconds = 1.0;
};

// The standard table: (B, H, N, E) = (1,8,512,64), (1,8,1024,64),
// (1,8,2048,64), (1,4,4096,64), (1,2,16384,64); causal and not; forward and
// forward + backward.
std::vector<SdpaBenchRow> standard_sdpa_rows();
// Local and sparse attention at L = 4k, 16k, 64k (B 1, H 4, E 64, forward):
// window (128, 128); window + 16 global tokens; causal window (128, 0) + stride
// 128 (4k and 16k only: every key tile holds strided keys, so its cost is
// quadratic); causal linear attention.
std::vector<SdpaBenchRow> sparse_sdpa_rows();

// Times each row in a child process (so peak RSS is the row's own) and prints
// a table or one JSON object per row. Returns 0 on success.
int run_sdpa_bench(const SdpaBenchOptions& options);

}  // namespace attn::tools
