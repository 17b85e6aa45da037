// Model benchmark: median ms per forward, GFLOPS (counted below, 2 per
// multiply-add), the ratio to a 2048^3 SGEMM timed before and after each row,
// the row's peak RSS (each row in its own child process), and torchvision's
// time for the same row from bench/torch_models.py run afterwards.
//
// Flops per image (multiply-adds x 2; N tokens, D width):
//   ViT: patch projection N D 3 p^2; per layer 4 N D^2 (q, k, v, out) +
//        2 N^2 D (scores, values) + 2 N D mlp_dim; the head.
//   Swin: patch embedding T C 48; per block in a stage of T tokens and C
//        channels 12 T C^2 (qkv, proj, mlp of 4C) + 2 T w^2 C (each token's
//        window of w^2 keys); patch merging 2 T C^2; the head.
#include "bench_models.h"

#include <attn/attn.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>

#include "bench_common.h"

#ifndef ATTN_TORCH_MODELS_SCRIPT
#define ATTN_TORCH_MODELS_SCRIPT ""
#endif

namespace attn::tools {

namespace {

bool is_vit(const std::string& m) { return m.rfind("vit_", 0) == 0; }

double flops(const ModelBenchRow& r) {
  double macs = 0;
  if (is_vit(r.model)) {
    const auto o = models::VisionTransformerOptions::preset(r.model);
    const double p = static_cast<double>(o.patch_size()), n = (r.image / p) * (r.image / p), N = n + 1;
    const double D = static_cast<double>(o.hidden_dim()), M = static_cast<double>(o.mlp_dim());
    macs = n * D * 3 * p * p + o.num_layers() * (4 * N * D * D + 2 * N * N * D + 2 * N * D * M) + D * 1000;
  } else {
    const auto o = models::SwinTransformerOptions::preset(r.model);
    const double w = static_cast<double>(o.window_size()[0] * o.window_size()[1]);
    double side = static_cast<double>(r.image) / static_cast<double>(o.patch_size()[0]);
    double C = static_cast<double>(o.embed_dim());
    macs = side * side * C * 48;
    for (size_t s = 0; s < o.depths().size(); ++s) {
      const double T = side * side;
      macs += static_cast<double>(o.depths()[s]) * (12 * T * C * C + 2 * T * w * C);
      if (s + 1 < o.depths().size()) {
        macs += 2 * T * C * C;
        side = std::ceil(side / 2);
        C *= 2;
      }
    }
    macs += C * 1000;
  }
  return 2 * macs * static_cast<double>(r.batch);
}

Measured measure(const ModelBenchRow& r, const ModelBenchOptions& o) {
  Generator g(3);
  Tensor x = randn({r.batch, 3, r.image, r.image}, kFloat32, &g);
  std::unique_ptr<nn::Module> m;
  std::function<Tensor(const Tensor&)> fwd;
  if (is_vit(r.model)) {
    auto v = std::make_unique<models::VisionTransformer>(models::VisionTransformerOptions::preset(r.model));
    auto* p = v.get();
    fwd = [p](const Tensor& t) { return p->forward(t); };
    m = std::move(v);
  } else {
    auto v = std::make_unique<models::SwinTransformer>(models::SwinTransformerOptions::preset(r.model));
    auto* p = v.get();
    fwd = [p](const Tensor& t) { return p->forward(t); };
    m = std::move(v);
  }
  m->eval();
  NoGradGuard ng;
  Measured out;
  out.ms = median_ms([&] { fwd(x); }, o.min_reps, o.min_seconds);
  out.peak_rss_mb = peak_rss_mb();
  return out;
}

std::string key(const ModelBenchRow& r) {
  return r.model + "," + std::to_string(r.batch) + "," + std::to_string(r.image);
}

// torchvision's ms per row key; empty when torch or the script is unavailable.
std::map<std::string, double> torch_times(const std::vector<ModelBenchRow>& rows, const ModelBenchOptions& o,
                                          std::string& why) {
  std::vector<std::string> keys;
  for (const auto& r : rows) keys.push_back(key(r));
  const ScriptRun run{o.python, o.torch_script.empty() ? ATTN_TORCH_MODELS_SCRIPT : o.torch_script, "torchvision",
                      o.min_reps, o.min_seconds};
  return run_timing_script(run, keys, [](const std::string& line) {
    auto j = nlohmann::json::parse(line);
    return key(ModelBenchRow{j.at("model"), j.at("batch"), j.at("image")});
  }, why);
}

}  // namespace

std::vector<ModelBenchRow> standard_model_rows() {
  std::vector<ModelBenchRow> rows;
  for (const char* m : {"vit_b_16", "swin_t"})
    for (int64_t b : {1, 8}) rows.push_back({m, b, 224});
  return rows;
}

int run_model_bench(const ModelBenchOptions& o) {
  const std::vector<ModelBenchRow> rows = o.rows.empty() ? standard_model_rows() : o.rows;
  for (const auto& r : rows) {
    ATTN_CHECK(r.batch > 0 && r.image > 0, "bench models: batch and image must be positive");
    if (is_vit(r.model)) (void)models::VisionTransformerOptions::preset(r.model);  // names the presets if unknown
    else (void)models::SwinTransformerOptions::preset(r.model);
  }
  CeilingTimer ceilings(o.min_reps, o.min_seconds);
  RowTimes times;
  if (!measure_rows(rows.size(), ceilings, [&](size_t i) { return measure(rows[i], o); }, times)) {
    std::fprintf(stderr, "bench models: timing the SGEMM ceiling failed\n");
    return 1;
  }
  const std::vector<Measured>& got = times.got;
  const std::vector<bool>& ok = times.ok;
  std::string why;
  std::map<std::string, double> torch = o.torch ? torch_times(rows, o, why) : std::map<std::string, double>{};
  if (!o.torch) why = "not timed (--no-torch)";
  const Machine mc = machine();
  if (!o.json) {
    std::printf("vision models, float32, eval, %d threads; %s, attn kernels %s, OpenBLAS %s\n", get_num_threads(),
                mc.cpu.c_str(), mc.simd.c_str(), mc.blas.c_str());
    std::printf("ratio: GFLOPS over a 2048^3 SGEMM timed before and after each row (their mean)\n");
    if (torch.empty()) std::printf("torchvision: %s\n", why.c_str());
    std::printf("%-10s %5s %5s %10s %8s %7s %6s %7s %10s %8s\n", "model", "batch", "image", "ms", "GFLOPS", "SGEMM",
                "ratio", "rss MB", "torch ms", "speedup");
  }
  int failures = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const ModelBenchRow& r = rows[i];
    if (!ok[i]) {
      std::fprintf(stderr, "bench models: the row %s failed\n", key(r).c_str());
      ++failures;
      continue;
    }
    const Ceiling ce = ceilings.around(i);
    const double gf = flops(r) / got[i].ms / 1e6;
    auto it = torch.find(key(r));
    const double tms = it == torch.end() ? 0 : it->second;
    if (o.json) {
      nlohmann::json j = {{"model", r.model}, {"batch", r.batch}, {"image", r.image}, {"ms", got[i].ms},
                          {"gflops", gf}, {"sgemm_before", ce.before}, {"sgemm_after", ce.after},
                          {"sgemm_gflops", ce.gflops()}, {"ratio", gf / ce.gflops()}, {"noisy", ce.noisy()},
                          {"peak_rss_mb", got[i].peak_rss_mb}, {"cpu", mc.cpu}, {"simd", mc.simd}, {"blas", mc.blas}};
      j["torch_ms"] = tms > 0 ? nlohmann::json(tms) : nlohmann::json(nullptr);
      j["speedup"] = tms > 0 ? nlohmann::json(tms / got[i].ms) : nlohmann::json(nullptr);
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%-10s %5lld %5lld %10.2f %8.1f %7.1f %6.3f %7.1f", r.model.c_str(), static_cast<long long>(r.batch),
                  static_cast<long long>(r.image), got[i].ms, gf, ce.gflops(), gf / ce.gflops(), got[i].peak_rss_mb);
      if (tms > 0)
        std::printf(" %10.2f %7.2fx", tms, tms / got[i].ms);
      else
        std::printf(" %10s %8s", "-", "-");
      std::printf("%s\n", ce.noisy() ? "  (noisy)" : "");
    }
    std::fflush(stdout);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace attn::tools
