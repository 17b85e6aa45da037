// attn::Tensor: an N-d strided view of refcounted, 64-byte aligned storage,
// with the autograd metadata of a define-by-run tape.
//
// A default-constructed Tensor is undefined (defined() is false); optional
// tensor arguments throughout attn default to {}. Views (reshape when possible,
// view, transpose, permute, slice, select, narrow, unsqueeze, squeeze, expand)
// share storage with their base; contiguous(), clone() and to() copy.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attn/dtype.h"
#include "attn/error.h"

namespace attn {

using Shape = std::vector<int64_t>;

// "(2, 3)"; "()" for a 0-d shape.
std::string shape_str(const Shape& s);
// Product of the sizes; throws attn::Error naming `op` if it overflows int64
// or a size is negative.
int64_t shape_numel(const Shape& s, const char* op = "shape");

// Raw bytes. `owner` keeps whatever backs `data` alive (an aligned heap
// block, an mmap'd file region, ...).
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<void> owner;
  // A zero-filled, 64-byte aligned block of at least `nbytes`.
  static std::shared_ptr<Storage> allocate(size_t nbytes, bool zero = false);
};

namespace autograd {
struct Node;
}
class Tensor;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = DType::Float32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<autograd::Node> grad_fn;        // null for leaves
  std::shared_ptr<TensorImpl> grad;               // accumulated gradient of a leaf
  std::weak_ptr<autograd::Node> grad_accumulator;  // the leaf's accumulation node
  // Called with the leaf after a backward has accumulated into its grad
  // (autograd::register_post_accumulate_grad_hook); (handle, hook).
  std::vector<std::pair<int64_t, std::function<void(const Tensor&)>>> post_accumulate_grad_hooks;
};

// Factory options, as PyTorch's TensorOptions: `attn::zeros({2, 3}, attn::kFloat64)`
// or `attn::zeros({2, 3}, attn::TensorOptions().dtype(attn::kFloat64).requires_grad(true))`.
struct TensorOptions {
  TensorOptions() = default;
  TensorOptions(DType d) : dtype_(d) {}  // NOLINT: implicit, as in PyTorch
  TensorOptions& dtype(DType d) { dtype_ = d; return *this; }
  TensorOptions& requires_grad(bool r) { requires_grad_ = r; return *this; }
  DType dtype() const { return dtype_; }
  bool requires_grad() const { return requires_grad_; }

 private:
  DType dtype_ = DType::Float32;
  bool requires_grad_ = false;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A new contiguous tensor with uninitialised (zero = false) or zeroed storage.
  static Tensor make(const Shape& shape, DType dtype, bool zero = false);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& sizes() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t size(int64_t d) const;    // d may be negative
  int64_t stride(int64_t d) const;  // d may be negative
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t numel() const;
  DType dtype() const { return impl().dtype; }
  size_t itemsize() const { return attn::itemsize(dtype()); }
  int64_t storage_offset() const { return impl().offset; }
  bool is_contiguous() const;
  bool is_floating_point() const { return is_floating(dtype()); }

  // Pointer to element 0 of this view. T must match dtype() (attn::Error otherwise).
  template <class T> T* data() const;
  void* raw_data() const;
  // The single element, converted to T; attn::Error unless numel() == 1.
  template <class T> T item() const;

  // Copies
  Tensor contiguous() const;  // this tensor itself when already contiguous
  Tensor clone() const;
  Tensor to(DType dtype) const;  // this tensor itself when dtype matches

  // Views and reshapes (differentiable)
  Tensor reshape(const Shape& shape) const;  // a view when the strides allow, else a copy
  Tensor view(const Shape& shape) const;     // always a view; attn::Error if impossible
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  // transpose of a tensor with at most 2 dims
  Tensor permute(const Shape& dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor operator[](int64_t index) const { return select(0, index); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;  // -1 keeps a size
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;

  // Autograd
  bool requires_grad() const { return impl().requires_grad; }
  // Marks a leaf as requiring gradients; attn::Error on a non-leaf or a
  // non-floating tensor.
  Tensor& requires_grad_(bool requires_grad = true);
  Tensor grad() const;                 // undefined until a backward reaches this leaf
  void set_grad(const Tensor& grad) const;  // set or clear (pass {}) the accumulated gradient
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  std::string grad_fn_name() const;  // "" for leaves
  // Reverse-mode differentiation from this tensor. `gradient` is required for
  // non-scalars; the graph is freed unless retain_graph is true.
  void backward(const Tensor& gradient = {}, bool retain_graph = false) const;
  Tensor detach() const;  // shares storage, no graph

  // In-place, outside autograd: attn::Error on a tensor that requires grad
  // while grad mode is on (wrap optimizer steps in NoGradGuard).
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // src broadcastable to this shape, any dtype
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(double value);

  // Reductions as methods (see ops.h)
  Tensor sum() const;
  Tensor sum(const Shape& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const Shape& dims, bool keepdim = false) const;

  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

  std::string to_string() const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Wraps dims such as -1 into [0, ndim); attn::Error naming `op` if out of range.
int64_t wrap_dim(int64_t d, int64_t ndim, const char* op);

template <class T>
T* Tensor::data() const {
  ATTN_CHECK(defined(), "data: the tensor is undefined");
  ATTN_CHECK(dtype_of<std::remove_const_t<T>>::value == dtype(), "data: the tensor is ",
             dtype_name(dtype()), " but data<", dtype_name(dtype_of<std::remove_const_t<T>>::value),
             ">() was asked for");
  return static_cast<T*>(raw_data());
}

extern template float Tensor::item<float>() const;
extern template double Tensor::item<double>() const;
extern template int64_t Tensor::item<int64_t>() const;
extern template bool Tensor::item<bool>() const;
extern template int Tensor::item<int>() const;

}  // namespace attn
