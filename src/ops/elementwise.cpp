// Elementwise ops with broadcasting, and their backward.
#include <cmath>
#include <limits>

#include "ops/internal.h"

namespace attn {

using namespace ops;

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    ATTN_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
               " do not broadcast (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  ATTN_CHECK(lead >= 0, "sum_to: cannot sum ", shape_str(g.shape()), " to the larger ", shape_str(shape));
  Shape dims;
  for (int64_t i = 0; i < g.dim(); ++i) {
    if (i < lead) {
      dims.push_back(i);
    } else {
      const int64_t want = shape[i - lead];
      ATTN_CHECK(want == g.shape()[i] || want == 1, "sum_to: cannot sum ", shape_str(g.shape()), " to ",
                 shape_str(shape));
      if (want == 1 && g.shape()[i] != 1) dims.push_back(i);
    }
  }
  if (dims.empty()) return g.reshape(shape);
  return sum(g, dims, true).reshape(shape);
}

namespace {

Tensor binary_op(k::Binary op, const char* name, const Tensor& a, const Tensor& b) {
  check_defined(name, "a", a);
  check_defined(name, "b", b);
  check_same_dtype(name, "a", a, "b", b);
  const bool int_ok = op != k::Binary::Div && op != k::Binary::Pow;
  ATTN_CHECK(is_floating(a.dtype()) ? a.dtype() != kBFloat16 : (int_ok && a.dtype() == kInt64), name,
             ": expected float32 or float64 tensors", int_ok ? " (or int64)" : "", ", got ",
             dtype_name(a.dtype()));
  Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  return k::binary(op, a, b, out_shape);
}

Tensor unary_op(k::Unary op, const char* name, const char* bwname, const Tensor& x, double p0 = 0,
                double p1 = 0) {
  check_float(name, "input", x);
  Tensor y = k::unary(op, x, p0, p1);
  if (should_record({&x})) {
    Tensor xs = x.detach(), ys = y.detach();
    record(bwname, {x}, y, [op, xs, ys, p0, p1](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{k::unary_backward(op, g, xs, ys, p0, p1)};
    });
  }
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_op(k::Binary::Add, "add", a, b);
  if (should_record({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    record("AddBackward", {a, b}, out, [sa, sb](const Tensor& g, const std::vector<bool>& n) {
      return std::vector<Tensor>{n[0] ? reduce_grad(g, sa) : Tensor(), n[1] ? reduce_grad(g, sb) : Tensor()};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_op(k::Binary::Sub, "sub", a, b);
  if (should_record({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    record("SubBackward", {a, b}, out, [sa, sb](const Tensor& g, const std::vector<bool>& n) {
      return std::vector<Tensor>{n[0] ? reduce_grad(g, sa) : Tensor(), n[1] ? reduce_grad(neg(g), sb) : Tensor()};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_op(k::Binary::Mul, "mul", a, b);
  if (should_record({&a, &b})) {
    Tensor as = a.detach(), bs = b.detach();
    record("MulBackward", {a, b}, out, [as, bs](const Tensor& g, const std::vector<bool>& n) {
      return std::vector<Tensor>{n[0] ? reduce_grad(mul(g, bs), as.shape()) : Tensor(),
                                 n[1] ? reduce_grad(mul(g, as), bs.shape()) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_op(k::Binary::Div, "div", a, b);
  if (should_record({&a, &b})) {
    Tensor as = a.detach(), bs = b.detach();
    record("DivBackward", {a, b}, out, [as, bs](const Tensor& g, const std::vector<bool>& n) {
      Tensor ga, gb;
      if (n[0]) ga = reduce_grad(div(g, bs), as.shape());
      if (n[1]) gb = reduce_grad(neg(div(mul(g, as), mul(bs, bs))), bs.shape());
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

namespace {
// maximum/minimum: the gradient goes to the larger (smaller) input, split
// evenly on ties, as PyTorch.
Tensor extreme(bool is_max, const Tensor& a, const Tensor& b) {
  const char* name = is_max ? "maximum" : "minimum";
  Tensor out = binary_op(is_max ? k::Binary::Max : k::Binary::Min, name, a, b);
  if (should_record({&a, &b})) {
    Tensor as = a.detach(), bs = b.detach();
    record(is_max ? "MaximumBackward" : "MinimumBackward", {a, b}, out,
           [as, bs, is_max](const Tensor& g, const std::vector<bool>& n) {
             Tensor win_a = is_max ? gt(as, bs) : lt(as, bs);
             Tensor tie = eq(as, bs);
             Tensor half = mul(g, scalar_like(0.5, g.dtype()));
             Tensor zero = scalar_like(0.0, g.dtype());
             Tensor ga, gb;
             if (n[0]) ga = reduce_grad(where(win_a, g, where(tie, half, zero)), as.shape());
             if (n[1]) gb = reduce_grad(where(logical_or(win_a, tie), where(tie, half, zero), g), bs.shape());
             return std::vector<Tensor>{ga, gb};
           });
  }
  return out;
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extreme(true, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extreme(false, a, b); }

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_op(k::Binary::Pow, "pow", a, b);
  if (should_record({&a, &b})) {
    Tensor as = a.detach(), bs = b.detach(), os = out.detach();
    record("PowBackward", {a, b}, out, [as, bs, os](const Tensor& g, const std::vector<bool>& n) {
      Tensor ga, gb;
      Tensor zero = scalar_like(0.0, g.dtype());
      if (n[0]) {
        // b * a^(b-1), 0 where b == 0
        Tensor d = mul(bs, pow(as, sub(bs, scalar_like(1.0, g.dtype()))));
        ga = reduce_grad(mul(g, where(eq(bs, zero), zero, d)), as.shape());
      }
      if (n[1]) {
        // a^b * log(a), 0 where a == 0 and b >= 0
        Tensor d = mul(os, log(as));
        gb = reduce_grad(mul(g, where(logical_and(eq(as, zero), ge(bs, zero)), zero, d)), bs.shape());
      }
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, double e) { return unary_op(k::Unary::Pow, "pow", "PowBackward", a, e); }
Tensor neg(const Tensor& a) { return unary_op(k::Unary::Neg, "neg", "NegBackward", a); }
Tensor exp(const Tensor& a) { return unary_op(k::Unary::Exp, "exp", "ExpBackward", a); }
Tensor log(const Tensor& a) { return unary_op(k::Unary::Log, "log", "LogBackward", a); }
Tensor log1p(const Tensor& a) { return unary_op(k::Unary::Log1p, "log1p", "Log1pBackward", a); }
Tensor sqrt(const Tensor& a) { return unary_op(k::Unary::Sqrt, "sqrt", "SqrtBackward", a); }
Tensor rsqrt(const Tensor& a) { return unary_op(k::Unary::Rsqrt, "rsqrt", "RsqrtBackward", a); }
Tensor abs(const Tensor& a) { return unary_op(k::Unary::Abs, "abs", "AbsBackward", a); }
Tensor sign(const Tensor& a) { return unary_op(k::Unary::Sign, "sign", "SignBackward", a); }
Tensor sin(const Tensor& a) { return unary_op(k::Unary::Sin, "sin", "SinBackward", a); }
Tensor cos(const Tensor& a) { return unary_op(k::Unary::Cos, "cos", "CosBackward", a); }
Tensor tanh(const Tensor& a) { return unary_op(k::Unary::Tanh, "tanh", "TanhBackward", a); }
Tensor sigmoid(const Tensor& a) { return unary_op(k::Unary::Sigmoid, "sigmoid", "SigmoidBackward", a); }
Tensor relu(const Tensor& a) { return unary_op(k::Unary::Relu, "relu", "ReluBackward", a); }

Tensor clamp(const Tensor& a, std::optional<double> min, std::optional<double> max) {
  ATTN_CHECK(min.has_value() || max.has_value(), "clamp: at least one of min and max must be given");
  const double inf = std::numeric_limits<double>::infinity();
  return unary_op(k::Unary::Clamp, "clamp", "ClampBackward", a, min.value_or(-inf), max.value_or(inf));
}
Tensor clamp_min(const Tensor& a, double min) { return clamp(a, min, std::nullopt); }
Tensor clamp_max(const Tensor& a, double max) { return clamp(a, std::nullopt, max); }

namespace nn::functional {
Tensor relu(const Tensor& x) { return attn::relu(x); }
Tensor tanh(const Tensor& x) { return attn::tanh(x); }
Tensor sigmoid(const Tensor& x) { return attn::sigmoid(x); }
Tensor gelu(const Tensor& x, const std::string& approximate) {
  ATTN_CHECK(approximate == "none" || approximate == "tanh", "gelu: approximate must be \"none\" or \"tanh\", got \"",
             approximate, "\"");
  return unary_op(approximate == "tanh" ? k::Unary::GeluTanh : k::Unary::Gelu, "gelu", "GeluBackward", x);
}
Tensor elu(const Tensor& x, double alpha) { return unary_op(k::Unary::Elu, "elu", "EluBackward", x, alpha); }
Tensor leaky_relu(const Tensor& x, double negative_slope) {
  return unary_op(k::Unary::LeakyRelu, "leaky_relu", "LeakyReluBackward", x, negative_slope);
}
Tensor softplus(const Tensor& x, double beta, double threshold) {
  ATTN_CHECK(beta > 0, "softplus: beta must be positive, got ", beta);
  return unary_op(k::Unary::Softplus, "softplus", "SoftplusBackward", x, beta, threshold);
}
}  // namespace nn::functional

// ---- comparisons and logic ------------------------------------------------------

namespace {
Tensor compare_op(k::Compare op, const char* name, const Tensor& a, const Tensor& b) {
  check_defined(name, "a", a);
  check_defined(name, "b", b);
  check_same_dtype(name, "a", a, "b", b);
  return k::compare(op, a, b, broadcast_shapes(a.shape(), b.shape(), name));
}
Tensor logical_op(k::Logical op, const char* name, const Tensor& a, const Tensor& b) {
  check_dtype(name, "a", a, kBool);
  check_dtype(name, "b", b, kBool);
  return k::logical(op, a, b, broadcast_shapes(a.shape(), b.shape(), name));
}
}  // namespace

Tensor eq(const Tensor& a, const Tensor& b) { return compare_op(k::Compare::Eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare_op(k::Compare::Ne, "ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare_op(k::Compare::Lt, "lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare_op(k::Compare::Le, "le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare_op(k::Compare::Gt, "gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare_op(k::Compare::Ge, "ge", a, b); }
Tensor logical_and(const Tensor& a, const Tensor& b) { return logical_op(k::Logical::And, "logical_and", a, b); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return logical_op(k::Logical::Or, "logical_or", a, b); }
Tensor logical_not(const Tensor& a) {
  check_dtype("logical_not", "input", a, kBool);
  return k::logical_not(a);
}

bool equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  if (a.numel() == 0) return true;
  NoGradGuard ng;
  if (a.dtype() == kBFloat16) return equal(a.to(kFloat32), b.to(kFloat32));
  return logical_not(eq(a, b)).to(kFloat64).sum().item<double>() == 0;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  check_float("allclose", "a", a);
  check_float("allclose", "b", b);
  NoGradGuard ng;
  Tensor a64 = a.to(kFloat64), b64 = b.to(kFloat64);
  Tensor diff = abs(sub(a64, b64));
  Tensor tol = add(scalar_like(atol, kFloat64), mul(scalar_like(rtol, kFloat64), abs(b64)));
  Tensor bad = logical_not(le(diff, tol));
  if (bad.numel() == 0) return true;
  return bad.to(kFloat64).sum().item<double>() == 0;
}

Tensor where(const Tensor& c, const Tensor& a, const Tensor& b) {
  check_dtype("where", "condition", c, kBool);
  check_defined("where", "a", a);
  check_defined("where", "b", b);
  check_same_dtype("where", "a", a, "b", b);
  Shape out_shape = broadcast_shapes(broadcast_shapes(c.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = k::where(c, a, b, out_shape);
  if (should_record({&a, &b})) {
    Tensor cs = c.detach();
    Shape sa = a.shape(), sb = b.shape();
    record("WhereBackward", {a, b}, out, [cs, sa, sb](const Tensor& g, const std::vector<bool>& n) {
      Tensor zero = scalar_like(0.0, g.dtype());
      return std::vector<Tensor>{n[0] ? reduce_grad(where(cs, g, zero), sa) : Tensor(),
                                 n[1] ? reduce_grad(where(cs, zero, g), sb) : Tensor()};
    });
  }
  return out;
}

Tensor where(const Tensor& c, const Tensor& a, double b) {
  check_defined("where", "a", a);
  return where(c, a, scalar_like(b, a.dtype()));
}
Tensor where(const Tensor& c, double a, const Tensor& b) {
  check_defined("where", "b", b);
  return where(c, scalar_like(a, b.dtype()), b);
}

Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) {
  check_defined("masked_fill", "input", a);
  check_dtype("masked_fill", "mask", mask, kBool);
  Shape s = broadcast_shapes(a.shape(), mask.shape(), "masked_fill");
  ATTN_CHECK(s == a.shape(), "masked_fill: mask ", shape_str(mask.shape()), " must broadcast to the input ",
             shape_str(a.shape()), ", not beyond it");
  return where(mask, scalar_like(value, a.dtype()), a);
}

// ---- operators -------------------------------------------------------------------

namespace {
Tensor sc(double v, const Tensor& like, const char* op) {
  check_defined(op, "tensor", like);
  return scalar_like(v, like.dtype());
}
}  // namespace

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, sc(b, a, "add")); }
Tensor operator-(const Tensor& a, double b) { return sub(a, sc(b, a, "sub")); }
Tensor operator*(const Tensor& a, double b) { return mul(a, sc(b, a, "mul")); }
Tensor operator/(const Tensor& a, double b) { return div(a, sc(b, a, "div")); }
Tensor operator+(double a, const Tensor& b) { return add(sc(a, b, "add"), b); }
Tensor operator-(double a, const Tensor& b) { return sub(sc(a, b, "sub"), b); }
Tensor operator*(double a, const Tensor& b) { return mul(sc(a, b, "mul"), b); }
Tensor operator/(double a, const Tensor& b) { return div(sc(a, b, "div"), b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
Tensor operator<(const Tensor& a, double b) { return lt(a, sc(b, a, "lt")); }
Tensor operator<=(const Tensor& a, double b) { return le(a, sc(b, a, "le")); }
Tensor operator>(const Tensor& a, double b) { return gt(a, sc(b, a, "gt")); }
Tensor operator>=(const Tensor& a, double b) { return ge(a, sc(b, a, "ge")); }
Tensor operator==(const Tensor& a, double b) { return eq(a, sc(b, a, "eq")); }
Tensor operator!=(const Tensor& a, double b) { return ne(a, sc(b, a, "ne")); }
Tensor operator~(const Tensor& a) { return logical_not(a); }
Tensor operator&(const Tensor& a, const Tensor& b) { return logical_and(a, b); }
Tensor operator|(const Tensor& a, const Tensor& b) { return logical_or(a, b); }

}  // namespace attn
