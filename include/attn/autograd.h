// Define-by-run reverse-mode autograd: each differentiable op run on inputs
// that require grad records a Node; Tensor::backward walks the nodes in
// reverse topological order and accumulates into leaves' grad().
#pragma once

#include <vector>

#include "attn/tensor.h"

namespace attn {

// Whether ops record the tape on this thread (true by default).
bool is_grad_enabled();
void set_grad_enabled(bool enabled);

// Disables recording for its scope, as torch::NoGradGuard.
class NoGradGuard {
 public:
  NoGradGuard() : prev_(is_grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

namespace autograd {

// Backward from several roots at once (as torch.autograd.backward).
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads = {},
              bool retain_graph = false);

// Gradients of `outputs` with respect to `inputs` without touching .grad()
// (as torch.autograd.grad with create_graph = false). An input the outputs do
// not depend on gets an undefined tensor.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false);

}  // namespace autograd
}  // namespace attn
