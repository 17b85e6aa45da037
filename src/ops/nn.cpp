// Neural-network ops of attn::nn::functional: softmax, layer norm, dropout,
// linear, embedding, convolution and pooling.
#include <cmath>

#include "attn/functional.h"
#include "ops/internal.h"

namespace attn::nn::functional {

using namespace ::attn::ops;

namespace {
Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_float(name, "input", x);
  const int64_t d = x.dim() == 0 ? 0 : wrap_dim(dim, x.dim(), name);
  Tensor y = k::softmax(x.contiguous(), d, log);
  if (should_record({&x})) {
    Tensor ys = y.detach();
    record(log ? "LogSoftmaxBackward" : "SoftmaxBackward", {x}, y, [ys, d, log](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{k::softmax_backward(g.contiguous(), ys, d, log)};
    });
  }
  return y;
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  check_float("layer_norm", "input", x);
  const int64_t nn = static_cast<int64_t>(normalized_shape.size());
  ATTN_CHECK(nn >= 1, "layer_norm: normalized_shape must have at least 1 dim");
  bool ok = x.dim() >= nn;
  for (int64_t i = 0; ok && i < nn; ++i) ok = x.size(x.dim() - nn + i) == normalized_shape[i];
  ATTN_CHECK(ok, "layer_norm: the input ", shape_str(x.shape()), " does not end with normalized_shape ",
             shape_str(normalized_shape));
  for (auto [t, n] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!t->defined()) continue;
    check_same_dtype("layer_norm", "input", x, n, *t);
    ATTN_CHECK(t->shape() == normalized_shape, "layer_norm: ", n, " is ", shape_str(t->shape()),
               " but normalized_shape is ", shape_str(normalized_shape));
  }
  ATTN_CHECK(eps >= 0, "layer_norm: eps must be non-negative, got ", eps);
  const int64_t N = shape_numel(normalized_shape), M = N == 0 ? 0 : x.numel() / N;
  Tensor x2 = x.detach().contiguous().reshape({M, N});
  Tensor w = weight.defined() ? weight.detach().contiguous().reshape({N}) : Tensor();
  Tensor b = bias.defined() ? bias.detach().contiguous().reshape({N}) : Tensor();
  Tensor y = Tensor::make({M, N}, x.dtype());
  Tensor mu = Tensor::make({M}, kFloat64), rs = Tensor::make({M}, kFloat64);
  k::layer_norm(x2, w, b, eps, y, mu, rs);
  Tensor out = y.reshape(x.shape());
  if (should_record({&x, &weight, &bias})) {
    Shape xs = x.shape(), ns = normalized_shape;
    record("LayerNormBackward", {x, weight, bias}, out,
           [x2, w, mu, rs, xs, ns, M, N](const Tensor& g, const std::vector<bool>& n) {
             Tensor g2 = g.contiguous().reshape({M, N});
             Tensor dx = n[0] ? Tensor::make({M, N}, g.dtype()) : Tensor();
             Tensor dw = n[1] ? Tensor::make({N}, g.dtype()) : Tensor();
             Tensor db = n[2] ? Tensor::make({N}, g.dtype()) : Tensor();
             k::layer_norm_backward(g2, x2, mu, rs, w, dx, dw, db);
             return std::vector<Tensor>{dx.defined() ? dx.reshape(xs) : Tensor(),
                                        dw.defined() ? dw.reshape(ns) : Tensor(),
                                        db.defined() ? db.reshape(ns) : Tensor()};
           });
  }
  return out;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  check_float("dropout", "input", x);
  ATTN_CHECK(p >= 0.0 && p <= 1.0, "dropout: p must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  Tensor mask = Tensor::make(x.shape(), x.dtype());
  if (p == 1.0) {
    k::fill(mask, 0.0);
  } else {
    // A data-parallel rank's rows draw as in the whole batch (attn/generator.h).
    const BatchShard& sh = batch_shard();
    const bool shard = sh.active() && x.dim() >= 1 && x.size(0) == sh.rows;
    const int64_t per_row = shard ? x.numel() / sh.rows : 0;
    k::fill_dropout_mask(mask, 1.0 - p, gen ? *gen : default_generator(), shard ? sh.begin * per_row : 0,
                         shard ? sh.total * per_row : -1);
  }
  Tensor out = k::binary(k::Binary::Mul, x.detach(), mask, x.shape());
  if (should_record({&x})) {
    record("DropoutBackward", {x}, out, [mask](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{mul(g, mask)};
    });
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_float("linear", "input", x);
  check_float("linear", "weight", weight);
  check_same_dtype("linear", "input", x, "weight", weight);
  check_dim("linear", "weight", weight, 2, 2);
  ATTN_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: the input is ", shape_str(x.shape()),
             " and weight is ", shape_str(weight.shape()), ": input.size(-1) must equal weight.size(1)");
  if (bias.defined()) {
    check_same_dtype("linear", "input", x, "bias", bias);
    ATTN_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias is ", shape_str(bias.shape()),
               " but weight is ", shape_str(weight.shape()), ": expected bias (", weight.size(0), ")");
  }
  // One GEMM over every row of x, starting from the bias.
  const int64_t K = weight.size(1), N = weight.size(0);
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  const int64_t rows = shape_numel(out_shape);
  out_shape.push_back(N);
  Tensor x3 = x.detach().reshape({1, rows, K});
  Tensor out = Tensor::make({1, rows, N}, x.dtype());
  k::bmm(x3, weight.detach().t().unsqueeze(0), out, bias.defined() ? bias.detach().contiguous() : Tensor());
  out = out.reshape(out_shape);
  if (should_record({&x, &weight, &bias})) {
    Tensor xs = x.detach(), ws = weight.detach();
    Shape xshape = x.shape();
    record("LinearBackward", {x, weight, bias}, out,
           [xs, ws, xshape, rows, K, N](const Tensor& g, const std::vector<bool>& n) {
             Tensor g2 = g.reshape({rows, N});
             Tensor dx = n[0] ? mm(g2, ws).reshape(xshape) : Tensor();
             Tensor dw = n[1] ? mm(g2.t(), xs.reshape({rows, K})) : Tensor();
             Tensor db = n[2] ? sum(g2, {0}) : Tensor();
             return std::vector<Tensor>{dx, dw, db};
           });
  }
  return out;
}

Tensor embedding(const Tensor& indices, const Tensor& weight, std::optional<int64_t> padding_idx) {
  check_dtype("embedding", "indices", indices, kInt64);
  check_float("embedding", "weight", weight);
  check_dim("embedding", "weight", weight, 2, 2);
  const int64_t V = weight.size(0);
  std::optional<int64_t> pad;
  if (padding_idx) {
    ATTN_CHECK(*padding_idx >= -V && *padding_idx < V, "embedding: padding_idx ", *padding_idx,
               " is out of range for ", V, " embeddings");
    pad = *padding_idx < 0 ? *padding_idx + V : *padding_idx;
  }
  Tensor flat = indices.reshape({-1});
  {
    Tensor fc = flat.contiguous();
    const int64_t* p = fc.data<int64_t>();
    for (int64_t i = 0; i < fc.numel(); ++i)
      ATTN_CHECK(p[i] >= 0 && p[i] < V, "embedding: index ", p[i], " is out of range for ", V, " embeddings");
  }
  Tensor rows = k::index_select(weight.detach(), 0, flat);
  Shape out_shape = indices.shape();
  out_shape.push_back(weight.size(1));
  Tensor out = rows.reshape(out_shape);
  if (should_record({&weight})) {
    Shape ws = weight.shape();
    record("EmbeddingBackward", {weight}, out, [flat, ws, pad](const Tensor& g, const std::vector<bool>&) {
      Tensor gw = zeros(ws, g.dtype());
      k::index_add(gw, 0, flat, g.contiguous().reshape({-1, ws[1]}));
      if (pad) k::fill(gw.select(0, *pad), 0.0);
      return std::vector<Tensor>{gw};
    });
  }
  return out;
}

namespace {
// (N, C, H, W) from a batched or unbatched image.
Tensor as_batched(const Tensor& x, const char* op, bool& unbatched) {
  check_float(op, "input", x);
  ATTN_CHECK(x.dim() == 3 || x.dim() == 4, op, ": expected a (N, C, H, W) or (C, H, W) input, got ",
             shape_str(x.shape()));
  unbatched = x.dim() == 3;
  return unbatched ? x.unsqueeze(0) : x;
}
void check_pair(const char* op, const char* name, Pair2 p, int64_t min) {
  ATTN_CHECK(p.h >= min && p.w >= min, op, ": ", name, " must be >= ", min, ", got (", p.h, ", ", p.w, ")");
}
}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& weight, const Conv2dFuncOptions& o) {
  bool unbatched;
  Tensor x = as_batched(x_in, "conv2d", unbatched);
  check_float("conv2d", "weight", weight);
  check_same_dtype("conv2d", "input", x, "weight", weight);
  check_dim("conv2d", "weight", weight, 4, 4);
  check_pair("conv2d", "stride", o.stride(), 1);
  check_pair("conv2d", "padding", o.padding(), 0);
  check_pair("conv2d", "dilation", o.dilation(), 1);
  const int64_t G = o.groups();
  ATTN_CHECK(G >= 1, "conv2d: groups must be >= 1, got ", G);
  k::Conv2dGeometry g{};
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.O = weight.size(0), g.kH = weight.size(2), g.kW = weight.size(3);
  g.sH = o.stride().h, g.sW = o.stride().w, g.pH = o.padding().h, g.pW = o.padding().w;
  g.dH = o.dilation().h, g.dW = o.dilation().w, g.groups = G;
  ATTN_CHECK(g.C % G == 0 && g.O % G == 0, "conv2d: in_channels ", g.C, " and out_channels ", g.O,
             " must both be divisible by groups ", G);
  ATTN_CHECK(weight.size(1) == g.C / G, "conv2d: weight ", shape_str(weight.shape()), " expects ",
             weight.size(1) * G, " input channels but the input ", shape_str(x_in.shape()), " has ", g.C);
  const int64_t eH = g.dH * (g.kH - 1) + 1, eW = g.dW * (g.kW - 1) + 1;
  ATTN_CHECK(g.H + 2 * g.pH >= eH && g.W + 2 * g.pW >= eW, "conv2d: the padded input (", g.H + 2 * g.pH, ", ",
             g.W + 2 * g.pW, ") is smaller than the dilated kernel (", eH, ", ", eW, ")");
  g.oH = (g.H + 2 * g.pH - eH) / g.sH + 1;
  g.oW = (g.W + 2 * g.pW - eW) / g.sW + 1;
  const Tensor& bias = o.bias();
  if (bias.defined()) {
    check_same_dtype("conv2d", "input", x, "bias", bias);
    ATTN_CHECK(bias.dim() == 1 && bias.size(0) == g.O, "conv2d: bias is ", shape_str(bias.shape()), ", expected (",
               g.O, ")");
  }
  Tensor xs = x.detach(), ws = weight.detach();
  Tensor y = k::conv2d(xs, ws, bias.defined() ? bias.detach() : Tensor(), g);
  if (should_record({&x, &weight, &bias})) {
    record("Conv2dBackward", {x, weight, bias}, y, [xs, ws, g](const Tensor& gr, const std::vector<bool>& n) {
      Tensor dx = n[0] ? Tensor::make(xs.shape(), gr.dtype()) : Tensor();
      Tensor dw = n[1] ? Tensor::make(ws.shape(), gr.dtype()) : Tensor();
      Tensor db = n[2] ? Tensor::make({g.O}, gr.dtype()) : Tensor();
      k::conv2d_backward(gr, xs, ws, g, dx, dw, db);
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  return unbatched ? y.squeeze(0) : y;
}

namespace {
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const int64_t span = in + 2 * p - d * (k - 1) - 1;
  if (span < 0) return 0;  // the window does not fit: reported by the caller
  int64_t o = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  // The last window must start inside the input or left padding, as PyTorch.
  if (ceil_mode && (o - 1) * s >= in + p) --o;
  return o;
}

k::Pool2dGeometry pool_geometry(const char* op, const Tensor& x, Pair2 ks, std::optional<Pair2> st, Pair2 pad,
                                Pair2 dil, bool ceil_mode) {
  Pair2 s = st.value_or(ks);
  check_pair(op, "kernel_size", ks, 1);
  check_pair(op, "stride", s, 1);
  check_pair(op, "padding", pad, 0);
  check_pair(op, "dilation", dil, 1);
  ATTN_CHECK(pad.h <= ks.h / 2 && pad.w <= ks.w / 2, op, ": padding (", pad.h, ", ", pad.w,
             ") must be at most half the kernel size (", ks.h, ", ", ks.w, ")");
  k::Pool2dGeometry g{};
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.kH = ks.h, g.kW = ks.w, g.sH = s.h, g.sW = s.w, g.pH = pad.h, g.pW = pad.w, g.dH = dil.h, g.dW = dil.w;
  g.oH = pool_out(g.H, g.kH, g.sH, g.pH, g.dH, ceil_mode);
  g.oW = pool_out(g.W, g.kW, g.sW, g.pW, g.dW, ceil_mode);
  ATTN_CHECK(g.oH > 0 && g.oW > 0, op, ": the input ", shape_str(x.shape()), " is too small for kernel (", ks.h,
             ", ", ks.w, "); the output would be (", g.oH, ", ", g.oW, ")");
  return g;
}
}  // namespace

Tensor max_pool2d(const Tensor& x_in, const MaxPool2dFuncOptions& o) {
  bool unbatched;
  Tensor x = as_batched(x_in, "max_pool2d", unbatched);
  k::Pool2dGeometry g = pool_geometry("max_pool2d", x, o.kernel_size(), o.stride(), o.padding(), o.dilation(),
                                      o.ceil_mode());
  auto [y, idx] = k::max_pool2d(x.detach(), g);
  if (should_record({&x})) {
    record("MaxPool2dBackward", {x}, y, [idx = idx, g](const Tensor& gr, const std::vector<bool>&) {
      return std::vector<Tensor>{k::max_pool2d_backward(gr, idx, g)};
    });
  }
  return unbatched ? y.squeeze(0) : y;
}

Tensor avg_pool2d(const Tensor& x_in, const AvgPool2dFuncOptions& o) {
  bool unbatched;
  Tensor x = as_batched(x_in, "avg_pool2d", unbatched);
  k::Pool2dGeometry g = pool_geometry("avg_pool2d", x, o.kernel_size(), o.stride(), o.padding(), 1, o.ceil_mode());
  g.count_include_pad = o.count_include_pad();
  if (o.divisor_override()) {
    ATTN_CHECK(*o.divisor_override() != 0, "avg_pool2d: divisor_override must be non-zero");
    g.divisor_override = *o.divisor_override();
  }
  Tensor y = k::avg_pool2d(x.detach(), g);
  if (should_record({&x})) {
    record("AvgPool2dBackward", {x}, y, [g](const Tensor& gr, const std::vector<bool>&) {
      return std::vector<Tensor>{k::avg_pool2d_backward(gr, g)};
    });
  }
  return unbatched ? y.squeeze(0) : y;
}

Tensor adaptive_avg_pool2d(const Tensor& x_in, Pair2 output_size) {
  bool unbatched;
  Tensor x = as_batched(x_in, "adaptive_avg_pool2d", unbatched);
  check_pair("adaptive_avg_pool2d", "output_size", output_size, 1);
  ATTN_CHECK(x.size(2) > 0 && x.size(3) > 0, "adaptive_avg_pool2d: the input ", shape_str(x.shape()),
             " has an empty spatial dim");
  const int64_t H = x.size(2), W = x.size(3);
  Tensor y = k::adaptive_avg_pool2d(x.detach(), output_size.h, output_size.w);
  if (should_record({&x})) {
    record("AdaptiveAvgPool2dBackward", {x}, y, [H, W](const Tensor& gr, const std::vector<bool>&) {
      return std::vector<Tensor>{k::adaptive_avg_pool2d_backward(gr, H, W)};
    });
  }
  return unbatched ? y.squeeze(0) : y;
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  check_defined("flatten", "input", x);
  return x.flatten(start_dim, end_dim);
}

}  // namespace attn::nn::functional

namespace attn::nn::functional {

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  using namespace attn::ops;
  check_float("batch_norm", "input", x);
  ATTN_CHECK(x.dim() >= 2, "batch_norm: input must be (N, C, ...), got ", shape_str(x.shape()));
  const int64_t C = x.size(1);
  Shape bshape(static_cast<size_t>(x.dim()), 1);
  bshape[1] = C;
  Shape dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  for (auto [t, n] : {std::pair{&running_mean, "running_mean"}, std::pair{&running_var, "running_var"},
                      std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!t->defined()) continue;
    check_same_dtype("batch_norm", "input", x, n, *t);
    ATTN_CHECK(t->dim() == 1 && t->size(0) == C, "batch_norm: ", n, " is ", shape_str(t->shape()),
               " but the input has ", C, " channels (dim 1)");
  }
  ATTN_CHECK(running_mean.defined() == running_var.defined(),
             "batch_norm: running_mean and running_var must be given together");
  ATTN_CHECK(training || running_mean.defined(), "batch_norm: eval mode needs running_mean and running_var");
  ATTN_CHECK(eps >= 0, "batch_norm: eps must be non-negative, got ", eps);
  Tensor xhat;
  if (training) {
    const int64_t n = C == 0 ? 0 : x.numel() / C;
    ATTN_CHECK(n != 1, "batch_norm: expected more than 1 value per channel when training, got input ",
               shape_str(x.shape()));
    if (n == 0) return x.reshape(x.shape()) * 1.0;  // empty: nothing to normalise, running stats untouched
    Tensor mu = mean(x, dims, true);
    Tensor xc = x - mu;
    Tensor var_b = mean(xc * xc, dims, true);
    xhat = xc * rsqrt(var_b + eps);
    if (running_mean.defined()) {
      NoGradGuard ng;
      Tensor rm = running_mean, rv = running_var;
      Tensor m1 = mu.detach().reshape({C}), v1 = var_b.detach().reshape({C}) * (static_cast<double>(n) / (n - 1));
      rm.copy_(rm * (1.0 - momentum) + m1 * momentum);
      rv.copy_(rv * (1.0 - momentum) + v1 * momentum);
    }
  } else {
    xhat = (x - running_mean.reshape(bshape)) * rsqrt(running_var.reshape(bshape) + eps);
  }
  if (weight.defined()) xhat = xhat * weight.reshape(bshape);
  if (bias.defined()) xhat = xhat + bias.reshape(bshape);
  return xhat;
}

Tensor bilinear(const Tensor& x1, const Tensor& x2, const Tensor& weight, const Tensor& bias) {
  using namespace attn::ops;
  check_float("bilinear", "input1", x1);
  check_float("bilinear", "input2", x2);
  check_float("bilinear", "weight", weight);
  check_same_dtype("bilinear", "input1", x1, "input2", x2);
  check_same_dtype("bilinear", "input1", x1, "weight", weight);
  check_dim("bilinear", "weight", weight, 3, 3);
  const int64_t O = weight.size(0), I1 = weight.size(1), I2 = weight.size(2);
  ATTN_CHECK(x1.dim() >= 1 && x1.size(-1) == I1, "bilinear: input1 is ", shape_str(x1.shape()),
             " but weight is ", shape_str(weight.shape()), ": input1.size(-1) must be ", I1);
  ATTN_CHECK(x2.dim() >= 1 && x2.size(-1) == I2, "bilinear: input2 is ", shape_str(x2.shape()),
             " but weight is ", shape_str(weight.shape()), ": input2.size(-1) must be ", I2);
  Shape lead1(x1.shape().begin(), x1.shape().end() - 1), lead2(x2.shape().begin(), x2.shape().end() - 1);
  ATTN_CHECK(lead1 == lead2, "bilinear: input1 ", shape_str(x1.shape()), " and input2 ", shape_str(x2.shape()),
             " must agree in every dim but the last");
  if (bias.defined()) {
    check_same_dtype("bilinear", "input1", x1, "bias", bias);
    ATTN_CHECK(bias.dim() == 1 && bias.size(0) == O, "bilinear: bias is ", shape_str(bias.shape()),
               ", expected (", O, ")");
  }
  // t = x1 @ W viewed (I1, O * I2) -> (..., O, I2); y = sum_j t * x2.
  Tensor w2 = weight.permute({1, 0, 2}).reshape({I1, O * I2});
  Shape ts = lead1;
  ts.push_back(O);
  ts.push_back(I2);
  Tensor t = matmul(x1, w2).reshape(ts);
  Tensor y = sum(t * unsqueeze(x2, -2), {-1});
  return bias.defined() ? y + bias : y;
}

}  // namespace attn::nn::functional

namespace attn::nn::functional {

Tensor masked_softmax(const Tensor& x, const Tensor& mask, int64_t dim) {
  using namespace attn::ops;
  check_float("masked_softmax", "input", x);
  if (!mask.defined()) return softmax(x, dim);
  check_dtype("masked_softmax", "mask", mask, kBool);
  Shape b = broadcast_shapes(x.shape(), mask.shape(), "masked_softmax");
  ATTN_CHECK(b == x.shape(), "masked_softmax: mask ", shape_str(mask.shape()), " does not broadcast to the input ",
             shape_str(x.shape()));
  Tensor m = mask.expand(x.shape());
  // Rows with nothing left get scores 0 (then probabilities 0 below): no -inf
  // row ever reaches softmax, so no NaN in the forward or the backward.
  Tensor none_left = logical_not(sum(logical_not(m).to(kInt64), {dim}, true) > 0.0);
  Tensor s = where(logical_or(m, none_left.expand(x.shape())), x.dtype() == kFloat32 ? -1e30 : -1e300, x);
  Tensor p = softmax(s, dim);
  return where(m, 0.0, p);
}

Tensor normalize(const Tensor& x, int64_t dim, double eps) {
  using namespace attn::ops;
  check_float("normalize", "input", x);
  ATTN_CHECK(eps >= 0, "normalize: eps must be non-negative, got ", eps);
  // max(||x||, eps) as sqrt(max(||x||^2, eps^2)): equal values, and no
  // infinite derivative of the square root at x = 0.
  return x / sqrt(clamp_min(sum(x * x, {dim}, true), eps * eps));
}

}  // namespace attn::nn::functional
