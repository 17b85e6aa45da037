// Scaled-dot-product attention benchmark: median milliseconds per row,
// GFLOPS (forward 4*B*H*E per visible (query, key) pair: L*S dense, L(L+1)/2
// causal, counted per query for windows and sparse patterns; forward +
// backward counted as 3.5 x forward), the ratio to a 2048^3 OpenBLAS SGEMM
// timed before and after each row, and the row's peak RSS (each row runs in
// its own child process). Every row names the CPU, attn's SIMD target and
// OpenBLAS's kernel. The flex_attention rows (--flex) time each modifier
// beside the built-in path that computes the same attention.
#include "bench_sdpa.h"

#include "bench_common.h"

#include <attn/attn.h>
#include <attn/flex.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

namespace attn::tools {

namespace {

// Runs in the child: times the row, returns ms and peak RSS.
Measured measure(const SdpaBenchRow& r, const SdpaBenchOptions& o) {
  Generator g(2);
  Tensor q = randn({r.B, r.H, r.L, r.E}, kFloat32, &g), k = randn({r.B, r.H, r.S, r.E}, kFloat32, &g);
  Tensor v = randn({r.B, r.H, r.S, r.E}, kFloat32, &g);
  F::SdpaOptions opt = F::SdpaOptions()
                           .is_causal(r.causal)
                           .window(F::Window(r.win_left, r.win_right))
                           .global_tokens(r.global_tokens)
                           .stride(r.stride);
  Measured m;
  // The flex rows: the modifiers (16 keys per call) and the built-in options.
  namespace flex = F::flex;
  Tensor slopes = F::alibi_slopes(r.H);
  flex::Captured sl(slopes);
  std::vector<int64_t> ids(static_cast<size_t>(r.S));
  for (int64_t j = 0; j < r.S; ++j) ids[static_cast<size_t>(j)] = j * 8 / r.S;
  flex::Captured doc(from_vector(ids, {r.S}));
  auto causal = flex::vectorized([](auto, auto, auto i, auto j) { return j <= i; });
  auto same_doc = flex::vectorized([doc](auto, auto, auto i, auto j) { return doc(i) == doc(j); });
  auto alibi = flex::vectorized([sl](auto s, auto, auto h, auto i, auto j) {
    using std::abs;
    return s - sl(h) * abs(i - j);
  });
  flex::BlockMask bm;
  if (r.flex == "causal") bm = flex::create_block_mask(causal, 1, 1, r.L, r.S);
  if (r.flex == "documents") bm = flex::create_block_mask(same_doc, 1, 1, r.L, r.S);
  if (r.flex_builtin && r.flex == "causal") opt = F::SdpaOptions().is_causal(true);
  if (r.flex_builtin && r.flex == "alibi") opt = F::SdpaOptions().alibi_slopes(slopes);
  if (r.flex_builtin && r.flex == "documents") opt = F::SdpaOptions();
  auto attend = [&]() -> Tensor {
    if (r.flex.empty() || r.flex_builtin) return F::scaled_dot_product_attention(q, k, v, opt);
    if (r.flex == "causal") return F::flex_attention(q, k, v, flex::identity, causal, F::FlexOptions().block_mask(&bm));
    if (r.flex == "alibi") return F::flex_attention(q, k, v, alibi);
    return F::flex_attention(q, k, v, flex::identity, same_doc, F::FlexOptions().block_mask(&bm));
  };
  if (r.backward) {
    q.requires_grad_(true), k.requires_grad_(true), v.requires_grad_(true);
    Tensor gout = randn({r.B, r.H, r.L, r.E}, kFloat32, &g);
    m.ms = median_ms(
        [&] {
          Tensor out = attend();
          out.backward(gout);
          q.set_grad({}), k.set_grad({}), v.set_grad({});
        },
        o.min_reps, o.min_seconds);
  } else {
    NoGradGuard ng;
    if (r.linear)
      m.ms = median_ms([&] { F::linear_attention(q, k, v, F::LinearAttentionOptions().causal(r.causal)); },
                       o.min_reps, o.min_seconds);
    else
      m.ms = median_ms([&] { attend(); }, o.min_reps, o.min_seconds);
  }
  m.peak_rss_mb = peak_rss_mb();
  return m;
}

// Number of (query, key) pairs the row's pattern keeps (L = S, no masks),
// counted per query from the band, the global keys and the strided keys.
double visible_pairs(const SdpaBenchRow& r) {
  if (r.flex == "causal") return 0.5 * static_cast<double>(r.L) * (r.L + 1);
  if (r.flex == "alibi") return static_cast<double>(r.L) * r.S;
  if (r.flex == "documents")  // flex: the pairs inside the 8 documents; the built-in computes all L S
    return static_cast<double>(r.L) * r.S / (r.flex_builtin ? 1.0 : 8.0);
  if (r.win_left < 0 && r.win_right < 0 && r.global_tokens == 0 && r.stride == 0)
    return r.causal ? 0.5 * static_cast<double>(r.L) * (r.L + 1) : static_cast<double>(r.L) * r.S;
  double n = 0;
  auto multiples = [&](int64_t c, int64_t a, int64_t b) -> int64_t {  // j in [a, b) with (c - j) % s == 0
    if (r.stride <= 0 || b <= a) return 0;
    auto upto = [&](int64_t x) {  // j in [0, x): c - j in (c - x, c]
      return x <= 0 ? 0 : (c >= 0 ? c / r.stride + 1 : 0) - ((c - x) >= 0 ? (c - x) / r.stride + 1 : 0);
    };
    return upto(b) - upto(a);
  };
  for (int64_t i = 0; i < r.L; ++i) {
    const int64_t reach = r.causal ? std::min(r.S, i + 1) : r.S;
    if (i < r.global_tokens) {  // a global query sees every key it may reach
      n += static_cast<double>(reach);
      continue;
    }
    int64_t lo = 0, hi = reach;
    if (r.win_right >= 0) hi = std::min(hi, i + r.win_right + 1);
    if (r.win_left >= 0) lo = std::max<int64_t>(lo, i - r.win_left);
    hi = std::max(hi, lo);
    const int64_t g = std::min(r.global_tokens, reach);
    // the band, the global keys outside it, the strided keys outside both
    n += static_cast<double>((hi - lo) + std::max<int64_t>(0, std::min(g, lo)) + std::max<int64_t>(0, g - hi));
    n += static_cast<double>(multiples(i, g, lo) + multiples(i, std::max(hi, g), reach));
  }
  return n;
}

}  // namespace

std::vector<SdpaBenchRow> sparse_sdpa_rows() {
  std::vector<SdpaBenchRow> rows;
  for (int64_t L : {4096, 16384, 65536}) {
    SdpaBenchRow local{1, 4, L, L, 64, false, false};
    local.win_left = local.win_right = 128;
    rows.push_back(local);
    SdpaBenchRow global = local;
    global.global_tokens = 16;
    rows.push_back(global);
    SdpaBenchRow lin{1, 4, L, L, 64, true, false};
    lin.linear = true;
    rows.push_back(lin);
    // Sparse Transformer: a causal band plus every 128th key; each query sees
    // about L / 128 strided keys, so the cost is L^2 / 128, not linear.
    SdpaBenchRow strided{1, 4, L, L, 64, true, false};
    strided.win_left = 128, strided.win_right = 0, strided.stride = 128;
    rows.push_back(strided);
  }
  return rows;
}

std::vector<SdpaBenchRow> flex_sdpa_rows() {
  std::vector<SdpaBenchRow> rows;
  for (bool bwd : {false, true}) {
    for (const char* kind : {"causal", "alibi"})
      for (int64_t N : {2048, 4096})
        for (bool builtin : {true, false}) {
          SdpaBenchRow r{1, 4, N, N, 64, std::string(kind) == "causal", bwd};
          r.flex = kind, r.flex_builtin = builtin;
          rows.push_back(r);
        }
    for (bool builtin : {true, false}) {
      SdpaBenchRow r{1, 4, 8192, 8192, 64, false, bwd};
      r.flex = "documents", r.flex_builtin = builtin;
      rows.push_back(r);
    }
  }
  return rows;
}

std::vector<SdpaBenchRow> standard_sdpa_rows() {
  std::vector<SdpaBenchRow> rows;
  const int64_t shapes[][3] = {{8, 512, 64}, {8, 1024, 64}, {8, 2048, 64}, {4, 4096, 64}, {2, 16384, 64}};
  for (bool bwd : {false, true})
    for (bool causal : {false, true})
      for (const auto& s : shapes) rows.push_back({1, s[0], s[1], s[1], s[2], causal, bwd});
  return rows;
}

int run_sdpa_bench(const SdpaBenchOptions& o) {
  const std::vector<SdpaBenchRow> rows = o.rows.empty() ? standard_sdpa_rows() : o.rows;
  CeilingTimer ceilings(o.min_reps, o.min_seconds);
  if (!ceilings.next()) {
    std::fprintf(stderr, "bench sdpa: timing the SGEMM ceiling failed\n");
    return 1;
  }
  const Machine mc = machine();
  if (!o.json) {
    std::printf("scaled_dot_product_attention, float32, %d threads; %s, attn kernels %s, OpenBLAS %s\n",
                get_num_threads(), mc.cpu.c_str(), mc.simd.c_str(), mc.blas.c_str());
    std::printf("ratio: GFLOPS over a 2048^3 SGEMM timed before and after each row (their mean); "
                "'noisy': the two differ by more than 10%%\n");
    std::printf("%3s %3s %6s %6s %4s %-6s %-8s %10s %9s %7s %7s %8s  %s\n", "B", "H", "L", "S", "E", "causal", "pass",
                "ms", "GFLOPS", "SGEMM", "ratio", "rss MB", "pattern");
  }
  int failures = 0;
  double builtin_ms = 0;  // the last built-in row's time, for the flex row after it
  for (size_t i = 0; i < rows.size(); ++i) {
    const SdpaBenchRow& r = rows[i];
    Measured m;
    const bool ok = in_child([&] { return measure(r, o); }, m);
    if (!ceilings.next()) {
      std::fprintf(stderr, "bench sdpa: timing the SGEMM ceiling failed\n");
      return 1;
    }
    if (!ok) {
      std::fprintf(stderr, "bench sdpa: the row B=%lld H=%lld L=%lld failed\n", static_cast<long long>(r.B),
                   static_cast<long long>(r.H), static_cast<long long>(r.L));
      ++failures;
      continue;
    }
    const Ceiling ce = ceilings.around(i);
    const double sg = ce.gflops();
    // linear attention: phi(K)^T V, phi(Q) S and the chunks' triangles, about 4 L E^2 + 2 L 64 E per head
    double flops = r.linear ? r.B * r.H * (4.0 * r.L * r.E * r.E + 2.0 * r.L * 64 * r.E)
                            : 4.0 * r.B * r.H * r.E * visible_pairs(r);
    if (r.backward) flops *= 3.5;
    const double gf = flops / m.ms / 1e6;
    const char* pass = r.backward ? "fwd+bwd" : "fwd";
    std::string pattern;
    if (r.win_left >= 0 || r.win_right >= 0)
      pattern += "window(" + std::to_string(r.win_left) + "," + std::to_string(r.win_right) + ")";
    if (r.global_tokens > 0) pattern += (pattern.empty() ? "" : " + ") + std::to_string(r.global_tokens) + " global";
    if (r.stride > 0) pattern += (pattern.empty() ? "" : " + ") + std::string("stride ") + std::to_string(r.stride);
    if (r.linear) pattern = "linear attention (elu+1)";
    double vs_builtin = 0;  // flex rows: the built-in row's time over this one's
    if (!r.flex.empty()) {
      const char* what = r.flex == "causal" ? "causal" : r.flex == "alibi" ? "ALiBi" : "8 documents";
      if (r.flex_builtin) {
        pattern = std::string("built-in ") + (r.flex == "documents" ? "dense" : what);
        builtin_ms = m.ms;
      } else {
        vs_builtin = builtin_ms > 0 ? builtin_ms / m.ms : 0;
        char buf[64];
        std::snprintf(buf, sizeof buf, " (%.3fx built-in)", vs_builtin);
        pattern = std::string("flex ") + what + (r.flex == "alibi" ? " score_mod" : " mask_mod") + buf;
      }
    }
    if (o.json) {
      nlohmann::json j = {{"B", r.B}, {"H", r.H}, {"L", r.L}, {"S", r.S}, {"E", r.E}, {"causal", r.causal},
                          {"pass", pass}, {"ms", m.ms}, {"gflops", gf}, {"sgemm_before", ce.before},
                          {"sgemm_after", ce.after}, {"sgemm_gflops", sg}, {"ratio", gf / sg},
                          {"noisy", ce.noisy()}, {"peak_rss_mb", m.peak_rss_mb},
                          {"window", {r.win_left, r.win_right}}, {"global_tokens", r.global_tokens},
                          {"stride", r.stride}, {"linear", r.linear}, {"cpu", mc.cpu}, {"simd", mc.simd},
                          {"blas", mc.blas}};
      if (!r.flex.empty()) {
        j["flex"] = r.flex;
        j["impl"] = r.flex_builtin ? "built-in" : "flex";
        if (!r.flex_builtin) j["builtin_over_flex"] = vs_builtin;
      }
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%3lld %3lld %6lld %6lld %4lld %-6s %-8s %10.2f %9.1f %7.1f %7.3f %8.1f  %s%s\n",
                  static_cast<long long>(r.B), static_cast<long long>(r.H), static_cast<long long>(r.L),
                  static_cast<long long>(r.S), static_cast<long long>(r.E), r.causal ? "yes" : "no", pass, m.ms, gf,
                  sg, gf / sg, m.peak_rss_mb, pattern.empty() ? "dense" : pattern.c_str(),
                  ce.noisy() ? "  (noisy)" : "");
    }
    std::fflush(stdout);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace attn::tools
