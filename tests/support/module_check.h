// Checks shared by the module tests: finite-difference gradients of a module
// in float64, and attn::Error messages.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <attn/attn.h>

namespace attn::testing {

// L = sum_k f(inputs)[k] * w_k for fixed random w (drawn from `seed`): the
// gradient of every float input and every parameter of m against central
// differences (h = 1e-6), |numeric - analytic| <= 1e-7 + 1e-5 |numeric|.
// m is converted to float64 and its gradients cleared first.
void module_gradcheck(const std::string& label, nn::Module& m, std::vector<Tensor> inputs,
                      const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f, uint64_t seed = 7);

// f must throw attn::Error whose message contains every part.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts);

}  // namespace attn::testing
