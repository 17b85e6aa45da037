// The backward engine: collects the nodes reachable from the roots, counts
// their dependencies, then runs them in reverse topological order, summing
// the gradients that reach each node before running it.
#include <atomic>
#include <cmath>
#include <deque>
#include <unordered_map>

#include "attn/ops.h"
#include "autograd/node.h"

namespace attn {

namespace {
thread_local bool g_grad_enabled = true;
}

bool is_grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool enabled) { g_grad_enabled = enabled; }

namespace autograd {

namespace {
thread_local bool g_anomaly = false;

// Counts of NaN and of ±Inf in a floating tensor.
template <class T>
void count_nonfinite(const Tensor& c, int64_t& nan, int64_t& inf) {
  const T* p = c.data<T>();
  for (int64_t i = 0, n = c.numel(); i < n; ++i) {
    const double v = static_cast<double>(p[i]);
    nan += std::isnan(v);
    inf += std::isinf(v);
  }
}

// Throws when `g` (the gradient `node` returned for its input `index`, or
// the gradient given to backward when node is null) holds NaN or Inf.
void check_finite(const Tensor& g, const Node* node, size_t index) {
  if (!g.defined() || !is_floating(g.dtype())) return;
  const Tensor c = g.contiguous();
  int64_t nan = 0, inf = 0;
  if (c.dtype() == kFloat64) count_nonfinite<double>(c, nan, inf);
  else if (c.dtype() == kFloat32) count_nonfinite<float>(c, nan, inf);
  else count_nonfinite<float>(c.to(kFloat32), nan, inf);
  if (nan == 0 && inf == 0) return;
  std::string what;
  if (nan > 0) what = std::to_string(nan) + " NaN";
  if (inf > 0) what += (what.empty() ? "" : " and ") + std::to_string(inf) + " Inf";
  if (node == nullptr)
    throw Error("backward (anomaly mode): the gradient given to backward for tensor " + std::to_string(index) +
                " holds " + what + " of " + std::to_string(c.numel()) + " values");
  throw Error("backward (anomaly mode): " + node->name + " returned " + what + " of " +
              std::to_string(c.numel()) + " values in the gradient of its input " + std::to_string(index) +
              " (shape " + shape_str(c.shape()) + "), the first op of this backward to produce them (the gradients "
              "reaching it were finite)");
}
}  // namespace

bool is_anomaly_enabled() { return g_anomaly; }
void set_detect_anomaly(bool enabled) { g_anomaly = enabled; }

Node::~Node() {
  std::vector<std::shared_ptr<Node>> stack;
  for (auto& n : next)
    if (n && n.use_count() == 1) stack.push_back(std::move(n));
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    for (auto& c : n->next)
      if (c && c.use_count() == 1) stack.push_back(std::move(c));
  }
}

std::vector<Tensor> FunctionNode::apply(const Tensor& grad) {
  if (released)
    throw Error("backward: trying to backward through the graph a second time (through " + name +
                "); its saved tensors were freed after the first backward. Pass retain_graph = true "
                "to the first backward to keep them");
  std::vector<bool> needs(next.size());
  for (size_t i = 0; i < next.size(); ++i) needs[i] = next[i] != nullptr;
  return fn(grad, needs);
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad) {
  auto impl = leaf.lock();
  if (!impl) return {};
  Tensor t(impl);
  NoGradGuard ng;
  if (!impl->grad) {
    // Take the incoming buffer when nothing else can see it (as PyTorch
    // does); otherwise copy, so the leaf's grad never aliases another tensor.
    const bool exclusive = grad.impl_ptr().use_count() == 1 && grad.impl().storage.use_count() == 1 &&
                           grad.is_contiguous() && grad.storage_offset() == 0 && !grad.requires_grad();
    impl->grad = exclusive ? grad.impl_ptr() : grad.contiguous().clone().impl_ptr();
  } else {
    impl->grad = add(Tensor(impl->grad), grad).impl_ptr();
  }
  // A copy: a hook may remove itself (or others) while running.
  const auto hooks = impl->post_accumulate_grad_hooks;
  for (const auto& h : hooks) h.second(t);
  return {};
}

namespace {
std::atomic<int64_t> g_next_hook{1};
// The callbacks queued by the backward running on this thread (null outside one).
thread_local std::vector<std::function<void()>>* g_callbacks = nullptr;
}  // namespace

int64_t register_post_accumulate_grad_hook(const Tensor& leaf, std::function<void(const Tensor&)> hook) {
  ATTN_CHECK(leaf.defined() && leaf.requires_grad() && leaf.is_leaf(), "register_post_accumulate_grad_hook: "
             "the tensor must be a leaf that requires grad");
  ATTN_CHECK(static_cast<bool>(hook), "register_post_accumulate_grad_hook: the hook is empty");
  const int64_t id = g_next_hook.fetch_add(1, std::memory_order_relaxed);
  leaf.impl().post_accumulate_grad_hooks.emplace_back(id, std::move(hook));
  return id;
}

void remove_post_accumulate_grad_hook(const Tensor& leaf, int64_t handle) {
  if (!leaf.defined()) return;
  auto& hooks = leaf.impl().post_accumulate_grad_hooks;
  std::erase_if(hooks, [handle](const auto& h) { return h.first == handle; });
}

void queue_callback(std::function<void()> callback) {
  ATTN_CHECK(g_callbacks != nullptr, "queue_callback: no backward is running on this thread");
  g_callbacks->push_back(std::move(callback));
}

bool should_record(std::initializer_list<const Tensor*> inputs) {
  if (!is_grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

bool should_record(const std::vector<Tensor>& inputs) {
  if (!is_grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  auto& impl = t.impl();
  if (impl.grad_fn) return impl.grad_fn;
  auto acc = impl.grad_accumulator.lock();
  if (!acc) {
    auto a = std::make_shared<AccumulateGrad>();
    a->name = "AccumulateGrad";
    a->leaf = t.impl_ptr();
    a->out_shape = t.shape();
    a->out_dtype = t.dtype();
    impl.grad_accumulator = a;
    acc = a;
  }
  return acc;
}

void record(const char* name, const std::vector<Tensor>& inputs, Tensor& output, BackwardFn fn) {
  auto node = std::make_shared<FunctionNode>();
  node->name = name;
  node->fn = std::move(fn);
  node->next.reserve(inputs.size());
  for (const Tensor& in : inputs) node->next.push_back(gradient_edge(in));
  node->out_shape = output.shape();
  node->out_dtype = output.dtype();
  output.impl().requires_grad = true;
  output.impl().grad_fn = std::move(node);
}

namespace {

// Runs the graph below `roots`. When `capture` is non-empty, gradients that
// reach those nodes are returned instead of flowing into leaves' grad().
std::unordered_map<Node*, Tensor> run_backward(const std::vector<Tensor>& roots,
                                               const std::vector<Tensor>& grads, bool retain_graph,
                                               const std::vector<Node*>& capture) {
  ATTN_CHECK(grads.empty() || grads.size() == roots.size(), "backward: got ", roots.size(),
             " tensors but ", grads.size(), " gradients");
  std::unordered_map<Node*, Tensor> buffer;
  std::vector<std::shared_ptr<Node>> starts;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    ATTN_CHECK(r.defined(), "backward: tensor ", i, " is undefined");
    ATTN_CHECK(r.requires_grad(), "backward: tensor ", i,
               " does not require grad and has no grad_fn (nothing it depends on requires grad)");
    Tensor g = grads.empty() ? Tensor() : grads[i];
    if (g_anomaly) check_finite(g, nullptr, i);
    if (!g.defined()) {
      ATTN_CHECK(r.numel() == 1, "backward: grad can be implicitly created only for scalar outputs; tensor ",
                 i, " has shape ", shape_str(r.shape()), ", pass a gradient of that shape");
      g = ones(r.shape(), r.dtype());
    }
    ATTN_CHECK(g.shape() == r.shape(), "backward: the gradient has shape ", shape_str(g.shape()),
               " but the tensor has shape ", shape_str(r.shape()));
    ATTN_CHECK(g.dtype() == r.dtype(), "backward: the gradient is ", dtype_name(g.dtype()),
               " but the tensor is ", dtype_name(r.dtype()));
    auto node = gradient_edge(r);
    auto it = buffer.find(node.get());
    if (it == buffer.end()) {
      buffer[node.get()] = g.detach();
      starts.push_back(node);
    } else {
      NoGradGuard ng;
      it->second = add(it->second, g);
    }
  }

  // Dependency counts over the reachable graph.
  std::unordered_map<Node*, int> deps;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;
  std::vector<Node*> stack;
  for (auto& s : starts) {
    if (keep.emplace(s.get(), s).second) stack.push_back(s.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& nx : n->next) {
      if (!nx) continue;
      deps[nx.get()]++;
      if (keep.emplace(nx.get(), nx).second) stack.push_back(nx.get());
    }
  }

  std::unordered_map<Node*, Tensor> captured;
  auto is_captured = [&](Node* n) {
    for (Node* c : capture)
      if (c == n) return true;
    return false;
  };
  // Callbacks queued during this backward; an enclosing backward's list is
  // restored afterwards (even when a node throws).
  std::vector<std::function<void()>> callbacks;
  struct Scope {
    std::vector<std::function<void()>>* prev;
    explicit Scope(std::vector<std::function<void()>>* mine) : prev(g_callbacks) { g_callbacks = mine; }
    ~Scope() { g_callbacks = prev; }
  } scope(&callbacks);
  std::deque<Node*> ready;
  for (auto& s : starts)
    if (deps[s.get()] == 0) ready.push_back(s.get());
  NoGradGuard ng;
  while (!ready.empty()) {
    Node* n = ready.front();
    ready.pop_front();
    Tensor g = std::move(buffer[n]);
    buffer.erase(n);
    if (!capture.empty() && is_captured(n)) {
      captured[n] = g;
    }
    std::vector<Tensor> in_grads;
    if (g.defined() && (capture.empty() || dynamic_cast<AccumulateGrad*>(n) == nullptr)) {
      in_grads = n->apply(g);
    }
    if (!retain_graph) n->release();
    for (size_t i = 0; i < n->next.size(); ++i) {
      Node* nx = n->next[i].get();
      if (!nx) continue;
      if (i < in_grads.size() && in_grads[i].defined()) {
        Tensor& gi = in_grads[i];
        if (g_anomaly) check_finite(gi, n, i);
        ATTN_CHECK(gi.shape() == nx->out_shape, "backward: internal error: ", n->name,
                   " returned a gradient of shape ", shape_str(gi.shape()), " for an input of shape ",
                   shape_str(nx->out_shape));
        auto it = buffer.find(nx);
        if (it == buffer.end() || !it->second.defined())
          buffer[nx] = gi;
        else
          it->second = add(it->second, gi);
      }
      if (--deps[nx] == 0) ready.push_back(nx);
    }
  }
  for (size_t i = 0; i < callbacks.size(); ++i) {  // a callback may queue another
    auto cb = std::move(callbacks[i]);
    cb();
  }
  return captured;
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  run_backward(roots, grads, retain_graph, {});
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph) {
  std::vector<std::shared_ptr<Node>> nodes;
  std::vector<Node*> capture;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ATTN_CHECK(inputs[i].defined() && inputs[i].requires_grad(), "grad: input ", i,
               " does not require grad");
    nodes.push_back(gradient_edge(inputs[i]));
    capture.push_back(nodes.back().get());
  }
  auto captured = run_backward(outputs, grad_outputs, retain_graph, capture);
  std::vector<Tensor> out;
  for (Node* c : capture) {
    auto it = captured.find(c);
    out.push_back(it == captured.end() ? Tensor() : it->second);
  }
  return out;
}

}  // namespace autograd

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward({*this}, gradient.defined() ? std::vector<Tensor>{gradient} : std::vector<Tensor>{},
                     retain_graph);
}

std::string Tensor::grad_fn_name() const {
  auto& fn = impl().grad_fn;
  return fn ? fn->name : "";
}

Tensor& Tensor::requires_grad_(bool requires_grad) {
  ATTN_CHECK(is_leaf(), "requires_grad_: only leaf tensors can change requires_grad; this one is the "
             "output of ", grad_fn_name(), " (use detach() to get a leaf)");
  ATTN_CHECK(!requires_grad || is_floating(dtype()), "requires_grad_: only floating-point tensors can "
             "require gradients, this one is ", dtype_name(dtype()));
  impl().requires_grad = requires_grad;
  return *this;
}

}  // namespace attn
