// The model benchmark behind `attn bench models`: torchvision's vit_b_16 and
// swin_t (random weights, eval mode, 224x224 images) forward at batch 1 and 8;
// a GPT-2-small-shaped model (124M parameters) prefilling 512 tokens and
// decoding one token after caches of 511 and 1022; a BERT-base-shaped
// encoder at (8, 128); each beside PyTorch timed by bench/torch_models.py in
// the same invocation, and the vision rows beside ONNX Runtime (its Node.js
// package, bench/ort_models.py) when asked.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attn::tools {

struct ModelBenchRow {
  std::string model;  // a preset: vit_b_16 ... vit_h_14, swin_t ... swin_v2_b; gpt2; bert_base
  int64_t batch = 1, image = 224;
  std::string pass = "fwd";  // gpt2: prefill or decode
  int64_t tokens = 0;        // gpt2 prefill: the prompt; decode: the context (cache + 1); bert_base: T
};

struct ModelBenchOptions {
  std::vector<ModelBenchRow> rows;  // empty: the standard table
  bool json = false;
  bool torch = true;
  std::string python = "/usr/bin/python3";
  std::string torch_script;  // bench/torch_models.py; empty: the source tree's
  std::string ort;           // a folder with node_modules/onnxruntime-node; empty: ONNX Runtime not timed
  int min_reps = 5;
  double min_seconds = 1.0;
};

// vit_b_16 and swin_t at batch 1 and 8, 224x224; gpt2 prefill 512, decode at
// 512 and 1023; bert_base (8, 128).
std::vector<ModelBenchRow> standard_model_rows();

// Prints a table or one JSON object per row (keys model, batch, image, pass,
// tokens, ms, gflops, sgemm_before, sgemm_after, sgemm_gflops, ratio, noisy,
// peak_rss_mb, torch_ms, speedup, cpu, simd, blas; with ort, ort_ms and
// vs_ort (ONNX Runtime's time over attn's; null on language-model rows);
// decode rows also gb_s,
// the weights and cache read per token over the time, and memory_gb_s, the
// machine's read bandwidth measured in the same run). Returns 0 on success.
int run_model_bench(const ModelBenchOptions& options);

}  // namespace attn::tools
