// See module_check.h.
#include "support/module_check.h"

#include <gtest/gtest.h>

#include <cmath>

namespace attn::testing {

void module_gradcheck(const std::string& label, nn::Module& m, std::vector<Tensor> inputs,
                      const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f, uint64_t seed) {
  SCOPED_TRACE(label);
  m.to(kFloat64);
  m.zero_grad();
  for (auto& x : inputs)
    if (x.is_floating_point()) x = x.to(kFloat64).detach().requires_grad_(true);
  Generator gen(seed);
  std::vector<Tensor> outs = f(inputs), ws;
  Tensor loss = zeros({}, kFloat64);
  for (auto& o : outs) {
    ws.push_back(randn(o.shape(), kFloat64, &gen));
    loss = loss + (o * ws.back()).sum();
  }
  loss.backward();
  auto eval = [&] {
    NoGradGuard ng;
    auto o = f(inputs);
    double s = 0;
    for (size_t i = 0; i < o.size(); ++i) s += (o[i] * ws[i]).sum().item<double>();
    return s;
  };
  std::vector<std::pair<std::string, Tensor>> targets;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].is_floating_point()) targets.emplace_back("input " + std::to_string(i), inputs[i]);
  for (auto& p : m.named_parameters()) targets.push_back(p);
  const double h = 1e-6;
  int checked = 0;
  for (auto& [name, t] : targets) {
    Tensor g = t.grad();
    if (!g.defined()) g = zeros(t.shape(), kFloat64);
    Tensor gc = g.contiguous();  // kept alive while its data is read
    const double* pg = gc.data<double>();
    Tensor data = t.detach();  // shares storage: perturbed in place
    double* p = data.data<double>();
    double worst = -1;  // the largest |numeric - analytic| - (1e-7 + 1e-5 |numeric|)
    for (int64_t e = 0; e < t.numel(); ++e) {
      const double x0 = p[e];
      p[e] = x0 + h;
      const double lp = eval();
      p[e] = x0 - h;
      const double lm = eval();
      p[e] = x0;
      const double num = (lp - lm) / (2 * h);
      worst = std::max(worst, std::abs(num - pg[e]) - (1e-7 + 1e-5 * std::abs(num)));
      ++checked;
    }
    EXPECT_LE(worst, 0.0) << name;
  }
  EXPECT_GT(checked, 0);
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no attn::Error; expected one containing '" << parts[0] << "'";
  } catch (const Error& e) {
    for (auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  }
}

}  // namespace attn::testing
