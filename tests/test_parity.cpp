// PyTorch parity: runs every case that tests/parity/gen_ops.py wrote (inputs,
// PyTorch's outputs and input gradients for a random output gradient) through
// the same-named op of the shared table, and compares forward and backward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include <attn/attention.h>

#include "support/accuracy.h"
#include "support/op_table.h"

namespace attn::testing {
namespace {

// float32 tolerances: |attn - torch| <= atol + rtol * |torch|.
struct Tolerance {
  double rtol, atol;
  const char* why;
};
const Tolerance kDefault{1e-5, 1e-6, "single elementwise op, one rounding"};

Tolerance tolerance_for(const std::string& op) {
  // Every op passes at the default on random cases over many seeds except
  // these (measured with ATTN_PARITY_STRICT=1, which forces the default):
  static const std::map<std::string, Tolerance> table = {
      {"gelu", {1e-5, 5e-6, "PyTorch's float32 tanh saturates to +-1 for |x| > ~4.5 and flushes the "
                            "tanh-gelu derivative tail (<= 2e-6) to 0; attn keeps it"}},
  };
  auto it = table.find(op);
  if (std::getenv("ATTN_PARITY_STRICT")) return kDefault;
  return it == table.end() ? kDefault : it->second;
}

// The counts the README states ("357 random cases of 93 ops, 39 of them
// forward only"): gen_ops.py is seeded, so a run that draws other counts
// has lost or gained cases.
constexpr size_t kOps = 93;
constexpr int kCases = 357, kForwardOnlyCases = 39;

TEST(Parity, OpsMatchPyTorch) {
  const char* path = std::getenv("ATTN_PARITY_FILE");
  ASSERT_NE(path, nullptr) << "ATTN_PARITY_FILE is not set (ctest sets it after running parity_generate)";
  io::SafetensorsFile f = io::read_safetensors(path);
  ASSERT_FALSE(f.metadata.empty());
  std::set<std::string> ops;
  int cases = 0, forward_only = 0, forward = 0, backward = 0;
  AccuracyTable accuracy;
  for (const auto& [key, meta_str] : f.metadata) {
    const json meta = json::parse(meta_str);
    const std::string op = meta.at("op");
    const json params = meta.at("params").is_null() ? json::object() : meta.at("params");
    const std::vector<bool> grads = meta.at("grad").get<std::vector<bool>>();
    const std::string label = key + " " + op + " " + params.dump();
    SCOPED_TRACE(label);
    ++cases;
    ops.insert(op);
    // The table, not the file, decides which ops are forward only; the file
    // must agree (gen_ops.py checks PyTorch agrees with its own list).
    const bool fwd_only = forward_only_ops().count(op) > 0;
    EXPECT_EQ(meta.at("forward_only").get<bool>(), fwd_only) << "forward-only lists differ";
    std::vector<Tensor> inputs;
    for (size_t j = 0; j < grads.size(); ++j) {
      Tensor t = f.tensors.at(key + ".in" + std::to_string(j)).clone();
      if (grads[j]) t.requires_grad_(true);
      inputs.push_back(t);
    }
    if (fwd_only) {
      // Bool or int64 results, exactly PyTorch's, and no gradient recorded
      // even where an input asks for one.
      Tensor out = get_op(op)(inputs, params);
      EXPECT_TRUE(out.dtype() == kBool || out.dtype() == kInt64) << "dtype " << dtype_name(out.dtype());
      EXPECT_FALSE(out.requires_grad()) << "a forward-only op recorded a gradient";
      Comparison c = compare(label + " forward", out, f.tensors.at(key + ".out"), 0.0, 0.0);
      EXPECT_TRUE(c.ok) << c.message;
      EXPECT_EQ(out.dtype(), f.tensors.at(key + ".out").dtype());
      ++forward;
      ++forward_only;
      continue;
    }
    // layer_norm's input gradient scales with 1/std of each row: for short
    // rows float32 PyTorch is itself off the float64 value by up to 1e-3
    // (measured), so attn is judged against PyTorch in float64 there.
    const bool f64 = meta.at("judged64").get<bool>();
    const Tolerance tol = f64 ? Tolerance{kDefault.rtol, kDefault.atol, "judged against PyTorch in float64"}
                              : tolerance_for(op);
    Tensor out = get_op(op)(inputs, params);
    EXPECT_EQ(out.dtype(), kFloat32) << "a float32 op must return float32";
    Comparison c = compare(label + " forward", out, f.tensors.at(key + (f64 ? ".out64" : ".out")), tol.rtol,
                           tol.atol);
    EXPECT_TRUE(c.ok) << c.message << " [tolerance: " << tol.why << "]";
    accuracy.add(op, out, f.tensors.at(key + ".out"), f.tensors.at(key + ".out64"));
    ++forward;
    // Every other case is differentiable: an output without a gradient is an
    // op that stopped recording autograd.
    EXPECT_TRUE(std::count(grads.begin(), grads.end(), true) > 0) << "a differentiable case without a float input";
    if (!out.requires_grad()) {
      ADD_FAILURE() << label << ": the output of a differentiable op does not require grad";
      continue;
    }
    out.backward(f.tensors.at(key + ".gout"));
    for (size_t j = 0; j < grads.size(); ++j) {
      if (!grads[j]) continue;
      Tensor ref = f.tensors.at(key + (f64 ? ".grad64_" : ".grad") + std::to_string(j));
      Comparison g = compare(label + " grad of input " + std::to_string(j), inputs[j].grad(), ref, tol.rtol,
                             tol.atol);
      EXPECT_TRUE(g.ok) << g.message << " [tolerance: " << tol.why << "]";
      accuracy.add(op, inputs[j].grad(), f.tensors.at(key + ".grad" + std::to_string(j)),
                   f.tensors.at(key + ".grad64_" + std::to_string(j)));
      ++backward;
    }
  }
  std::printf("parity: %d cases of %zu ops (%d forward only), %d forward and %d gradient comparisons against PyTorch\n",
              cases, ops.size(), forward_only, forward, backward);
  accuracy.report("ops", "ATTN_ACCURACY_OPS");
  EXPECT_EQ(ops.size(), kOps);
  EXPECT_EQ(cases, kCases);
  EXPECT_EQ(forward_only, kForwardOnlyCases);
  // Every op of the table has cases, and the file names no op outside it.
  // dropout is the one exception: its mask comes from attn's Philox
  // generator, which PyTorch cannot reproduce (test_gradcheck and the
  // dropout statistics in test_attention and test_nn check it).
  for (const auto& [name, fn] : op_table())
    EXPECT_TRUE(ops.count(name) || name == "dropout") << "no parity case for " << name;
  for (const std::string& name : ops) EXPECT_TRUE(op_table().count(name)) << name << " is not in the op table";
}

// Attention: attn's fused float32 kernel against PyTorch's composition (see
// tests/parity/gen_sdpa.py). Errors scale with the largest reference entry:
// outputs and gradients are sums over up to 257 keys, in other orders, and
// FlashAttention-2's dS = P * (dP - D) takes D from the float32 output while
// PyTorch's softmax backward cancels exactly (measured: up to 1.3e-5 where
// PyTorch gives exactly 0, for rows whose probability sits on one key). So
// |attn - torch| <= 2e-5 * max(1, max|torch|) + 1e-5 * |torch|;
// ATTN_PARITY_STRICT=1 re-measures with atol 1e-6.
TEST(Parity, SdpaMatchesPyTorch) {
  const char* path = std::getenv("ATTN_PARITY_SDPA_FILE");
  ASSERT_NE(path, nullptr) << "ATTN_PARITY_SDPA_FILE is not set (ctest sets it after running parity_generate)";
  io::SafetensorsFile f = io::read_safetensors(path);
  ASSERT_FALSE(f.metadata.empty());
  int compared = 0;
  for (const auto& [key, meta_str] : f.metadata) {
    const json c = json::parse(meta_str);
    SCOPED_TRACE(key + " " + meta_str);
    auto T = [&](const std::string& n) { return f.tensors.at(key + "." + n); };
    auto has = [&](const std::string& n) { return f.tensors.count(key + "." + n) > 0; };
    Tensor q = T("q").clone().requires_grad_(true), k = T("k").clone().requires_grad_(true);
    Tensor v = T("v").clone().requires_grad_(true);
    F::SdpaOptions o;
    o.is_causal(c.at("causal").get<bool>())
        .causal_align(c.at("bottom_right").get<bool>() ? F::CausalAlign::BottomRight : F::CausalAlign::TopLeft)
        .window(F::Window(c.at("window")[0].get<int64_t>(), c.at("window")[1].get<int64_t>()))
        .softcap(c.at("softcap").get<double>())
        .enable_gqa(c.at("Hq").get<int64_t>() != c.at("Hk").get<int64_t>())
        .global_tokens(c.value("global_tokens", int64_t{0}))
        .stride(c.value("stride", int64_t{0}));
    if (c.at("scale_given").get<bool>()) o.scale(c.at("scale").get<double>());
    Tensor mask;
    if (has("mask")) {
      mask = T("mask").clone();
      if (mask.dtype() != kBool) mask.requires_grad_(true);
      o.attn_mask(mask);
    }
    if (has("alibi")) o.alibi_slopes(T("alibi"));
    if (has("klen")) o.key_lengths(T("klen"));
    Tensor out = F::scaled_dot_product_attention(q, k, v, o);
    out.backward(T("gout"));
    std::vector<std::pair<std::string, Tensor>> pairs = {{"out", out}, {"dq", q.grad()}, {"dk", k.grad()}, {"dv", v.grad()}};
    if (has("dmask")) pairs.push_back({"dmask", mask.grad()});
    for (auto& [name, got] : pairs) {
      Tensor ref = T(name);
      const double scale = std::max(1.0, amax(abs(ref).reshape({-1}), {0}).item<double>());
      const double atol = std::getenv("ATTN_PARITY_STRICT") ? 1e-6 : 2e-5 * scale;
      Comparison cmp = compare(key + " " + name, got, ref, 1e-5, atol);
      EXPECT_TRUE(cmp.ok) << cmp.message;
      ++compared;
    }
  }
  std::printf("parity: %zu attention cases, %d comparisons against PyTorch\n", f.metadata.size(), compared);
}

}  // namespace
}  // namespace attn::testing
