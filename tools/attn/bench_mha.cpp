// Module benchmark: MultiheadAttention forward and TransformerEncoderLayer
// forward + backward. Median ms per row, GFLOPS (counted below), the ratio to
// a 2048^3 OpenBLAS SGEMM timed in the same run, the row's peak RSS (each row
// in its own child process), and PyTorch's time for the same row from
// bench/torch_mha.py run afterwards in the same invocation.
//
// Flops (N = B * L tokens) count useful work only: MultiheadAttention fwd
// 8 N E^2 (four projections) + 4 B L^2 E (scores and values); fwd+weights the
// same (attn computes the scores a second time to return the weights: that is
// its cost, not work the result needs); step (one decoding step with a KV
// cache of L - 1 steps) B (8 E^2 + 4 L E).
//
// Decoding rows are not like for like: attn's step reads its KV cache, while
// the PyTorch script re-projects the whole prefix (nn.MultiheadAttention has
// no cache). They print in a table of their own, their time ratio labelled
// as an algorithmic difference, never as a speed-up. TransformerEncoderLayer fwd+bwd: 3 x the GEMMs of
// the forward (8 N E^2 + 4 N E ff) + 3.5 x the attention's 4 B L^2 E.
// RelativeMultiheadAttention and GATConv: see flops(); PyTorch has neither
// module, so their rows have no PyTorch time.
#include "bench_mha.h"

#include <attn/attn.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>

#include "bench_common.h"

#ifndef ATTN_TORCH_MHA_SCRIPT
#define ATTN_TORCH_MHA_SCRIPT ""
#endif

namespace attn::tools {

namespace {

constexpr int64_t kFF = 2048;  // the encoder layer's dim_feedforward (PyTorch's default)

double flops(const MhaBenchRow& r) {
  const double N = static_cast<double>(r.B * r.L), E = static_cast<double>(r.E);
  const double attn = 4.0 * r.B * static_cast<double>(r.L) * r.L * E;
  if (r.module == "MultiheadAttention" && r.pass == "step") return r.B * (8 * E * E + 4 * r.L * E);
  // GATConv: B = nodes / 1000, L = edges per node, E = channels in and out (H heads of E / H):
  // the projection 2 N E^2 plus per edge about 4 E (scores, messages), times 3 for fwd+bwd.
  if (r.module == "GATConv") return 3.0 * (2.0 * r.B * 1000 * E * E + 4.0 * r.B * 1000 * r.L * E);
  // RelativeMultiheadAttention fwd: the projections 8 N E^2 plus scores and values with their
  // distance terms, about 8 B L^2 E.
  if (r.module == "RelativeMultiheadAttention") return 8 * N * E * E + 2 * attn;
  if (r.module == "MultiheadAttention") return 8 * N * E * E + attn;
  return 3 * (8 * N * E * E + 4 * N * E * kFF) + 3.5 * attn;
}

Measured measure(const MhaBenchRow& r, const MhaBenchOptions& o) {
  Generator g(3);
  Tensor x = randn({r.B, r.L, r.E}, kFloat32, &g);
  Measured m;
  if (r.module == "MultiheadAttention" && r.pass == "step") {
    // One decoding step with a cache already holding L - 1 steps.
    nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(r.E, r.H).batch_first(true));
    mha.eval();
    NoGradGuard ng;
    nn::KVCache cache;
    Tensor prefix = x.narrow(1, 0, r.L - 1), last = x.narrow(1, r.L - 1, 1);
    mha.forward_cached(prefix, prefix, prefix, cache);
    m.ms = median_ms(
        [&] {
          mha.forward_cached(last, last, last, cache);
          cache.truncate(r.L - 1);
        },
        o.min_reps, o.min_seconds);
  } else if (r.module == "MultiheadAttention") {
    nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(r.E, r.H).batch_first(true));
    mha.eval();
    const bool weights = r.pass == "fwd+weights";
    NoGradGuard ng;
    m.ms = median_ms([&] { mha.forward(x, x, x, {}, weights); }, o.min_reps, o.min_seconds);
  } else if (r.module == "GATConv") {
    // A random graph: B * 1000 nodes, L incoming edges each; forward + backward.
    const int64_t N = r.B * 1000, Ed = N * r.L;
    nn::GATConv gat(nn::GATConvOptions(r.E, r.E / r.H).heads(r.H));
    Tensor feats = randn({N, r.E}, kFloat32, &g).requires_grad_(true);
    Tensor edges = stack({randint(0, N, {Ed}, kInt64, &g), randint(0, N, {Ed}, kInt64, &g)}, 0);
    Tensor gout = randn({N, r.E}, kFloat32, &g);
    m.ms = median_ms(
        [&] {
          gat.forward(feats, edges).backward(gout);
          gat.zero_grad();
          feats.set_grad({});
        },
        o.min_reps, o.min_seconds);
  } else if (r.module == "RelativeMultiheadAttention") {
    nn::RelativeMultiheadAttention rel(
        nn::RelativeMultiheadAttentionOptions(r.E, r.H).max_relative_position(16).batch_first(true));
    rel.eval();
    NoGradGuard ng;
    m.ms = median_ms([&] { rel.forward(x, x, x, {}, false); }, o.min_reps, o.min_seconds);
  } else {
    nn::TransformerEncoderLayer layer(nn::TransformerEncoderLayerOptions(r.E, r.H).batch_first(true));
    x.requires_grad_(true);
    Tensor gout = randn(x.shape(), kFloat32, &g);
    m.ms = median_ms(
        [&] {
          layer.forward(x).backward(gout);
          layer.zero_grad();
          x.set_grad({});
        },
        o.min_reps, o.min_seconds);
  }
  m.peak_rss_mb = peak_rss_mb();
  return m;
}

std::string key(const MhaBenchRow& r) {
  return r.module + "," + std::to_string(r.B) + "," + std::to_string(r.L) + "," + std::to_string(r.E) + "," +
         std::to_string(r.H) + "," + r.pass;
}

// PyTorch's ms per row key; empty when torch or the script is unavailable.
std::map<std::string, double> torch_times(const std::vector<MhaBenchRow>& rows, const MhaBenchOptions& o,
                                          std::string& why) {
  std::vector<std::string> keys;
  for (const auto& r : rows) keys.push_back(key(r));
  const ScriptRun run{o.python, o.torch_script.empty() ? ATTN_TORCH_MHA_SCRIPT : o.torch_script, "PyTorch",
                      o.min_reps, o.min_seconds};
  return run_timing_script(run, keys, [](const std::string& line) {
    auto j = nlohmann::json::parse(line);
    return key(MhaBenchRow{j.at("module"), j.at("B"), j.at("L"), j.at("E"), j.at("H"), j.at("pass")});
  }, why);
}

}  // namespace

std::vector<MhaBenchRow> standard_mha_rows() {
  std::vector<MhaBenchRow> rows;
  for (const char* pass : {"fwd", "fwd+weights"})
    for (auto [B, L] : {std::pair<int64_t, int64_t>{8, 128}, {4, 512}, {1, 2048}})
      rows.push_back({"MultiheadAttention", B, L, 512, 8, pass});
  rows.push_back({"TransformerEncoderLayer", 8, 256, 512, 8, "fwd+bwd"});
  for (int64_t L : {512, 2048, 8192}) rows.push_back({"MultiheadAttention", 1, L, 512, 8, "step"});
  rows.push_back({"RelativeMultiheadAttention", 4, 512, 512, 8, "fwd"});
  rows.push_back({"GATConv", 20, 16, 64, 8, "fwd+bwd"});  // 20k nodes, 320k edges
  return rows;
}

namespace {

// A decoding step with a KV cache beside PyTorch recomputing the prefix.
bool algorithmic(const MhaBenchRow& r) { return r.pass == "step"; }

}  // namespace

int run_mha_bench(const MhaBenchOptions& o) {
  const std::vector<MhaBenchRow> rows = o.rows.empty() ? standard_mha_rows() : o.rows;
  for (const auto& r : rows)
    ATTN_CHECK(r.module == "MultiheadAttention" || r.module == "TransformerEncoderLayer" || r.module == "GATConv" ||
                   r.module == "RelativeMultiheadAttention",
               "bench mha: unknown module ", r.module);
  CeilingTimer ceilings(o.min_reps, o.min_seconds);
  RowTimes times;
  if (!measure_rows(rows.size(), ceilings, [&](size_t i) { return measure(rows[i], o); }, times)) {
    std::fprintf(stderr, "bench mha: timing the SGEMM ceiling failed\n");
    return 1;
  }
  const std::vector<Measured>& got = times.got;
  const std::vector<bool>& ok = times.ok;
  std::string why;
  std::map<std::string, double> torch = o.torch ? torch_times(rows, o, why) : std::map<std::string, double>{};
  if (!o.torch) why = "not timed (--no-torch)";
  const Machine mc = machine();
  int failures = 0;
  for (size_t i = 0; i < rows.size(); ++i)
    if (!ok[i]) {
      std::fprintf(stderr, "bench mha: the row %s failed\n", key(rows[i]).c_str());
      ++failures;
    }
  auto torch_ms = [&](const MhaBenchRow& r) {
    auto it = torch.find(key(r));
    return it == torch.end() ? 0.0 : it->second;
  };
  if (o.json) {
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!ok[i]) continue;
      const MhaBenchRow& r = rows[i];
      const Ceiling ce = ceilings.around(i);
      const double gf = flops(r) / got[i].ms / 1e6, tms = torch_ms(r);
      nlohmann::json j = {{"module", r.module}, {"B", r.B}, {"L", r.L}, {"E", r.E}, {"H", r.H}, {"pass", r.pass},
                          {"ms", got[i].ms}, {"gflops", gf}, {"sgemm_before", ce.before}, {"sgemm_after", ce.after},
                          {"sgemm_gflops", ce.gflops()}, {"ratio", gf / ce.gflops()}, {"noisy", ce.noisy()},
                          {"peak_rss_mb", got[i].peak_rss_mb}, {"cpu", mc.cpu}, {"simd", mc.simd}, {"blas", mc.blas},
                          {"comparison", algorithmic(r) ? "algorithmic" : "like-for-like"}};
      j["torch_ms"] = tms > 0 ? nlohmann::json(tms) : nlohmann::json(nullptr);
      // A speed-up only where both sides do the same work.
      j["speedup"] = tms > 0 && !algorithmic(r) ? nlohmann::json(tms / got[i].ms) : nlohmann::json(nullptr);
      j["torch_time_over_attn"] = tms > 0 ? nlohmann::json(tms / got[i].ms) : nlohmann::json(nullptr);
      std::printf("%s\n", j.dump().c_str());
    }
    return failures == 0 ? 0 : 1;
  }
  std::printf("nn modules, float32, %d threads; %s, attn kernels %s, OpenBLAS %s\n", get_num_threads(),
              mc.cpu.c_str(), mc.simd.c_str(), mc.blas.c_str());
  std::printf("ratio: GFLOPS (useful work only) over a 2048^3 SGEMM timed before and after each row (their mean); "
              "'noisy': the two differ by more than 10%%\n");
  if (torch.empty()) std::printf("PyTorch: %s\n", why.c_str());
  for (bool alg : {false, true}) {
    bool any = false;
    for (size_t i = 0; i < rows.size(); ++i) any = any || (ok[i] && algorithmic(rows[i]) == alg);
    if (!any) continue;
    if (alg) {
      std::printf("\nDecoding steps: not like for like. attn reads its KV cache (O(L) per step); PyTorch's "
                  "nn.MultiheadAttention has no cache and re-projects the prefix (O(L) projections per step).\n"
                  "The time ratio measures that algorithmic difference, not kernel speed.\n");
    }
    std::printf("%-24s %3s %5s %4s %3s %-12s %9s %8s %7s %6s %7s %9s %9s\n", "module", "B", "L", "E", "H", "pass",
                "ms", "GFLOPS", "SGEMM", "ratio", "rss MB", "torch ms", alg ? "torch/attn" : "speedup");
    for (size_t i = 0; i < rows.size(); ++i) {
      const MhaBenchRow& r = rows[i];
      if (!ok[i] || algorithmic(r) != alg) continue;
      const Ceiling ce = ceilings.around(i);
      const double gf = flops(r) / got[i].ms / 1e6, tms = torch_ms(r);
      std::printf("%-24s %3lld %5lld %4lld %3lld %-12s %9.2f %8.1f %7.1f %6.3f %7.1f", r.module.c_str(),
                  static_cast<long long>(r.B), static_cast<long long>(r.L), static_cast<long long>(r.E),
                  static_cast<long long>(r.H), r.pass.c_str(), got[i].ms, gf, ce.gflops(), gf / ce.gflops(),
                  got[i].peak_rss_mb);
      if (tms > 0)
        std::printf(" %9.2f %8.2fx", tms, tms / got[i].ms);
      else
        std::printf(" %9s %9s", "-", "-");
      std::printf("%s\n", ce.noisy() ? "  (noisy)" : "");
    }
  }
  std::fflush(stdout);
  return failures == 0 ? 0 : 1;
}

}  // namespace attn::tools
