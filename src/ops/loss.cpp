// Losses, composed from differentiable ops so their gradients come from the
// tape. Semantics (ignore_index, class weights, label smoothing, reductions)
// follow PyTorch's LossNLL.cpp and Loss.cpp, including the normalisations.
#include <cmath>
#include <limits>

#include "attn/functional.h"
#include "ops/internal.h"

namespace attn::nn::functional {

using namespace ::attn::ops;

namespace {

Tensor reduce(const Tensor& loss, Reduction r) {
  switch (r) {
    case Reduction::None: return loss;
    case Reduction::Sum: return sum(loss);
    case Reduction::Mean: return mean(loss);
  }
  return loss;
}

// input (N, C, d...) or (C) -> (M, C) with the class dim last; `cdim` is its dim.
Tensor classes_last(const Tensor& input, int64_t& cdim) {
  cdim = input.dim() == 1 ? 0 : 1;
  if (input.dim() <= 2) return input.dim() == 1 ? input.unsqueeze(0) : input;
  Shape perm{0};
  for (int64_t i = 2; i < input.dim(); ++i) perm.push_back(i);
  perm.push_back(1);
  return input.permute(perm).reshape({-1, input.size(1)});
}

// Checks an index target against input (N, C, d...) and returns it as (M).
Tensor check_index_target(const char* op, const Tensor& input, const Tensor& target, int64_t ignore_index) {
  check_dtype(op, "target", target, kInt64);
  Shape want;
  if (input.dim() >= 2) {
    want.push_back(input.size(0));
    for (int64_t i = 2; i < input.dim(); ++i) want.push_back(input.size(i));
  }
  ATTN_CHECK(target.shape() == want, op, ": the input is ", shape_str(input.shape()), " so target must be ",
             shape_str(want), ", got ", shape_str(target.shape()));
  const int64_t C = input.size(input.dim() == 1 ? 0 : 1);
  Tensor t = target.contiguous().reshape({-1});
  const int64_t* p = t.data<int64_t>();
  for (int64_t i = 0; i < t.numel(); ++i)
    ATTN_CHECK(p[i] == ignore_index || (p[i] >= 0 && p[i] < C), op, ": target ", p[i], " is out of range for ", C,
               " classes (ignore_index is ", ignore_index, ")");
  return t;
}

void check_weight(const char* op, const Tensor& weight, const Tensor& input, int64_t C) {
  if (!weight.defined()) return;
  check_float(op, "weight", weight);
  check_same_dtype(op, "input", input, "weight", weight);
  ATTN_CHECK(weight.dim() == 1 && weight.size(0) == C, op, ": weight is ", shape_str(weight.shape()), ", expected (",
             C, ") for ", C, " classes");
}

// -w[t] * logp[t] per element (0 where ignored), and w[t] (0 where ignored).
std::pair<Tensor, Tensor> nll_terms(const Tensor& logp2, const Tensor& t, const Tensor& weight, int64_t ignore_index) {
  Tensor valid = ne(t, scalar_like(static_cast<double>(ignore_index), kInt64));
  Tensor safe = where(valid, t, scalar_like(0.0, kInt64));
  Tensor picked = gather(logp2, 1, safe.unsqueeze(1)).squeeze(1);
  Tensor vw = valid.to(logp2.dtype());
  Tensor w = weight.defined() ? mul(index_select(weight.detach(), 0, safe), vw) : vw;
  return {neg(mul(picked, w)), w};
}

}  // namespace

Tensor nll_loss(const Tensor& input, const Tensor& target, const NLLLossFuncOptions& o) {
  check_float("nll_loss", "input", input);
  ATTN_CHECK(input.dim() >= 1, "nll_loss: the input must have at least 1 dim");
  int64_t cdim;
  Tensor t = check_index_target("nll_loss", input, target, o.ignore_index());
  Tensor x2 = classes_last(input, cdim);
  check_weight("nll_loss", o.weight(), input, input.size(cdim));
  auto [losses, w] = nll_terms(x2, t, o.weight(), o.ignore_index());
  switch (o.reduction()) {
    case Reduction::None: return losses.reshape(target.shape());
    case Reduction::Sum: return sum(losses);
    case Reduction::Mean: return div(sum(losses), sum(w));
  }
  return losses;
}

Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyFuncOptions& o) {
  check_float("cross_entropy", "input", input);
  ATTN_CHECK(input.dim() >= 1, "cross_entropy: the input must have at least 1 dim");
  const double eps = o.label_smoothing();
  ATTN_CHECK(eps >= 0.0 && eps <= 1.0, "cross_entropy: label_smoothing must be in [0, 1], got ", eps);
  const int64_t cdim = input.dim() == 1 ? 0 : 1;
  const int64_t C = input.size(cdim);
  check_weight("cross_entropy", o.weight(), input, C);
  Tensor logp = log_softmax(input, cdim);
  // Weight shaped to broadcast along the class dim.
  Tensor wb;
  if (o.weight().defined()) {
    Shape ws(input.dim(), 1);
    ws[cdim] = C;
    wb = o.weight().detach().reshape(ws);
  }
  check_defined("cross_entropy", "target", target);
  if (is_floating(target.dtype())) {
    // Class probabilities.
    check_same_dtype("cross_entropy", "input", input, "target", target);
    ATTN_CHECK(target.shape() == input.shape(), "cross_entropy: probability targets must have the input's shape ",
               shape_str(input.shape()), ", got ", shape_str(target.shape()));
    Tensor tp = target;
    if (eps > 0) tp = add(mul(tp, scalar_like(1.0 - eps, tp.dtype())), scalar_like(eps / C, tp.dtype()));
    Tensor prod = mul(logp, tp);
    if (wb.defined()) prod = mul(prod, wb);
    Tensor per = neg(sum(prod, {cdim}));
    if (o.reduction() == Reduction::Mean)
      return div(sum(per), scalar_like(static_cast<double>(input.numel() / std::max<int64_t>(C, 1)), per.dtype()));
    return reduce(per, o.reduction());
  }
  Tensor t = check_index_target("cross_entropy", input, target, o.ignore_index());
  int64_t cd;
  auto [losses, w] = nll_terms(classes_last(logp, cd), t, o.weight(), o.ignore_index());
  Tensor nll;
  switch (o.reduction()) {
    case Reduction::None: nll = losses.reshape(target.shape()); break;
    case Reduction::Sum: nll = sum(losses); break;
    case Reduction::Mean: nll = div(sum(losses), sum(w)); break;
  }
  if (eps == 0) return nll;
  // Smoothing term, as PyTorch: -sum_c w_c logp_c per element, zero where
  // ignored; mean divides by sum(w[target]) with weights, else by the number
  // of targets that are not ignored.
  Tensor prod = wb.defined() ? mul(logp, wb) : logp;
  Tensor smooth = neg(sum(prod, {cdim}));
  Tensor ignored = eq(target, scalar_like(static_cast<double>(o.ignore_index()), kInt64));
  smooth = masked_fill(smooth, ignored, 0.0);
  Tensor ret;
  switch (o.reduction()) {
    case Reduction::None: ret = smooth; break;
    case Reduction::Sum: ret = sum(smooth); break;
    case Reduction::Mean: ret = div(sum(smooth), sum(w)); break;  // w: w[target], or 1, and 0 where ignored
  }
  return add(mul(nll, scalar_like(1.0 - eps, nll.dtype())), mul(ret, scalar_like(eps / C, ret.dtype())));
}

namespace {
void check_pair_args(const char* op, const Tensor& input, const Tensor& target) {
  check_float(op, "input", input);
  check_float(op, "target", target);
  check_same_dtype(op, "input", input, "target", target);
  ATTN_CHECK(input.shape() == target.shape(), op, ": input ", shape_str(input.shape()), " and target ",
             shape_str(target.shape()), " must have the same shape");
}
}  // namespace

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r) {
  check_pair_args("mse_loss", input, target);
  Tensor d = sub(input, target);
  return reduce(mul(d, d), r);
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction r, double beta) {
  check_pair_args("smooth_l1_loss", input, target);
  ATTN_CHECK(beta >= 0, "smooth_l1_loss: beta must be non-negative, got ", beta);
  Tensor d = sub(input, target);
  Tensor ad = abs(d);
  if (beta == 0) return reduce(ad, r);
  Tensor quad = mul(mul(d, d), scalar_like(0.5 / beta, d.dtype()));
  Tensor lin = sub(ad, scalar_like(0.5 * beta, d.dtype()));
  return reduce(where(lt(ad, scalar_like(beta, d.dtype())), quad, lin), r);
}

Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target, const BCEWithLogitsFuncOptions& o) {
  check_pair_args("binary_cross_entropy_with_logits", input, target);
  for (auto [t, n] : {std::pair{&o.weight(), "weight"}, std::pair{&o.pos_weight(), "pos_weight"}}) {
    if (!t->defined()) continue;
    check_float("binary_cross_entropy_with_logits", n, *t);
    check_same_dtype("binary_cross_entropy_with_logits", "input", input, n, *t);
    bool fits = t->dim() <= input.dim();
    for (int64_t i = 1; fits && i <= t->dim(); ++i) fits = t->size(-i) == 1 || t->size(-i) == input.size(-i);
    ATTN_CHECK(fits, "binary_cross_entropy_with_logits: ", n, " ", shape_str(t->shape()),
               " must broadcast to the input ", shape_str(input.shape()));
  }
  const double inf = std::numeric_limits<double>::infinity();
  // (1 - y) x + (1 + (pw - 1) y) softplus(-x)
  Tensor sp = softplus(neg(input), 1.0, inf);
  Tensor one = scalar_like(1.0, input.dtype());
  Tensor loss;
  if (o.pos_weight().defined()) {
    Tensor lw = add(one, mul(sub(o.pos_weight(), one), target));
    loss = add(mul(sub(one, target), input), mul(lw, sp));
  } else {
    loss = add(mul(sub(one, target), input), sp);
  }
  if (o.weight().defined()) loss = mul(loss, o.weight());
  return reduce(loss, o.reduction());
}

}  // namespace attn::nn::functional
