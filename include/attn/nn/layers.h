// The basic layers of torch.nn with PyTorch's names, options, defaults,
// parameter names and initialisations: Linear, Bilinear, Embedding,
// LayerNorm, BatchNorm1d/2d, Dropout, the activations, Flatten, Conv2d and
// the pools. Each module's forward mirrors the functional op in attn::F.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "attn/functional.h"
#include "attn/generator.h"
#include "attn/nn/module.h"
#include "attn/tensor.h"

namespace attn::nn {

// ---- Linear ------------------------------------------------------------------
struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features) : in_features_(in_features), out_features_(out_features) {}
  ATTN_ARG(int64_t, in_features);
  ATTN_ARG(int64_t, out_features);
  ATTN_ARG(bool, bias) = true;
};

// y = x @ weight^T + bias. weight: (out, in), bias: (out); both
// U(-1/sqrt(in), 1/sqrt(in)) as PyTorch.
class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& options);
  Linear(int64_t in_features, int64_t out_features) : Linear(LinearOptions(in_features, out_features)) {}
  void reset_parameters();
  Tensor forward(const Tensor& x) const;
  std::string extra_repr() const override;
  LinearOptions options;
  Tensor weight, bias;
};

struct BilinearOptions {
  BilinearOptions(int64_t in1_features, int64_t in2_features, int64_t out_features)
      : in1_features_(in1_features), in2_features_(in2_features), out_features_(out_features) {}
  ATTN_ARG(int64_t, in1_features);
  ATTN_ARG(int64_t, in2_features);
  ATTN_ARG(int64_t, out_features);
  ATTN_ARG(bool, bias) = true;
};

// y = x1^T A x2 + b. weight: (out, in1, in2), bias: (out).
class Bilinear : public Module {
 public:
  explicit Bilinear(const BilinearOptions& options);
  void reset_parameters();
  Tensor forward(const Tensor& x1, const Tensor& x2) const;
  std::string extra_repr() const override;
  BilinearOptions options;
  Tensor weight, bias;
};

// A module that returns its input.
class Identity : public Module {
 public:
  Identity() : Module("Identity") {}
  Tensor forward(const Tensor& x) const { return x; }
};

// ---- Embedding -----------------------------------------------------------------
struct EmbeddingOptions {
  EmbeddingOptions(int64_t num_embeddings, int64_t embedding_dim)
      : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}
  ATTN_ARG(int64_t, num_embeddings);
  ATTN_ARG(int64_t, embedding_dim);
  // Negative counts from the end, as PyTorch; that row starts at zero and gets no gradient.
  ATTN_ARG(std::optional<int64_t>, padding_idx) = std::nullopt;
};

// weight: (num_embeddings, embedding_dim) ~ N(0, 1).
class Embedding : public Module {
 public:
  explicit Embedding(const EmbeddingOptions& options);
  void reset_parameters();
  Tensor forward(const Tensor& indices) const;
  std::string extra_repr() const override;
  EmbeddingOptions options;
  Tensor weight;
};

// ---- Normalisation ---------------------------------------------------------------
struct LayerNormOptions {
  LayerNormOptions(Shape normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}  // NOLINT
  ATTN_ARG(Shape, normalized_shape);
  ATTN_ARG(double, eps) = 1e-5;
  ATTN_ARG(bool, elementwise_affine) = true;
  ATTN_ARG(bool, bias) = true;  // as PyTorch 2.1's LayerNorm(bias=...)
};

// weight ones, bias zeros, both of normalized_shape.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(const LayerNormOptions& options);
  void reset_parameters();
  Tensor forward(const Tensor& x) const;
  std::string extra_repr() const override;
  LayerNormOptions options;
  Tensor weight, bias;
};

struct BatchNormOptions {
  BatchNormOptions(int64_t num_features) : num_features_(num_features) {}  // NOLINT
  ATTN_ARG(int64_t, num_features);
  ATTN_ARG(double, eps) = 1e-5;
  // nullopt: a cumulative moving average (factor 1 / num_batches_tracked), as PyTorch's None.
  ATTN_ARG(std::optional<double>, momentum) = 0.1;
  ATTN_ARG(bool, affine) = true;
  ATTN_ARG(bool, track_running_stats) = true;
};

// Parameters weight (ones), bias (zeros); buffers running_mean (zeros),
// running_var (ones), num_batches_tracked (int64 0). Training (or no running
// statistics) normalises with the batch's statistics and updates the running
// ones; eval uses the running ones.
class BatchNorm : public Module {
 public:
  Tensor forward(const Tensor& x);
  void reset_running_stats();
  void reset_parameters();
  std::string extra_repr() const override;
  BatchNormOptions options;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 protected:
  BatchNorm(const char* name, const BatchNormOptions& options, int64_t min_dim, int64_t max_dim);

 private:
  int64_t min_dim_, max_dim_;
};

// Input (N, C) or (N, C, L).
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(const BatchNormOptions& options) : BatchNorm("BatchNorm1d", options, 2, 3) {}
};
// Input (N, C, H, W).
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(const BatchNormOptions& options) : BatchNorm("BatchNorm2d", options, 4, 4) {}
};

// ---- Dropout and activations ---------------------------------------------------------
struct DropoutOptions {
  DropoutOptions(double p = 0.5) : p_(p) {}  // NOLINT
  ATTN_ARG(double, p);
  ATTN_ARG(Generator*, generator) = nullptr;  // the default generator when null
};

// Zeroes with probability p and scales by 1/(1-p) in training mode; identity in eval.
class Dropout : public Module {
 public:
  explicit Dropout(const DropoutOptions& options = {});
  Tensor forward(const Tensor& x) const;
  std::string extra_repr() const override;
  DropoutOptions options;
};

#define ATTN_SIMPLE_MODULE(Name, expr)                       \
  class Name : public Module {                               \
   public:                                                   \
    Name() : Module(#Name) {}                                \
    Tensor forward(const Tensor& x) const { return expr; }   \
  };
ATTN_SIMPLE_MODULE(ReLU, F::relu(x))
ATTN_SIMPLE_MODULE(Tanh, F::tanh(x))
ATTN_SIMPLE_MODULE(Sigmoid, F::sigmoid(x))
#undef ATTN_SIMPLE_MODULE

class GELU : public Module {
 public:
  explicit GELU(std::string approximate = "none");
  Tensor forward(const Tensor& x) const { return F::gelu(x, approximate); }
  std::string extra_repr() const override { return "approximate='" + approximate + "'"; }
  std::string approximate;
};

class ELU : public Module {
 public:
  explicit ELU(double alpha = 1.0) : Module("ELU"), alpha(alpha) {}
  Tensor forward(const Tensor& x) const { return F::elu(x, alpha); }
  std::string extra_repr() const override;
  double alpha;
};

class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : Module("LeakyReLU"), negative_slope(negative_slope) {}
  Tensor forward(const Tensor& x) const { return F::leaky_relu(x, negative_slope); }
  std::string extra_repr() const override;
  double negative_slope;
};

class Softmax : public Module {
 public:
  explicit Softmax(int64_t dim) : Module("Softmax"), dim(dim) {}
  Tensor forward(const Tensor& x) const { return F::softmax(x, dim); }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim); }
  int64_t dim;
};

class LogSoftmax : public Module {
 public:
  explicit LogSoftmax(int64_t dim) : Module("LogSoftmax"), dim(dim) {}
  Tensor forward(const Tensor& x) const { return F::log_softmax(x, dim); }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim); }
  int64_t dim;
};

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : Module("Flatten"), start_dim(start_dim), end_dim(end_dim) {}
  Tensor forward(const Tensor& x) const { return F::flatten(x, start_dim, end_dim); }
  std::string extra_repr() const override;
  int64_t start_dim, end_dim;
};

// ---- Convolution and pooling ------------------------------------------------------------
struct Conv2dOptions {
  Conv2dOptions(int64_t in_channels, int64_t out_channels, Pair2 kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  ATTN_ARG(int64_t, in_channels);
  ATTN_ARG(int64_t, out_channels);
  ATTN_ARG(Pair2, kernel_size);
  ATTN_ARG(Pair2, stride) = 1;
  ATTN_ARG(Pair2, padding) = 0;  // zeros padding
  ATTN_ARG(Pair2, dilation) = 1;
  ATTN_ARG(int64_t, groups) = 1;
  ATTN_ARG(bool, bias) = true;
};

// weight: (out, in / groups, kH, kW), bias: (out); U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dOptions& options);
  void reset_parameters();
  Tensor forward(const Tensor& x) const;
  std::string extra_repr() const override;
  Conv2dOptions options;
  Tensor weight, bias;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const F::MaxPool2dFuncOptions& options) : Module("MaxPool2d"), options(options) {}
  Tensor forward(const Tensor& x) const { return F::max_pool2d(x, options); }
  F::MaxPool2dFuncOptions options;
};
using MaxPool2dOptions = F::MaxPool2dFuncOptions;

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const F::AvgPool2dFuncOptions& options) : Module("AvgPool2d"), options(options) {}
  Tensor forward(const Tensor& x) const { return F::avg_pool2d(x, options); }
  F::AvgPool2dFuncOptions options;
};
using AvgPool2dOptions = F::AvgPool2dFuncOptions;

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(Pair2 output_size) : Module("AdaptiveAvgPool2d"), output_size(output_size) {}
  Tensor forward(const Tensor& x) const { return F::adaptive_avg_pool2d(x, output_size); }
  Pair2 output_size;
};

}  // namespace attn::nn
