// Define-by-run reverse-mode autograd: each differentiable op run on inputs
// that require grad records a Node; Tensor::backward walks the nodes in
// reverse topological order and accumulates into leaves' grad().
#pragma once

#include <functional>
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

// Anomaly detection, as torch.autograd.set_detect_anomaly: while on (per
// thread), backward checks every gradient each node returns and throws
// attn::Error naming the first op whose backward produced NaN or Inf (and
// which of its inputs, the shape, and how many values), instead of letting
// the non-finite values spread into the leaves. Costs one pass over every
// gradient.
bool is_anomaly_enabled();
void set_detect_anomaly(bool enabled);

// Turns anomaly detection on (or off) for its scope, as
// torch::autograd::DetectAnomalyGuard / torch.autograd.detect_anomaly().
class DetectAnomalyGuard {
 public:
  explicit DetectAnomalyGuard(bool enabled = true) : prev_(is_anomaly_enabled()) { set_detect_anomaly(enabled); }
  ~DetectAnomalyGuard() { set_detect_anomaly(prev_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool prev_;
};

// Backward from several roots at once (as torch.autograd.backward).
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads = {},
              bool retain_graph = false);

// Gradients of `outputs` with respect to `inputs` without touching .grad()
// (as torch.autograd.grad with create_graph = false). An input the outputs do
// not depend on gets an undefined tensor.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false);

// Calls hook(leaf) each time a backward has accumulated a gradient into
// leaf.grad() (as torch's Tensor.register_post_accumulate_grad_hook): the
// moment a parameter's gradient is final for this backward, which is when
// data-parallel training can start sending it. Not called by grad(), which
// leaves .grad() alone. Returns a handle for remove_post_accumulate_grad_hook.
int64_t register_post_accumulate_grad_hook(const Tensor& leaf, std::function<void(const Tensor&)> hook);
void remove_post_accumulate_grad_hook(const Tensor& leaf, int64_t handle);

// Runs `callback` when the backward that is running now has finished every
// node (as torch's Variable._execution_engine.queue_callback); callable only
// from inside a backward (a hook or a node). Callbacks run in the order queued.
void queue_callback(std::function<void()> callback);

}  // namespace autograd
}  // namespace attn
