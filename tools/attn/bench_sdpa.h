// The scaled-dot-product attention benchmark behind `attn bench sdpa` and
// build/bin/bench_sdpa.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attn::tools {

struct SdpaBenchRow {
  int64_t B, H, L, S, E;
  bool causal;
  bool backward;  // forward + backward
  int64_t win_left = -1, win_right = -1;  // a sliding window (-1: unbounded)
  int64_t global_tokens = 0, stride = 0;  // sparse patterns (see SdpaOptions)
  bool linear = false;                    // F::linear_attention instead (elu + 1 features)
  // flex_attention rows: the attention `flex` names, run by flex_attention
  // (flex_builtin false) or by the built-in path that computes it.
  //   causal:    a causal mask_mod with its block mask / is_causal
  //   alibi:     an ALiBi score_mod / alibi_slopes
  //   documents: 8 equal documents as a mask_mod with its block mask / dense attention
  std::string flex = "";
  bool flex_builtin = false;
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
// flex_attention beside the built-in path, each pair timed in turn (H 4, E 64,
// 16 keys per modifier call): causal mask_mod and ALiBi score_mod at N = 2048
// and 4096, 8 documents at N = 8192; forward and forward + backward.
std::vector<SdpaBenchRow> flex_sdpa_rows();

// Times each row in a child process (so peak RSS is the row's own) and prints
// a table or one JSON object per row. Returns 0 on success.
int run_sdpa_bench(const SdpaBenchOptions& options);

}  // namespace attn::tools
