// The basic layers: construction (PyTorch's parameter names and default
// initialisations), forward through attn::F, and their printed form.
#include "attn/nn/layers.h"

#include <cmath>
#include <sstream>

#include "attn/autograd.h"
#include "attn/nn/init.h"
#include "attn/ops.h"

namespace attn::nn {

namespace {
std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
std::string pair_str(Pair2 p) {
  std::ostringstream os;
  os << "(" << p.h << ", " << p.w << ")";
  return os.str();
}
void check_positive(const char* mod, const char* arg, int64_t v) {
  ATTN_CHECK(v > 0, mod, ": ", arg, " must be positive, got ", v);
}
}  // namespace

// ---- Linear ------------------------------------------------------------------
Linear::Linear(const LinearOptions& o) : Module("Linear"), options(o) {
  ATTN_CHECK(o.in_features() >= 0 && o.out_features() >= 0, "Linear: in_features and out_features must be "
             "non-negative, got ", o.in_features(), " and ", o.out_features());
  weight = empty({o.out_features(), o.in_features()});
  register_parameter("weight", weight);
  if (o.bias()) {
    bias = empty({o.out_features()});
    register_parameter("bias", bias);
  }
  reset_parameters();
}

void Linear::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));  // U(-1/sqrt(in), 1/sqrt(in))
  if (bias.defined()) {
    double bound = options.in_features() > 0 ? 1.0 / std::sqrt(static_cast<double>(options.in_features())) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Linear::forward(const Tensor& x) const { return F::linear(x, weight, bias); }

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(options.in_features()) +
         ", out_features=" + std::to_string(options.out_features()) + ", bias=" + (bias.defined() ? "True" : "False");
}

Bilinear::Bilinear(const BilinearOptions& o) : Module("Bilinear"), options(o) {
  check_positive("Bilinear", "in1_features", o.in1_features());
  check_positive("Bilinear", "in2_features", o.in2_features());
  check_positive("Bilinear", "out_features", o.out_features());
  weight = empty({o.out_features(), o.in1_features(), o.in2_features()});
  register_parameter("weight", weight);
  if (o.bias()) {
    bias = empty({o.out_features()});
    register_parameter("bias", bias);
  }
  reset_parameters();
}

void Bilinear::reset_parameters() {
  double bound = 1.0 / std::sqrt(static_cast<double>(weight.size(1)));
  init::uniform_(weight, -bound, bound);
  if (bias.defined()) init::uniform_(bias, -bound, bound);
}

Tensor Bilinear::forward(const Tensor& x1, const Tensor& x2) const { return F::bilinear(x1, x2, weight, bias); }

std::string Bilinear::extra_repr() const {
  return "in1_features=" + std::to_string(options.in1_features()) +
         ", in2_features=" + std::to_string(options.in2_features()) +
         ", out_features=" + std::to_string(options.out_features()) + ", bias=" + (bias.defined() ? "True" : "False");
}

// ---- Embedding -----------------------------------------------------------------
Embedding::Embedding(const EmbeddingOptions& o) : Module("Embedding"), options(o) {
  check_positive("Embedding", "num_embeddings", o.num_embeddings());
  ATTN_CHECK(o.embedding_dim() >= 0, "Embedding: embedding_dim must be non-negative, got ", o.embedding_dim());
  if (o.padding_idx()) {
    int64_t p = *o.padding_idx(), n = o.num_embeddings();
    ATTN_CHECK(p >= -n && p < n, "Embedding: padding_idx must be within num_embeddings (", n, "), got ", p);
    options.padding_idx(p < 0 ? p + n : p);
  }
  weight = empty({o.num_embeddings(), o.embedding_dim()});
  register_parameter("weight", weight);
  reset_parameters();
}

void Embedding::reset_parameters() {
  init::normal_(weight);
  if (options.padding_idx()) {
    NoGradGuard ng;
    weight.select(0, *options.padding_idx()).fill_(0.0);
  }
}

Tensor Embedding::forward(const Tensor& indices) const { return F::embedding(indices, weight, options.padding_idx()); }

std::string Embedding::extra_repr() const {
  std::string s = std::to_string(options.num_embeddings()) + ", " + std::to_string(options.embedding_dim());
  if (options.padding_idx()) s += ", padding_idx=" + std::to_string(*options.padding_idx());
  return s;
}

// ---- Normalisation ---------------------------------------------------------------
LayerNorm::LayerNorm(const LayerNormOptions& o) : Module("LayerNorm"), options(o) {
  ATTN_CHECK(!o.normalized_shape().empty(), "LayerNorm: normalized_shape must have at least 1 dim");
  for (int64_t d : o.normalized_shape())
    ATTN_CHECK(d >= 0, "LayerNorm: normalized_shape ", shape_str(o.normalized_shape()), " has a negative size");
  if (o.elementwise_affine()) {
    weight = empty(o.normalized_shape());
    register_parameter("weight", weight);
    if (o.bias()) {
      bias = empty(o.normalized_shape());
      register_parameter("bias", bias);
    }
  }
  reset_parameters();
}

void LayerNorm::reset_parameters() {
  if (weight.defined()) init::ones_(weight);
  if (bias.defined()) init::zeros_(bias);
}

Tensor LayerNorm::forward(const Tensor& x) const {
  return F::layer_norm(x, options.normalized_shape(), weight, bias, options.eps());
}

std::string LayerNorm::extra_repr() const {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < options.normalized_shape().size(); ++i) os << (i ? ", " : "") << options.normalized_shape()[i];
  if (options.normalized_shape().size() == 1) os << ",";
  os << "), eps=" << options.eps() << ", elementwise_affine=" << (options.elementwise_affine() ? "True" : "False");
  return os.str();
}

BatchNorm::BatchNorm(const char* name, const BatchNormOptions& o, int64_t min_dim, int64_t max_dim)
    : Module(name), options(o), min_dim_(min_dim), max_dim_(max_dim) {
  check_positive(name, "num_features", o.num_features());
  const int64_t C = o.num_features();
  if (o.affine()) {
    weight = empty({C});
    bias = empty({C});
    register_parameter("weight", weight);
    register_parameter("bias", bias);
  }
  if (o.track_running_stats()) {
    running_mean = zeros({C});
    running_var = ones({C});
    num_batches_tracked = zeros({}, kInt64);
    register_buffer("running_mean", running_mean);
    register_buffer("running_var", running_var);
    register_buffer("num_batches_tracked", num_batches_tracked);
  }
  reset_parameters();
}

void BatchNorm::reset_running_stats() {
  if (!running_mean.defined()) return;
  NoGradGuard ng;
  running_mean.zero_();
  running_var.fill_(1.0);
  num_batches_tracked.zero_();
}

void BatchNorm::reset_parameters() {
  reset_running_stats();
  if (weight.defined()) init::ones_(weight);
  if (bias.defined()) init::zeros_(bias);
}

Tensor BatchNorm::forward(const Tensor& x) {
  ATTN_CHECK(x.defined(), type_name(), ": input is undefined");
  ATTN_CHECK(x.dim() >= min_dim_ && x.dim() <= max_dim_, type_name(), ": expected ",
             min_dim_ == max_dim_ ? std::to_string(min_dim_) + "-d" : "2-d or 3-d", " input, got ",
             shape_str(x.shape()));
  ATTN_CHECK(x.size(1) == options.num_features(), type_name(), ": the input ", shape_str(x.shape()), " has ",
             x.size(1), " channels (dim 1) but num_features is ", options.num_features());
  double factor = options.momentum().value_or(0.0);
  if (is_training() && running_mean.defined()) {
    NoGradGuard ng;
    num_batches_tracked.fill_(static_cast<double>(num_batches_tracked.item<int64_t>() + 1));
    if (!options.momentum()) factor = 1.0 / static_cast<double>(num_batches_tracked.item<int64_t>());
  }
  bool use_batch = is_training() || !running_mean.defined();
  return F::batch_norm(x, running_mean, running_var, weight, bias, use_batch, factor, options.eps());
}

std::string BatchNorm::extra_repr() const {
  return std::to_string(options.num_features()) + ", eps=" + fmt(options.eps()) + ", momentum=" +
         (options.momentum() ? fmt(*options.momentum()) : std::string("None")) +
         ", affine=" + (options.affine() ? "True" : "False") +
         ", track_running_stats=" + (options.track_running_stats() ? "True" : "False");
}

// ---- Dropout and activations ---------------------------------------------------------
Dropout::Dropout(const DropoutOptions& o) : Module("Dropout"), options(o) {
  ATTN_CHECK(o.p() >= 0.0 && o.p() <= 1.0, "Dropout: p must be in [0, 1], got ", o.p());
}

Tensor Dropout::forward(const Tensor& x) const {
  return F::dropout(x, options.p(), is_training(), options.generator());
}

std::string Dropout::extra_repr() const { return "p=" + fmt(options.p()) + ", inplace=False"; }

GELU::GELU(std::string approx) : Module("GELU"), approximate(std::move(approx)) {
  ATTN_CHECK(approximate == "none" || approximate == "tanh", "GELU: approximate must be 'none' or 'tanh', got '",
             approximate, "'");
}

std::string ELU::extra_repr() const { return "alpha=" + fmt(alpha); }
std::string LeakyReLU::extra_repr() const { return "negative_slope=" + fmt(negative_slope); }
std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_dim) + ", end_dim=" + std::to_string(end_dim);
}

// ---- Convolution -------------------------------------------------------------------------
Conv2d::Conv2d(const Conv2dOptions& o) : Module("Conv2d"), options(o) {
  check_positive("Conv2d", "in_channels", o.in_channels());
  check_positive("Conv2d", "out_channels", o.out_channels());
  check_positive("Conv2d", "groups", o.groups());
  ATTN_CHECK(o.in_channels() % o.groups() == 0 && o.out_channels() % o.groups() == 0,
             "Conv2d: in_channels (", o.in_channels(), ") and out_channels (", o.out_channels(),
             ") must be divisible by groups (", o.groups(), ")");
  ATTN_CHECK(o.kernel_size().h > 0 && o.kernel_size().w > 0, "Conv2d: kernel_size must be positive, got ",
             pair_str(o.kernel_size()));
  weight = empty({o.out_channels(), o.in_channels() / o.groups(), o.kernel_size().h, o.kernel_size().w});
  register_parameter("weight", weight);
  if (o.bias()) {
    bias = empty({o.out_channels()});
    register_parameter("bias", bias);
  }
  reset_parameters();
}

void Conv2d::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    auto [fan_in, fan_out] = init::calculate_fan_in_and_fan_out(weight);
    double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Conv2d::forward(const Tensor& x) const {
  return F::conv2d(x, weight,
                   F::Conv2dFuncOptions()
                       .bias(bias)
                       .stride(options.stride())
                       .padding(options.padding())
                       .dilation(options.dilation())
                       .groups(options.groups()));
}

std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(options.in_channels()) + ", " + std::to_string(options.out_channels()) +
                  ", kernel_size=" + pair_str(options.kernel_size()) + ", stride=" + pair_str(options.stride());
  if (options.padding().h || options.padding().w) s += ", padding=" + pair_str(options.padding());
  if (options.dilation().h != 1 || options.dilation().w != 1) s += ", dilation=" + pair_str(options.dilation());
  if (options.groups() != 1) s += ", groups=" + std::to_string(options.groups());
  if (!bias.defined()) s += ", bias=False";
  return s;
}

}  // namespace attn::nn
