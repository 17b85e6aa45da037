// The module benchmark behind `attn bench mha` and build/bin/bench_mha:
// MultiheadAttention forward and a TransformerEncoderLayer forward + backward,
// each beside PyTorch timed by bench/torch_mha.py in the same run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attn::tools {

struct MhaBenchRow {
  std::string module;  // "MultiheadAttention", "TransformerEncoderLayer", "RelativeMultiheadAttention", "GATConv"
  int64_t B, L, E, H;
  std::string pass;    // "fwd", "fwd+weights", "step" (MHA); "fwd+bwd" (encoder layer)
};

struct MhaBenchOptions {
  std::vector<MhaBenchRow> rows;  // empty: the standard table
  bool json = false;
  bool torch = true;              // time PyTorch beside attn
  std::string python = "/usr/bin/python3";
  std::string torch_script;       // bench/torch_mha.py; empty: the source tree's
  int min_reps = 5;
  double min_seconds = 1.0;
};

// MultiheadAttention E = 512, H = 8 at (B, L) = (8, 128), (4, 512), (1, 2048),
// fwd and fwd+weights; TransformerEncoderLayer d_model 512, 8 heads, ff 2048
// at (8, 256), fwd+bwd; one MultiheadAttention decoding step with a KV cache
// of L - 1 = 511, 2047, 8191 steps; RelativeMultiheadAttention (k = 16)
// forward at (4, 512); GATConv forward + backward on a random graph of
// B * 1000 = 20k nodes with L = 16 incoming edges each, 64 channels, 8 heads.
std::vector<MhaBenchRow> standard_mha_rows();

// Prints a table (decoding steps in a table of their own: an algorithmic
// difference, not a speed-up) or one JSON object per row (keys module, B, L,
// E, H, pass, ms, gflops, sgemm_before, sgemm_after, sgemm_gflops, ratio,
// noisy, peak_rss_mb, cpu, simd, blas, comparison ("like-for-like" or
// "algorithmic"), torch_ms, speedup (like-for-like rows only),
// torch_time_over_attn). Returns 0 on success.
int run_mha_bench(const MhaBenchOptions& options);

}  // namespace attn::tools
