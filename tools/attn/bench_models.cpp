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
//   GPT-2 prefill of T tokens: per layer 12 T D^2 + T^2 D (causal scores and
//        values, half of 2 T^2 D); the head T D V. Decode at context C: per
//        layer 12 D^2 + 2 C D; the head D V. Its bytes: every weight once
//        (4 bytes each) and the cache's keys and values, 2 n_layer C D x 4.
//   BERT (B, T): per layer 12 T D^2 + 2 T^2 D, per sequence; the pooler D^2.
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
bool is_lm(const std::string& m) { return m == "gpt2" || m == "bert_base"; }

models::GPT2Config gpt2_small() { return models::GPT2Config(); }  // the defaults are GPT-2 small's
models::BertConfig bert_base() { return models::BertConfig(); }   // the defaults are BERT base's

int64_t gpt2_parameters() {
  const models::GPT2Config c = gpt2_small();
  const int64_t D = c.n_embd;
  return c.vocab_size * D + c.n_positions * D + c.n_layer * (12 * D * D + 13 * D) + 2 * D;
}

// Bytes one decode step reads: the weights and the cache.
double decode_bytes(const ModelBenchRow& r) {
  const models::GPT2Config c = gpt2_small();
  // Every weight but the position table, of which one row is read.
  return 4.0 * static_cast<double>(gpt2_parameters() - (c.n_positions - 1) * c.n_embd) +
         4.0 * 2 * static_cast<double>(c.n_layer * (r.tokens - 1) * c.n_embd) * static_cast<double>(r.batch);
}

double flops(const ModelBenchRow& r) {
  double macs = 0;
  if (r.model == "gpt2") {
    const models::GPT2Config c = gpt2_small();
    const double D = static_cast<double>(c.n_embd), V = static_cast<double>(c.vocab_size);
    const double T = static_cast<double>(r.tokens), layers = static_cast<double>(c.n_layer);
    macs = r.pass == "decode" ? layers * (12 * D * D + 2 * T * D) + D * V
                              : layers * (12 * T * D * D + T * T * D) + T * D * V;
  } else if (r.model == "bert_base") {
    const models::BertConfig c = bert_base();
    const double D = static_cast<double>(c.hidden_size), T = static_cast<double>(r.tokens);
    macs = static_cast<double>(c.num_hidden_layers) * (12 * T * D * D + 2 * T * T * D) + D * D;
  } else if (is_vit(r.model)) {
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

Measured measure_lm(const ModelBenchRow& r, const ModelBenchOptions& o) {
  Generator g(3);
  NoGradGuard ng;
  Measured out;
  if (r.model == "bert_base") {
    models::BertModel m(bert_base(), true);
    m.eval();
    Tensor ids = randint(0, bert_base().vocab_size, {r.batch, r.tokens}, kInt64, &g);
    Tensor mask = ones({r.batch, r.tokens}, kInt64), types = zeros({r.batch, r.tokens}, kInt64);
    out.ms = median_ms([&] { m.forward(ids, mask, types); }, o.min_reps, o.min_seconds);
  } else {
    models::GPT2LMHeadModel m(gpt2_small());
    m.eval();
    const int64_t V = gpt2_small().vocab_size;
    if (r.pass == "prefill") {
      Tensor ids = randint(0, V, {r.batch, r.tokens}, kInt64, &g);
      out.ms = median_ms([&] {
        models::GPT2Cache cache;
        m.forward(ids, {}, {}, &cache);
      }, o.min_reps, o.min_seconds);
    } else {
      // A cache of tokens - 1 steps; each timed step appends one and is then
      // forgotten, so every step sees the same context.
      models::GPT2Cache cache;
      m.forward(randint(0, V, {r.batch, r.tokens - 1}, kInt64, &g), {}, {}, &cache);
      Tensor id = randint(0, V, {r.batch, 1}, kInt64, &g);
      out.ms = median_ms([&] {
        m.forward(id, {}, {}, &cache);
        for (auto& l : cache.layers) l.truncate(r.tokens - 1);
      }, o.min_reps, o.min_seconds);
    }
  }
  out.peak_rss_mb = peak_rss_mb();
  return out;
}

// The machine's read bandwidth: the median ms of a parallel sum over
// kBandwidthFloats floats (1 GiB).
constexpr int64_t kBandwidthFloats = int64_t{1} << 28;
Measured memory_bandwidth() {
  std::vector<float> buf(static_cast<size_t>(kBandwidthFloats), 1.0f);
  volatile float sink = 0;  // keeps the sums from being optimised away
  Measured m;
  m.ms = median_ms([&] {
    float total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int64_t i = 0; i < kBandwidthFloats; i += 16) {
      float a = 0;
      for (int64_t j = 0; j < 16; ++j) a += buf[static_cast<size_t>(i + j)];
      total += a;
    }
    sink = sink + total;
  }, 5, 0.5);
  m.peak_rss_mb = peak_rss_mb();
  return m;
}

Measured measure(const ModelBenchRow& r, const ModelBenchOptions& o) {
  if (is_lm(r.model)) return measure_lm(r, o);
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
  return r.model + "," + std::to_string(r.batch) + "," + std::to_string(r.image) + "," + r.pass + "," +
         std::to_string(r.tokens);
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
    return key(ModelBenchRow{j.at("model"), j.at("batch"), j.at("image"), j.at("pass"), j.at("tokens")});
  }, why);
}

// ONNX Runtime's ms per vision row key (bench/ort_models.py exports each
// torchvision model once, onnxruntime-node from o.ort times it); empty when
// it cannot run.
std::map<std::string, double> ort_times(const std::vector<ModelBenchRow>& rows, const ModelBenchOptions& o,
                                        std::string& why) {
  std::vector<std::string> keys;
  for (const auto& r : rows)
    if (!is_lm(r.model)) keys.push_back(key(r));
  if (keys.empty()) {
    why = "no vision rows";
    return {};
  }
  const ScriptRun run{o.python, ATTN_ORT_MODELS_SCRIPT, "ONNX Runtime", o.min_reps, o.min_seconds};
  return run_timing_script(run, keys, [](const std::string& line) {
    auto j = nlohmann::json::parse(line);
    return key(ModelBenchRow{j.at("model"), j.at("batch"), j.at("image"), j.at("pass"), j.at("tokens")});
  }, why, {"--ort", o.ort});
}

}  // namespace

std::vector<ModelBenchRow> standard_model_rows() {
  std::vector<ModelBenchRow> rows;
  for (const char* m : {"vit_b_16", "swin_t"})
    for (int64_t b : {1, 8}) rows.push_back({m, b, 224, "fwd", 0});
  rows.push_back({"gpt2", 1, 0, "prefill", 512});
  rows.push_back({"gpt2", 1, 0, "decode", 512});
  rows.push_back({"gpt2", 1, 0, "decode", 1023});
  rows.push_back({"bert_base", 8, 0, "fwd", 128});
  return rows;
}

int run_model_bench(const ModelBenchOptions& o) {
  const std::vector<ModelBenchRow> rows = o.rows.empty() ? standard_model_rows() : o.rows;
  bool decode = false;
  for (const auto& r : rows) {
    ATTN_CHECK(r.batch > 0, "bench models: batch must be positive");
    if (r.model == "gpt2") {
      ATTN_CHECK((r.pass == "prefill" || r.pass == "decode") && r.tokens >= 2 && r.tokens <= 1024,
                 "bench models: gpt2 rows take --pass prefill or decode and --tokens in [2, 1024]");
      decode = decode || r.pass == "decode";
    } else if (r.model == "bert_base") {
      ATTN_CHECK(r.pass == "fwd" && r.tokens >= 1 && r.tokens <= 512,
                 "bench models: bert_base rows take --tokens in [1, 512]");
    } else {
      ATTN_CHECK(r.image > 0 && r.pass == "fwd", "bench models: vision rows take a positive --image");
      if (is_vit(r.model)) (void)models::VisionTransformerOptions::preset(r.model);  // names the presets if unknown
      else (void)models::SwinTransformerOptions::preset(r.model);
    }
  }
  double memory_gbs = 0;
  if (decode) {
    Measured bw;
    if (in_child(memory_bandwidth, bw) && bw.ms > 0) memory_gbs = 4.0 * kBandwidthFloats / bw.ms / 1e6;
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
  std::string ort_why;
  const bool with_ort = !o.ort.empty();
  const std::map<std::string, double> ort = with_ort ? ort_times(rows, o, ort_why) : std::map<std::string, double>{};
  const Machine mc = machine();
  if (!o.json) {
    std::printf("models, float32, eval, %d threads; %s, attn kernels %s, OpenBLAS %s\n", get_num_threads(),
                mc.cpu.c_str(), mc.simd.c_str(), mc.blas.c_str());
    std::printf("ratio: GFLOPS over a 2048^3 SGEMM timed before and after each row (their mean)\n");
    if (decode)
      std::printf("decode rows: GB/s = the weights and the cache read per token over its time; the machine reads "
                  "%.1f GB/s (a 1 GiB sum, this run)\n", memory_gbs);
    if (torch.empty()) std::printf("PyTorch: %s\n", why.c_str());
    if (with_ort && ort.empty()) std::printf("ONNX Runtime: %s\n", ort_why.c_str());
    std::printf("%-10s %5s %5s %-8s %6s %10s %8s %7s %6s %7s %10s %8s", "model", "batch", "image", "pass", "tokens",
                "ms", "GFLOPS", "SGEMM", "ratio", "rss MB", "torch ms", "speedup");
    if (with_ort) std::printf(" %10s %8s", "ORT ms", "vs ORT");
    std::printf("\n");
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
    auto io = ort.find(key(r));
    const double oms = io == ort.end() ? 0 : io->second;
    if (o.json) {
      nlohmann::json j = {{"model", r.model}, {"batch", r.batch}, {"image", r.image}, {"pass", r.pass},
                          {"tokens", r.tokens}, {"ms", got[i].ms},
                          {"gflops", gf}, {"sgemm_before", ce.before}, {"sgemm_after", ce.after},
                          {"sgemm_gflops", ce.gflops()}, {"ratio", gf / ce.gflops()}, {"noisy", ce.noisy()},
                          {"peak_rss_mb", got[i].peak_rss_mb}, {"cpu", mc.cpu}, {"simd", mc.simd}, {"blas", mc.blas}};
      j["torch_ms"] = tms > 0 ? nlohmann::json(tms) : nlohmann::json(nullptr);
      j["speedup"] = tms > 0 ? nlohmann::json(tms / got[i].ms) : nlohmann::json(nullptr);
      if (with_ort) {
        j["ort_ms"] = oms > 0 ? nlohmann::json(oms) : nlohmann::json(nullptr);
        j["vs_ort"] = oms > 0 ? nlohmann::json(oms / got[i].ms) : nlohmann::json(nullptr);
      }
      if (r.pass == "decode") {
        j["gb_s"] = decode_bytes(r) / got[i].ms / 1e6;
        j["memory_gb_s"] = memory_gbs;
      }
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%-10s %5lld %5lld %-8s %6lld %10.2f %8.1f %7.1f %6.3f %7.1f", r.model.c_str(),
                  static_cast<long long>(r.batch), static_cast<long long>(r.image), r.pass.c_str(),
                  static_cast<long long>(r.tokens), got[i].ms, gf, ce.gflops(), gf / ce.gflops(), got[i].peak_rss_mb);
      if (tms > 0)
        std::printf(" %10.2f %7.2fx", tms, tms / got[i].ms);
      else
        std::printf(" %10s %8s", "-", "-");
      if (with_ort && oms > 0)
        std::printf(" %10.2f %7.2fx", oms, oms / got[i].ms);
      else if (with_ort)
        std::printf(" %10s %8s", "-", "-");
      if (r.pass == "decode") std::printf("  %.1f GB/s", decode_bytes(r) / got[i].ms / 1e6);
      std::printf("%s\n", ce.noisy() ? "  (noisy)" : "");
    }
    std::fflush(stdout);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace attn::tools
