// Views (shared storage, differentiable), copies and in-place ops on Tensor.
#include <limits>
#include <algorithm>
#include <numeric>
#include <optional>

#include "ops/internal.h"

namespace attn {

using namespace ops;

namespace ops {

Tensor scalar_like(double value, DType dt) {
  Tensor t = Tensor::make({}, dt);
  k::fill(t, value);
  return t;
}

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  shape_numel(shape, "view");  // a stride-0 view (expand) can name more elements than int64 counts
  auto im = std::make_shared<TensorImpl>();
  im->storage = base.impl().storage;
  im->offset = offset;
  im->shape = std::move(shape);
  im->strides = std::move(strides);
  im->dtype = base.dtype();
  return Tensor(std::move(im));
}

Tensor slice_backward(const Tensor& g, const Shape& in_shape, int64_t dim, int64_t start, int64_t end,
                      int64_t step) {
  Tensor out = Tensor::make(in_shape, g.dtype(), /*zero=*/true);
  NoGradGuard ng;
  k::copy(g, out.slice(dim, start, end, step));
  return out;
}

}  // namespace ops

namespace {

Shape infer_shape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int64_t infer = -1, prod = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      ATTN_CHECK(infer < 0, op, ": only one dim can be -1, got ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      ATTN_CHECK(out[i] >= 0, op, ": invalid size ", out[i], " in ", shape_str(shape));
      ATTN_CHECK(out[i] == 0 || prod <= std::numeric_limits<int64_t>::max() / out[i], op,
                 ": the number of elements of ", shape_str(shape), " overflows int64");
      prod *= out[i];
    }
  }
  if (infer >= 0) {
    ATTN_CHECK(prod != 0 && numel % prod == 0, op, ": shape ", shape_str(shape),
               " is invalid for a tensor of ", numel, " elements");
    out[infer] = numel / prod;
  }
  ATTN_CHECK(shape_numel(out, op) == numel, op, ": shape ", shape_str(shape), " is invalid for a tensor of ",
             numel, " elements");
  return out;
}

// Strides that view (old_shape, old_strides) as new_shape, if any (PyTorch's computeStride).
std::optional<Shape> view_strides(const Shape& os, const Shape& ost, const Shape& ns) {
  Shape nst(ns.size());
  int64_t numel = 1;
  for (int64_t d : os) numel *= d;
  if (os.empty() || numel == 0 || numel == 1) {
    int64_t acc = 1;
    for (int64_t i = static_cast<int64_t>(ns.size()) - 1; i >= 0; --i) {
      nst[i] = acc;
      acc *= std::max<int64_t>(ns[i], 1);
    }
    return nst;
  }
  int64_t view_d = static_cast<int64_t>(ns.size()) - 1;
  int64_t chunk_base = ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = static_cast<int64_t>(os.size()) - 1; td >= 0; --td) {
    tensor_numel *= os[td];
    if (td == 0 || (os[td - 1] != 1 && ost[td - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || ns[view_d] == 1)) {
        nst[view_d] = view_numel * chunk_base;
        view_numel *= ns[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (td > 0) {
        chunk_base = ost[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return nst;
}

void check_inplace(const Tensor& t, const char* op) {
  ATTN_CHECK(!(t.requires_grad() && is_grad_enabled()), op,
             ": in-place ops on a tensor that requires grad are not recorded by autograd; run them "
             "under NoGradGuard (as an optimizer step does) or use the out-of-place op");
}

}  // namespace

Tensor Tensor::view(const Shape& shape_in) const {
  Shape ns = infer_shape(shape_in, numel(), "view");
  auto st = view_strides(shape(), strides(), ns);
  ATTN_CHECK(st.has_value(), "view: a tensor of shape ", shape_str(shape()), " and strides ",
             shape_str(strides()), " cannot be viewed as ", shape_str(ns),
             " without a copy; use reshape() instead");
  Tensor out = make_view(*this, ns, *st, storage_offset());
  if (should_record({this})) {
    Shape in = shape();
    record("ViewBackward", {*this}, out, [in](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{g.reshape(in)};
    });
  }
  return out;
}

Tensor Tensor::reshape(const Shape& shape_in) const {
  Shape ns = infer_shape(shape_in, numel(), "reshape");
  if (view_strides(shape(), strides(), ns)) return view(ns);
  return contiguous().view(ns);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = Tensor::make(shape(), dtype());
  k::copy(*this, out);
  if (should_record({this})) {
    record("CloneBackward", {*this}, out,
           [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
  }
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = Tensor::make(shape(), dt);
  k::copy(*this, out);
  if (is_floating(dt) && is_floating(dtype()) && should_record({this})) {
    DType src = dtype();
    record("ToCopyBackward", {*this}, out,
           [src](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g.to(src)}; });
  }
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  d0 = wrap_dim(d0, dim(), "transpose");
  d1 = wrap_dim(d1, dim(), "transpose");
  if (dim() == 0) return view({});
  Shape sh = shape(), st = strides();
  std::swap(sh[d0], sh[d1]);
  std::swap(st[d0], st[d1]);
  Tensor out = make_view(*this, sh, st, storage_offset());
  if (should_record({this})) {
    record("TransposeBackward", {*this}, out, [d0, d1](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{g.transpose(d0, d1)};
    });
  }
  return out;
}

Tensor Tensor::t() const {
  ATTN_CHECK(dim() <= 2, "t: expects a tensor with <= 2 dims, got ", dim(), " (shape ", shape_str(shape()), ")");
  return dim() < 2 ? view(shape()) : transpose(0, 1);
}

Tensor Tensor::permute(const Shape& dims) const {
  ATTN_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(),
             " dims ", shape_str(dims), " for a tensor with ", dim(), " dims");
  Shape sh(dims.size()), st(dims.size()), inv(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    ATTN_CHECK(!seen[d], "permute: dim ", d, " repeats in ", shape_str(dims));
    seen[d] = true;
    sh[i] = shape()[d];
    st[i] = strides()[d];
    inv[d] = static_cast<int64_t>(i);
  }
  Tensor out = make_view(*this, sh, st, storage_offset());
  if (should_record({this})) {
    record("PermuteBackward", {*this}, out, [inv](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{g.permute(inv)};
    });
  }
  return out;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  ATTN_CHECK(dim() > 0, "slice: cannot slice a 0-d tensor");
  d = wrap_dim(d, dim(), "slice");
  ATTN_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = shape(), st = strides();
  sh[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = make_view(*this, sh, st, storage_offset() + start * strides()[d]);
  if (should_record({this})) {
    Shape in = shape();
    record("SliceBackward", {*this}, out, [in, d, start, end, step](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{slice_backward(g, in, d, start, end, step)};
    });
  }
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  ATTN_CHECK(dim() > 0, "narrow: cannot narrow a 0-d tensor");
  d = wrap_dim(d, dim(), "narrow");
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  ATTN_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: start ", start, " and length ", length,
             " are out of range for dim ", d, " of size ", n);
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  ATTN_CHECK(dim() > 0, "select: cannot select on a 0-d tensor");
  d = wrap_dim(d, dim(), "select");
  const int64_t n = shape()[d];
  ATTN_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dim ", d, " of size ", n);
  if (index < 0) index += n;
  Shape sh = shape(), st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view(*this, sh, st, storage_offset() + index * strides()[d]);
  if (should_record({this})) {
    Shape in = shape();
    record("SelectBackward", {*this}, out, [in, d, index](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{slice_backward(g.unsqueeze(d), in, d, index, index + 1, 1)};
    });
  }
  return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape sh = shape(), st = strides();
  int64_t stride = d < dim() ? strides()[d] * shape()[d] : 1;
  sh.insert(sh.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  Tensor out = make_view(*this, sh, st, storage_offset());
  if (should_record({this})) {
    record("UnsqueezeBackward", {*this}, out,
           [d](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g.squeeze(d)}; });
  }
  return out;
}

Tensor Tensor::squeeze() const {
  Shape sh, st;
  for (int64_t i = 0; i < dim(); ++i)
    if (shape()[i] != 1) {
      sh.push_back(shape()[i]);
      st.push_back(strides()[i]);
    }
  Tensor out = make_view(*this, sh, st, storage_offset());
  if (should_record({this})) {
    Shape in = shape();
    record("SqueezeBackward", {*this}, out,
           [in](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g.reshape(in)}; });
  }
  return out;
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return view({});
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return view(shape());
  Shape sh = shape(), st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view(*this, sh, st, storage_offset());
  if (should_record({this})) {
    record("SqueezeBackward", {*this}, out,
           [d](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g.unsqueeze(d)}; });
  }
  return out;
}

Tensor Tensor::expand(const Shape& target) const {
  const int64_t nd = static_cast<int64_t>(target.size());
  ATTN_CHECK(nd >= dim(), "expand: the target ", shape_str(target), " has fewer dims than the tensor ",
             shape_str(shape()));
  Shape sh(nd), st(nd);
  for (int64_t i = nd - 1; i >= 0; --i) {
    const int64_t j = i - (nd - dim());
    int64_t want = target[i];
    if (j >= 0) {
      const int64_t have = shape()[j];
      if (want == -1) want = have;
      ATTN_CHECK(have == want || have == 1, "expand: the tensor ", shape_str(shape()), " cannot expand to ",
                 shape_str(target), ": dim ", i, " has size ", have, ", which is neither 1 nor ", want);
      sh[i] = want;
      st[i] = have == want ? strides()[j] : 0;
    } else {
      ATTN_CHECK(want >= 0, "expand: -1 is not allowed for the new leading dim ", i, " in ", shape_str(target));
      sh[i] = want;
      st[i] = 0;
    }
  }
  shape_numel(sh, "expand");
  Tensor out = make_view(*this, sh, st, storage_offset());
  if (should_record({this})) {
    Shape in = shape();
    record("ExpandBackward", {*this}, out,
           [in](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{sum_to(g, in)}; });
  }
  return out;
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = wrap_dim(start_dim, dim(), "flatten");
  end_dim = wrap_dim(end_dim, dim(), "flatten");
  ATTN_CHECK(start_dim <= end_dim, "flatten: start_dim ", start_dim, " must not come after end_dim ", end_dim);
  Shape sh;
  for (int64_t i = 0; i < start_dim; ++i) sh.push_back(shape()[i]);
  int64_t p = 1;
  for (int64_t i = start_dim; i <= end_dim; ++i) p *= shape()[i];
  sh.push_back(p);
  for (int64_t i = end_dim + 1; i < dim(); ++i) sh.push_back(shape()[i]);
  return reshape(sh);
}

// ---- in-place (outside autograd) ----------------------------------------------

Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  k::fill(*this, value);
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  check_defined("copy_", "src", src);
  k::copy(src.expand(shape()).detach(), *this);
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace(*this, "add_");
  check_float("add_", "self", *this);
  check_float("add_", "other", other);
  check_same_dtype("add_", "self", *this, "other", other);
  NoGradGuard ng;
  Tensor o = other.detach();
  Tensor upd = alpha == 1.0 ? add(detach(), o) : add(detach(), mul(o, scalar_like(alpha, dtype())));
  ATTN_CHECK(upd.shape() == shape(), "add_: other ", shape_str(other.shape()), " broadcasts the result to ",
             shape_str(upd.shape()), ", not to self's ", shape_str(shape()));
  k::copy(upd, *this);
  return *this;
}

Tensor& Tensor::mul_(double value) {
  check_inplace(*this, "mul_");
  check_float("mul_", "self", *this);
  NoGradGuard ng;
  k::copy(mul(detach(), scalar_like(value, dtype())), *this);
  return *this;
}

// ---- free-function forms --------------------------------------------------------

Tensor reshape(const Tensor& a, const Shape& shape) { return a.reshape(shape); }
Tensor transpose(const Tensor& a, int64_t d0, int64_t d1) { return a.transpose(d0, d1); }
Tensor permute(const Tensor& a, const Shape& dims) { return a.permute(dims); }
Tensor unsqueeze(const Tensor& a, int64_t dim) { return a.unsqueeze(dim); }
Tensor squeeze(const Tensor& a, int64_t dim) { return a.squeeze(dim); }
Tensor flatten(const Tensor& a, int64_t start_dim, int64_t end_dim) { return a.flatten(start_dim, end_dim); }

}  // namespace attn
