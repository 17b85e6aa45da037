// PyTorch parity: runs every case that tests/parity/gen_ops.py wrote (inputs,
// PyTorch's outputs and input gradients for a random output gradient) through
// the same-named op of the shared table, and compares forward and backward.
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>

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

TEST(Parity, OpsMatchPyTorch) {
  const char* path = std::getenv("ATTN_PARITY_FILE");
  ASSERT_NE(path, nullptr) << "ATTN_PARITY_FILE is not set (ctest sets it after running parity_generate)";
  io::SafetensorsFile f = io::read_safetensors(path);
  ASSERT_FALSE(f.metadata.empty());
  std::set<std::string> ops;
  int forward = 0, backward = 0;
  for (const auto& [key, meta_str] : f.metadata) {
    const json meta = json::parse(meta_str);
    const std::string op = meta.at("op");
    const json params = meta.at("params").is_null() ? json::object() : meta.at("params");
    const std::vector<bool> grads = meta.at("grad").get<std::vector<bool>>();
    const std::string label = key + " " + op + " " + params.dump();
    SCOPED_TRACE(label);
    std::vector<Tensor> inputs;
    for (size_t j = 0; j < grads.size(); ++j) {
      Tensor t = f.tensors.at(key + ".in" + std::to_string(j)).clone();
      if (grads[j]) t.requires_grad_(true);
      inputs.push_back(t);
    }
    // layer_norm's input gradient scales with 1/std of each row: for short
    // rows float32 PyTorch is itself off the float64 value by up to 1e-3
    // (measured), so attn is judged against PyTorch in float64 there.
    const bool f64 = f.tensors.count(key + ".out64") > 0;
    const Tolerance tol = f64 ? Tolerance{kDefault.rtol, kDefault.atol, "judged against PyTorch in float64"}
                              : tolerance_for(op);
    Tensor out = get_op(op)(inputs, params);
    Comparison c = compare(label + " forward", out, f.tensors.at(key + (f64 ? ".out64" : ".out")), tol.rtol,
                           tol.atol);
    EXPECT_TRUE(c.ok) << c.message << " [tolerance: " << tol.why << "]";
    ++forward;
    if (!out.requires_grad()) continue;
    out.backward(f.tensors.at(key + ".gout"));
    for (size_t j = 0; j < grads.size(); ++j) {
      if (!grads[j]) continue;
      Tensor ref = f.tensors.at(key + (f64 ? ".grad64_" : ".grad") + std::to_string(j));
      Comparison g = compare(label + " grad of input " + std::to_string(j), inputs[j].grad(), ref, tol.rtol,
                             tol.atol);
      EXPECT_TRUE(g.ok) << g.message << " [tolerance: " << tol.why << "]";
      ++backward;
    }
    ops.insert(op);
  }
  std::printf("parity: %zu ops, %d forward and %d gradient comparisons against PyTorch\n", ops.size(), forward,
              backward);
  EXPECT_GE(ops.size(), 30u);
}

}  // namespace
}  // namespace attn::testing
