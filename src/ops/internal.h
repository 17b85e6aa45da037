// Internal helpers shared by the ops: argument checks with attn::Error
// messages that name the op and the argument, and autograd recording.
#pragma once

#include <string>
#include <vector>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "attn/tensor.h"
#include "autograd/node.h"
#include "kernels/cpu/kernels.h"

namespace attn::ops {

namespace k = ::attn::kernels::cpu;
using autograd::record;
using autograd::should_record;

inline void check_defined(const char* op, const char* arg, const Tensor& t) {
  ATTN_CHECK(t.defined(), op, ": ", arg, " is undefined");
}

inline void check_float(const char* op, const char* arg, const Tensor& t) {
  check_defined(op, arg, t);
  ATTN_CHECK(t.dtype() == kFloat32 || t.dtype() == kFloat64, op, ": ", arg,
             " must be float32 or float64, got ", dtype_name(t.dtype()));
}

inline void check_dtype(const char* op, const char* arg, const Tensor& t, DType want) {
  check_defined(op, arg, t);
  ATTN_CHECK(t.dtype() == want, op, ": ", arg, " must be ", dtype_name(want), ", got ",
             dtype_name(t.dtype()));
}

inline void check_same_dtype(const char* op, const char* an, const Tensor& a, const char* bn, const Tensor& b) {
  ATTN_CHECK(a.dtype() == b.dtype(), op, ": ", an, " is ", dtype_name(a.dtype()), " but ", bn, " is ",
             dtype_name(b.dtype()), "; convert one with to() (attn does not promote dtypes)");
}

inline void check_dim(const char* op, const char* arg, const Tensor& t, int64_t lo, int64_t hi) {
  ATTN_CHECK(t.dim() >= lo && t.dim() <= hi, op, ": ", arg, " must have ",
             lo == hi ? std::to_string(lo) : std::to_string(lo) + " to " + std::to_string(hi), " dims, got ",
             t.dim(), " (shape ", shape_str(t.shape()), ")");
}

// A 0-d tensor holding value, of dtype dt.
Tensor scalar_like(double value, DType dt);

// Gradient wrt an input of `shape` from a gradient of the broadcast output.
inline Tensor reduce_grad(const Tensor& g, const Shape& shape) {
  return g.shape() == shape ? g : sum_to(g, shape);
}

// A view of `base` (shares storage); the caller records the view's backward.
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);

// The gradient of a slice: zeros of in_shape with g copied into the slice.
Tensor slice_backward(const Tensor& g, const Shape& in_shape, int64_t dim, int64_t start, int64_t end,
                      int64_t step);

}  // namespace attn::ops
