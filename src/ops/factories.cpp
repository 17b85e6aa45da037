// Factories: constant, range and random tensors.
#include <cmath>

#include "ops/internal.h"

namespace attn {

using namespace ops;

namespace {
Tensor finish(Tensor t, const TensorOptions& o, const char* op) {
  if (o.requires_grad()) {
    ATTN_CHECK(is_floating(o.dtype()), op, ": only floating-point tensors can require gradients, got ",
               dtype_name(o.dtype()));
    t.requires_grad_(true);
  }
  return t;
}
void check_shape(const Shape& s, const char* op) { shape_numel(s, op); }
}  // namespace

Tensor empty(const Shape& shape, TensorOptions o) {
  check_shape(shape, "empty");
  return finish(Tensor::make(shape, o.dtype()), o, "empty");
}

Tensor zeros(const Shape& shape, TensorOptions o) {
  check_shape(shape, "zeros");
  return finish(Tensor::make(shape, o.dtype(), true), o, "zeros");
}

Tensor ones(const Shape& shape, TensorOptions o) { return full(shape, 1.0, o); }

Tensor full(const Shape& shape, double value, TensorOptions o) {
  check_shape(shape, "full");
  Tensor t = Tensor::make(shape, o.dtype());
  k::fill(t, value);
  return finish(t, o, "full");
}

Tensor scalar_tensor(double value, TensorOptions o) { return full({}, value, o); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.dtype()); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype()); }

Tensor arange(double end, TensorOptions o) { return arange(0, end, 1, o); }

Tensor arange(double start, double end, double step, TensorOptions o) {
  ATTN_CHECK(step != 0, "arange: step must be non-zero");
  ATTN_CHECK(std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
             "arange: start, end and step must be finite");
  ATTN_CHECK((end - start) / step >= 0 || start == end, "arange: the range [", start, ", ", end,
             ") is empty in the direction of step ", step);
  const double count = std::ceil((end - start) / step);
  ATTN_CHECK(count < 9.0e15, "arange: ", count, " elements are too many");
  const int64_t n = std::max<int64_t>(0, static_cast<int64_t>(count));
  Tensor t = Tensor::make({n}, o.dtype());
  k::fill_arange(t, start, step);
  return finish(t, o, "arange");
}

Tensor linspace(double start, double end, int64_t steps, TensorOptions o) {
  ATTN_CHECK(steps >= 0, "linspace: steps must be non-negative, got ", steps);
  Tensor t = Tensor::make({steps}, o.dtype());
  ATTN_CHECK(o.dtype() == kFloat32 || o.dtype() == kFloat64, "linspace: dtype must be float32 or float64, got ",
             dtype_name(o.dtype()));
  k::fill_linspace(t, start, end);
  return finish(t, o, "linspace");
}

Tensor eye(int64_t n, int64_t m, TensorOptions o) {
  if (m < 0) m = n;
  ATTN_CHECK(n >= 0, "eye: n must be non-negative, got ", n);
  Tensor t = Tensor::make({n, m}, o.dtype(), true);
  for (int64_t i = 0; i < std::min(n, m); ++i) k::fill(t.select(0, i).narrow(0, i, 1), 1.0);
  return finish(t, o, "eye");
}

Tensor randn(const Shape& shape, TensorOptions o, Generator* gen) {
  check_shape(shape, "randn");
  Tensor t = Tensor::make(shape, o.dtype());
  ATTN_CHECK(o.dtype() == kFloat32 || o.dtype() == kFloat64, "randn: dtype must be float32 or float64, got ",
             dtype_name(o.dtype()));
  k::fill_normal(t, 0.0, 1.0, gen ? *gen : default_generator());
  return finish(t, o, "randn");
}

Tensor rand(const Shape& shape, TensorOptions o, Generator* gen) {
  check_shape(shape, "rand");
  ATTN_CHECK(o.dtype() == kFloat32 || o.dtype() == kFloat64, "rand: dtype must be float32 or float64, got ",
             dtype_name(o.dtype()));
  Tensor t = Tensor::make(shape, o.dtype());
  k::fill_uniform(t, 0.0, 1.0, gen ? *gen : default_generator());
  return finish(t, o, "rand");
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions o, Generator* gen) {
  check_shape(shape, "randint");
  ATTN_CHECK(high > low, "randint: high (", high, ") must be greater than low (", low, ")");
  Tensor t = Tensor::make(shape, kInt64);
  k::fill_randint(t, low, high, gen ? *gen : default_generator());
  return o.dtype() == kInt64 ? t : t.to(o.dtype());
}

Tensor randn_like(const Tensor& t, Generator* gen) { return randn(t.shape(), t.dtype(), gen); }
Tensor rand_like(const Tensor& t, Generator* gen) { return rand(t.shape(), t.dtype(), gen); }

template <class T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape_in) {
  Shape shape = shape_in.empty() ? Shape{static_cast<int64_t>(data.size())} : shape_in;
  ATTN_CHECK(shape_numel(shape, "from_vector") == static_cast<int64_t>(data.size()), "from_vector: ",
             data.size(), " values do not fill shape ", shape_str(shape), " (", shape_numel(shape), " elements)");
  Tensor t = Tensor::make(shape, dtype_of<T>::value);
  T* p = static_cast<T*>(t.raw_data());
  for (size_t i = 0; i < data.size(); ++i) p[i] = data[i];
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&);
template <>
Tensor from_vector<bool>(const std::vector<bool>& data, const Shape& shape_in) {
  Shape shape = shape_in.empty() ? Shape{static_cast<int64_t>(data.size())} : shape_in;
  ATTN_CHECK(shape_numel(shape, "from_vector") == static_cast<int64_t>(data.size()), "from_vector: ",
             data.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = Tensor::make(shape, kBool);
  bool* p = t.data<bool>();
  for (size_t i = 0; i < data.size(); ++i) p[i] = data[i];
  return t;
}

Tensor from_vector(const std::vector<int>& data, const Shape& shape) {
  return from_vector(std::vector<int64_t>(data.begin(), data.end()), shape);
}

}  // namespace attn
