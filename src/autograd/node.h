// Internal: the nodes of the autograd tape and the hook ops use to record.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attn/autograd.h"
#include "attn/tensor.h"

namespace attn::autograd {

// Computes the gradients of a node's inputs from the gradient of its output.
// `needs[i]` tells whether input i wants a gradient; entries for inputs that
// do not may be left undefined.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad, const std::vector<bool>& needs)>;

struct Node {
  std::string name;
  // One entry per input; null where the input needs no gradient.
  std::vector<std::shared_ptr<Node>> next;
  Shape out_shape;
  DType out_dtype = DType::Float32;
  // Releases long chains iteratively (a recursive release of a graph
  // thousands of nodes deep would overflow the stack).
  virtual ~Node();
  virtual std::vector<Tensor> apply(const Tensor& grad) = 0;
  virtual void release() {}
};

// An op's backward closure. Saved tensors live in the closure as detached
// aliases, so a node never keeps its own output alive (no cycles).
struct FunctionNode final : Node {
  BackwardFn fn;
  bool released = false;
  std::vector<Tensor> apply(const Tensor& grad) override;
  void release() override { fn = nullptr; released = true; }
};

// Adds the incoming gradient into a leaf's grad().
struct AccumulateGrad final : Node {
  std::weak_ptr<TensorImpl> leaf;
  std::vector<Tensor> apply(const Tensor& grad) override;
};

// True when grad mode is on and a defined input requires grad.
bool should_record(std::initializer_list<const Tensor*> inputs);
bool should_record(const std::vector<Tensor>& inputs);

// Makes `output` require grad with a node named `name` over `inputs`.
void record(const char* name, const std::vector<Tensor>& inputs, Tensor& output, BackwardFn fn);

// The node a tensor's gradient flows into: its grad_fn, or its leaf
// accumulator; null when it does not require grad.
std::shared_ptr<Node> gradient_edge(const Tensor& t);

}  // namespace attn::autograd
