// attn::nn::functional (alias attn::F): the neural-network ops, with
// torch.nn.functional's names, defaults and semantics. Options structs follow
// PyTorch's C++ frontend: required values in the constructor, optional ones as
// fluent setters with the default beside them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

#include "attn/generator.h"
#include "attn/ops.h"
#include "attn/tensor.h"

namespace attn {

enum class Reduction { None, Mean, Sum };
inline constexpr Reduction kNone = Reduction::None;
inline constexpr Reduction kMean = Reduction::Mean;
inline constexpr Reduction kSum = Reduction::Sum;

// Two ints (height, width); an int sets both, as PyTorch's ExpandingArray<2>.
struct Pair2 {
  int64_t h, w;
  Pair2(int64_t v) : h(v), w(v) {}  // NOLINT: implicit, as in PyTorch
  Pair2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
};

// A fluent option: `name(value)` sets it, `name()` reads it.
#define ATTN_ARG(T, name)                                                   \
 public:                                                                    \
  auto& name(const std::type_identity_t<T>& v) { name##_ = v; return *this; } \
  const std::type_identity_t<T>& name() const { return name##_; }          \
                                                                            \
 private:                                                                   \
  T name##_

namespace nn::functional {

Tensor relu(const Tensor& x);
// approximate: "none" (exact, with erf) or "tanh".
Tensor gelu(const Tensor& x, const std::string& approximate = "none");
Tensor elu(const Tensor& x, double alpha = 1.0);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
// log(1 + exp(beta * x)) / beta, linear where beta * x > threshold (as PyTorch).
Tensor softplus(const Tensor& x, double beta = 1.0, double threshold = 20.0);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
// Numerically stable (the row max is subtracted).
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// softmax(x) along dim with entries where mask is true (**true = masked**,
// broadcastable to x) removed: they get probability 0. A row with every entry
// masked gives all zeros and zero gradients, never NaN.
Tensor masked_softmax(const Tensor& x, const Tensor& mask, int64_t dim = -1);

// x / max(||x||_p, eps) along dim, as torch.nn.functional.normalize (p = 2).
Tensor normalize(const Tensor& x, int64_t dim = -1, double eps = 1e-12);

// Normalises over the trailing normalized_shape dims; weight and bias have that shape.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);

// Batch normalisation over every dim but 1 (channels). x: (N, C, ...).
// training: normalise with the batch's statistics (biased variance) and, when
// running_mean/running_var are given, update them in place as
// r = (1 - momentum) * r + momentum * stat (the variance unbiased);
// otherwise normalise with the running statistics. weight, bias: (C).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight = {}, const Tensor& bias = {}, bool training = false,
                  double momentum = 0.1, double eps = 1e-5);

// Zeroes each element with probability p and scales the rest by 1/(1-p),
// drawing from `gen` (the default generator when null). Identity when !training.
Tensor dropout(const Tensor& x, double p = 0.5, bool training = true, Generator* gen = nullptr);

// x @ weight^T + bias. weight: (out, in); bias: (out).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

// y[..., o] = x1[..., i] * weight[o, i, j] * x2[..., j] + bias[o].
// x1: (..., in1), x2: (..., in2), weight: (out, in1, in2), bias: (out).
Tensor bilinear(const Tensor& x1, const Tensor& x2, const Tensor& weight, const Tensor& bias = {});

// weight[indices]; indices int64 of any shape; the row at padding_idx gets no gradient.
Tensor embedding(const Tensor& indices, const Tensor& weight,
                 std::optional<int64_t> padding_idx = std::nullopt);

struct Conv2dFuncOptions {
  ATTN_ARG(Tensor, bias) = {};
  ATTN_ARG(Pair2, stride) = 1;
  ATTN_ARG(Pair2, padding) = 0;
  ATTN_ARG(Pair2, dilation) = 1;
  ATTN_ARG(int64_t, groups) = 1;
};
// x: (N, C_in, H, W) or (C_in, H, W); weight: (C_out, C_in/groups, kH, kW).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Conv2dFuncOptions& options = {});

struct MaxPool2dFuncOptions {
  explicit MaxPool2dFuncOptions(Pair2 kernel_size) : kernel_size_(kernel_size) {}
  ATTN_ARG(Pair2, kernel_size);
  ATTN_ARG(std::optional<Pair2>, stride) = std::nullopt;  // defaults to kernel_size
  ATTN_ARG(Pair2, padding) = 0;
  ATTN_ARG(Pair2, dilation) = 1;
  ATTN_ARG(bool, ceil_mode) = false;
};
Tensor max_pool2d(const Tensor& x, const MaxPool2dFuncOptions& options);

struct AvgPool2dFuncOptions {
  explicit AvgPool2dFuncOptions(Pair2 kernel_size) : kernel_size_(kernel_size) {}
  ATTN_ARG(Pair2, kernel_size);
  ATTN_ARG(std::optional<Pair2>, stride) = std::nullopt;  // defaults to kernel_size
  ATTN_ARG(Pair2, padding) = 0;
  ATTN_ARG(bool, ceil_mode) = false;
  ATTN_ARG(bool, count_include_pad) = true;
  ATTN_ARG(std::optional<int64_t>, divisor_override) = std::nullopt;
};
Tensor avg_pool2d(const Tensor& x, const AvgPool2dFuncOptions& options);

Tensor adaptive_avg_pool2d(const Tensor& x, Pair2 output_size);

// As torch.flatten (nn.Flatten's default start_dim is 1).
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);

struct CrossEntropyFuncOptions {
  ATTN_ARG(Tensor, weight) = {};  // (C) class weights
  ATTN_ARG(int64_t, ignore_index) = -100;
  ATTN_ARG(Reduction, reduction) = Reduction::Mean;
  ATTN_ARG(double, label_smoothing) = 0.0;
};
// input: (N, C), (C) or (N, C, d1, ...) logits; target: int64 class indices
// ((N), (), (N, d1, ...)) or float class probabilities of input's shape.
Tensor cross_entropy(const Tensor& input, const Tensor& target,
                     const CrossEntropyFuncOptions& options = {});

struct NLLLossFuncOptions {
  ATTN_ARG(Tensor, weight) = {};
  ATTN_ARG(int64_t, ignore_index) = -100;
  ATTN_ARG(Reduction, reduction) = Reduction::Mean;
};
// input: log-probabilities (N, C), (C) or (N, C, d1, ...); target: int64 indices.
Tensor nll_loss(const Tensor& input, const Tensor& target, const NLLLossFuncOptions& options = {});

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target,
                      Reduction reduction = Reduction::Mean, double beta = 1.0);

struct BCEWithLogitsFuncOptions {
  ATTN_ARG(Tensor, weight) = {};      // broadcastable to input
  ATTN_ARG(Tensor, pos_weight) = {};  // broadcastable to input (per class)
  ATTN_ARG(Reduction, reduction) = Reduction::Mean;
};
Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                        const BCEWithLogitsFuncOptions& options = {});

}  // namespace nn::functional

namespace F = nn::functional;

}  // namespace attn
