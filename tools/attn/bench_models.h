// The model benchmark behind `attn bench models`: torchvision's vit_b_16 and
// swin_t (random weights, eval mode, 224x224 images) forward at batch 1 and 8,
// beside torchvision timed by bench/torch_models.py in the same invocation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attn::tools {

struct ModelBenchRow {
  std::string model;  // a preset: vit_b_16 ... vit_h_14, swin_t ... swin_v2_b
  int64_t batch = 1, image = 224;
};

struct ModelBenchOptions {
  std::vector<ModelBenchRow> rows;  // empty: the standard table
  bool json = false;
  bool torch = true;
  std::string python = "/usr/bin/python3";
  std::string torch_script;  // bench/torch_models.py; empty: the source tree's
  int min_reps = 5;
  double min_seconds = 1.0;
};

// vit_b_16 and swin_t at batch 1 and 8, 224x224.
std::vector<ModelBenchRow> standard_model_rows();

// Prints a table or one JSON object per row (keys model, batch, image, ms,
// gflops, sgemm_before, sgemm_after, sgemm_gflops, ratio, noisy, peak_rss_mb,
// torch_ms, speedup, cpu, simd, blas). Returns 0 on success.
int run_model_bench(const ModelBenchOptions& options);

}  // namespace attn::tools
