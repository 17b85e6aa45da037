// Finite-difference gradient check (float64, central differences) of every
// differentiable op, from one table of cases run through the shared op table.
// For each case: L = sum(op(inputs) * w) with a fixed random w; the gradient
// autograd gives for every float input is compared with (L(x+h) - L(x-h)) / 2h.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <set>

#include "support/op_cases.h"

namespace attn::testing {
namespace {

class GradCheck : public ::testing::TestWithParam<size_t> {};

TEST_P(GradCheck, MatchesCentralDifferences) {
  Case c = op_cases()[GetParam()];
  if (c.params.is_null()) c.params = json::object();
  SCOPED_TRACE(case_label(c));
  const OpFn& op = get_op(c.op);
  Generator gen(1000 + GetParam());
  std::vector<Tensor> inputs;
  for (const In& in : c.inputs) {
    Tensor t = make_input(in, gen);
    if (in.grad) t.requires_grad_(true);
    inputs.push_back(t);
  }
  Tensor y = op(inputs, c.params);
  ASSERT_EQ(y.dtype(), kFloat64);
  Tensor w = randn(y.shape(), kFloat64, &gen);
  mul(y, w).sum().backward();

  auto loss_at = [&](const std::vector<Tensor>& xs) {
    NoGradGuard ng;
    return mul(op(xs, c.params), w).sum().item<double>();
  };
  const double h = 1e-6;
  int checked = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!c.inputs[i].grad) continue;
    Tensor analytic = inputs[i].grad();
    ASSERT_TRUE(analytic.defined()) << "input " << i << " got no gradient";
    ASSERT_EQ(analytic.shape(), inputs[i].shape());
    Tensor numeric = zeros(inputs[i].shape(), kFloat64);
    double* pn = numeric.data<double>();
    for (int64_t e = 0; e < inputs[i].numel(); ++e) {
      std::vector<Tensor> xs;
      for (const Tensor& t : inputs) xs.push_back(t.detach().clone());
      double* p = xs[i].data<double>();
      const double x0 = p[e];
      p[e] = x0 + h;
      const double lp = loss_at(xs);
      p[e] = x0 - h;
      const double lm = loss_at(xs);
      pn[e] = (lp - lm) / (2 * h);
      ++checked;
    }
    if (c.defined_gradient) c.defined_gradient(i, numeric);
    Comparison cmp = compare("d/d input " + std::to_string(i), analytic, numeric, 1e-5, 1e-6);
    EXPECT_TRUE(cmp.ok) << cmp.message;
  }
  EXPECT_GT(checked, 0);
}

INSTANTIATE_TEST_SUITE_P(AllOps, GradCheck, ::testing::Range<size_t>(0, op_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return op_cases()[info.param].op + "_" + std::to_string(info.param);
                         });

// Every differentiable op of the table has at least one gradient case.
TEST(GradCheckCoverage, EveryTableOpHasACase) {
  std::set<std::string> covered;
  for (const Case& c : op_cases()) covered.insert(c.op);
  for (const auto& [name, fn] : op_table()) {
    if (forward_only_ops().count(name)) {
      EXPECT_FALSE(covered.count(name)) << name << " is forward only but has a gradient case";
    } else {
      EXPECT_TRUE(covered.count(name)) << name << " has no gradient case";
    }
  }
}

}  // namespace
}  // namespace attn::testing
