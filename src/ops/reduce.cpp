// Reductions over dims with keepdim, and their backward. The reduced dims are
// moved last and the input made contiguous, so every reduction is a row
// reduction of an (M, R) matrix.
#include <algorithm>
#include <cmath>

#include "ops/internal.h"

namespace attn {

using namespace ops;

namespace {

struct Plan {
  std::vector<bool> reduced;  // per input dim
  Shape out_keep;             // output shape with keepdim
  Shape out;                  // output shape without keepdim
  int64_t M = 1, R = 1;
};

Plan make_plan(const Tensor& a, const Shape& dims_in, const char* op) {
  Plan p;
  const int64_t nd = a.dim();
  p.reduced.assign(nd, dims_in.empty());
  for (int64_t d : dims_in) {
    int64_t w = wrap_dim(d, nd, op);
    if (nd == 0) continue;
    ATTN_CHECK(!p.reduced[w], op, ": dim ", w, " appears more than once in ", shape_str(dims_in));
    p.reduced[w] = true;
  }
  for (int64_t i = 0; i < nd; ++i) {
    if (p.reduced[i]) {
      p.R *= a.shape()[i];
      p.out_keep.push_back(1);
    } else {
      p.M *= a.shape()[i];
      p.out_keep.push_back(a.shape()[i]);
      p.out.push_back(a.shape()[i]);
    }
  }
  return p;
}

// a as a contiguous (M, R) matrix with the reduced dims last.
Tensor as_rows(const Tensor& a, const Plan& p) {
  Shape perm;
  for (int64_t i = 0; i < a.dim(); ++i)
    if (!p.reduced[i]) perm.push_back(i);
  for (int64_t i = 0; i < a.dim(); ++i)
    if (p.reduced[i]) perm.push_back(i);
  NoGradGuard ng;
  return a.detach().permute(perm).contiguous().reshape({p.M, p.R});
}

// The gradient of the keepdim-shaped output broadcast back to the input.
Tensor expand_grad(const Tensor& g, const Plan& p, const Shape& in) { return g.reshape(p.out_keep).expand(in); }

Tensor finish(const Tensor& rows, const Plan& p, bool keepdim) { return rows.reshape(keepdim ? p.out_keep : p.out); }

// Sum or mean: when the reduced dims are one run [d0, d1] of a contiguous
// input followed by kept dims, reduce in place as (O, R, I) (no transpose);
// otherwise as rows of the permuted copy.
Tensor sum_or_mean(k::Reduce op, const Tensor& a, const Plan& p) {
  const int64_t nd = a.dim();
  int64_t d0 = -1, d1 = -1;
  for (int64_t i = 0; i < nd; ++i)
    if (p.reduced[i]) {
      if (d0 < 0) d0 = i;
      d1 = i;
    }
  bool run = d0 >= 0 && d1 + 1 < nd;
  for (int64_t i = d0; run && i <= d1; ++i) run = p.reduced[i];
  if (run && a.is_contiguous()) {
    int64_t O = 1, I = 1;
    for (int64_t i = 0; i < d0; ++i) O *= a.size(i);
    for (int64_t i = d1 + 1; i < nd; ++i) I *= a.size(i);
    if (I > 1 && p.R > 0) return k::reduce_mid(op, a.detach(), O, p.R, I);
  }
  return k::reduce_rows(op, as_rows(a, p));
}

}  // namespace

Tensor sum(const Tensor& a, const Shape& dims, bool keepdim) {
  check_defined("sum", "input", a);
  if (a.dtype() == kInt64 || a.dtype() == kBool) {
    // Counting: sum in float64 and convert back (exact below 2^53).
    NoGradGuard ng;
    return sum(a.to(kFloat64), dims, keepdim).to(kInt64);
  }
  check_float("sum", "input", a);
  Plan p = make_plan(a, dims, "sum");
  Tensor out = finish(sum_or_mean(k::Reduce::Sum, a, p), p, keepdim);
  if (should_record({&a})) {
    Shape in = a.shape();
    record("SumBackward", {a}, out, [p, in](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{expand_grad(g, p, in).contiguous()};
    });
  }
  return out;
}

Tensor sum(const Tensor& a) { return sum(a, {}, false); }

Tensor mean(const Tensor& a, const Shape& dims, bool keepdim) {
  check_float("mean", "input", a);
  Plan p = make_plan(a, dims, "mean");
  Tensor out = finish(sum_or_mean(k::Reduce::Mean, a, p), p, keepdim);
  if (should_record({&a})) {
    Shape in = a.shape();
    record("MeanBackward", {a}, out, [p, in](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{div(expand_grad(g, p, in), scalar_like(static_cast<double>(p.R), g.dtype()))};
    });
  }
  return out;
}

Tensor mean(const Tensor& a) { return mean(a, {}, false); }

Tensor var(const Tensor& a, const Shape& dims, int64_t correction, bool keepdim) {
  check_float("var", "input", a);
  ATTN_CHECK(correction >= 0, "var: correction must be non-negative, got ", correction);
  Plan p = make_plan(a, dims, "var");
  Tensor out = finish(k::reduce_rows(k::Reduce::Var, as_rows(a, p), static_cast<double>(correction)), p, keepdim);
  if (should_record({&a})) {
    Tensor as = a.detach();
    record("VarBackward", {a}, out, [p, as, correction, dims](const Tensor& g, const std::vector<bool>&) {
      Tensor mu = mean(as, dims, true);
      Tensor scale = scalar_like(2.0 / static_cast<double>(p.R - correction), g.dtype());
      return std::vector<Tensor>{mul(mul(expand_grad(g, p, as.shape()), sub(as, mu)), scale)};
    });
  }
  return out;
}

Tensor var(const Tensor& a) { return var(a, {}, 1, false); }

Tensor std(const Tensor& a, const Shape& dims, int64_t correction, bool keepdim) {
  return sqrt(var(a, dims, correction, keepdim));
}

namespace {
Tensor amax_amin(bool is_max, const Tensor& a, const Shape& dims, bool keepdim, const char* name) {
  check_float(name, "input", a);
  Plan p = make_plan(a, dims, name);
  ATTN_CHECK(p.R > 0 || p.M == 0, name, ": cannot reduce over a zero-size dim (input ", shape_str(a.shape()), ")");
  Tensor out = finish(k::reduce_rows(is_max ? k::Reduce::Amax : k::Reduce::Amin, as_rows(a, p)), p, keepdim);
  if (should_record({&a})) {
    Tensor as = a.detach(), os = out.detach();
    record(is_max ? "AmaxBackward" : "AminBackward", {a}, out, [p, as, os](const Tensor& g, const std::vector<bool>&) {
      // Split evenly among the tied extremes.
      Tensor hit = eq(as, os.reshape(p.out_keep)).to(g.dtype());
      Shape rd;
      for (int64_t i = 0; i < as.dim(); ++i)
        if (p.reduced[i]) rd.push_back(i);
      Tensor count = sum(hit, rd, true);
      return std::vector<Tensor>{div(mul(expand_grad(g, p, as.shape()), hit), count)};
    });
  }
  return out;
}
}  // namespace

Tensor amax(const Tensor& a, const Shape& dims, bool keepdim) { return amax_amin(true, a, dims, keepdim, "amax"); }
Tensor amin(const Tensor& a, const Shape& dims, bool keepdim) { return amax_amin(false, a, dims, keepdim, "amin"); }
Tensor max(const Tensor& a) {
  check_defined("max", "input", a);
  ATTN_CHECK(a.numel() > 0, "max: the input is empty; specify a dim to reduce over");
  return amax_amin(true, a, {}, false, "max");
}
Tensor min(const Tensor& a) {
  check_defined("min", "input", a);
  ATTN_CHECK(a.numel() > 0, "min: the input is empty; specify a dim to reduce over");
  return amax_amin(false, a, {}, false, "min");
}

namespace {
std::tuple<Tensor, Tensor> max_min_dim(bool is_max, const Tensor& a, int64_t dim, bool keepdim, const char* name) {
  check_defined(name, "input", a);
  ATTN_CHECK(a.dtype() != kBool && a.dtype() != kBFloat16, name, ": expected a float or int64 tensor, got ",
             dtype_name(a.dtype()));
  const int64_t d = wrap_dim(dim, a.dim(), name);
  Plan p = make_plan(a, {d}, name);
  ATTN_CHECK(p.R > 0, name, ": cannot reduce over dim ", d, " of size 0 (input ", shape_str(a.shape()), ")");
  auto [v, i] = k::argreduce_rows(is_max, as_rows(a, p));
  Tensor values = finish(v, p, keepdim), indices = finish(i, p, keepdim);
  if (is_floating(a.dtype()) && should_record({&a})) {
    Shape in = a.shape();
    Tensor idx = i.reshape(p.out_keep);
    record(is_max ? "MaxBackward" : "MinBackward", {a}, values, [p, in, idx, d](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{scatter_add(zeros(in, g.dtype()), d, idx, g.reshape(p.out_keep))};
    });
  }
  return {values, indices};
}
}  // namespace

std::tuple<Tensor, Tensor> max(const Tensor& a, int64_t dim, bool keepdim) {
  return max_min_dim(true, a, dim, keepdim, "max");
}
std::tuple<Tensor, Tensor> min(const Tensor& a, int64_t dim, bool keepdim) {
  return max_min_dim(false, a, dim, keepdim, "min");
}

Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) { return std::get<1>(max_min_dim(true, a, dim, keepdim, "argmax")); }
Tensor argmin(const Tensor& a, int64_t dim, bool keepdim) { return std::get<1>(max_min_dim(false, a, dim, keepdim, "argmin")); }
Tensor argmax(const Tensor& a) {
  check_defined("argmax", "input", a);
  return std::get<1>(max_min_dim(true, a.reshape({-1}), 0, false, "argmax"));
}
Tensor argmin(const Tensor& a) {
  check_defined("argmin", "input", a);
  return std::get<1>(max_min_dim(false, a.reshape({-1}), 0, false, "argmin"));
}

Tensor logsumexp(const Tensor& a, const Shape& dims, bool keepdim) {
  check_float("logsumexp", "input", a);
  Plan p = make_plan(a, dims, "logsumexp");
  Tensor out = finish(k::reduce_rows(k::Reduce::LogSumExp, as_rows(a, p)), p, keepdim);
  if (should_record({&a})) {
    Tensor as = a.detach(), os = out.detach();
    record("LogsumexpBackward", {a}, out, [p, as, os](const Tensor& g, const std::vector<bool>&) {
      // softmax weights; rows that are all -inf get zero gradient
      Tensor w = exp(sub(as, os.reshape(p.out_keep)));
      w = where(ne(w, w), scalar_like(0.0, w.dtype()), w);
      return std::vector<Tensor>{mul(expand_grad(g, p, as.shape()), w)};
    });
  }
  return out;
}

Tensor Tensor::sum() const { return attn::sum(*this); }
Tensor Tensor::sum(const Shape& dims, bool keepdim) const { return attn::sum(*this, dims, keepdim); }
Tensor Tensor::mean() const { return attn::mean(*this); }
Tensor Tensor::mean(const Shape& dims, bool keepdim) const { return attn::mean(*this, dims, keepdim); }

}  // namespace attn
