// Parameter initialisations (torch.nn.init).
#include "attn/nn/init.h"

#include <cmath>

#include "attn/autograd.h"
#include "attn/error.h"
#include "attn/ops.h"

namespace attn::nn::init {

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  ATTN_CHECK(t.defined() && t.dim() >= 2, "init: fan in and fan out need a tensor of 2 or more dims, got ",
             t.defined() ? shape_str(t.shape()) : std::string("an undefined tensor"));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "conv1d" || nl == "conv2d" || nl == "conv3d" || nl == "sigmoid") return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nl == "selu") return 3.0 / 4.0;
  throw Error(detail::str("init.calculate_gain: unknown nonlinearity '", nl, "'"));
}

namespace {
void check(const char* op, const Tensor& t) {
  ATTN_CHECK(t.defined(), "init.", op, ": tensor is undefined");
  ATTN_CHECK(t.is_floating_point(), "init.", op, ": tensor must be float32 or float64, got ",
             dtype_name(t.dtype()));
}
}  // namespace

Tensor& uniform_(Tensor& t, double a, double b, Generator* gen) {
  check("uniform_", t);
  NoGradGuard ng;
  t.copy_(rand(t.shape(), t.dtype(), gen) * (b - a) + a);
  return t;
}

Tensor& normal_(Tensor& t, double mean, double std, Generator* gen) {
  check("normal_", t);
  NoGradGuard ng;
  t.copy_(randn(t.shape(), t.dtype(), gen) * std + mean);
  return t;
}

Tensor& constant_(Tensor& t, double value) {
  check("constant_", t);
  NoGradGuard ng;
  t.fill_(value);
  return t;
}
Tensor& zeros_(Tensor& t) { return constant_(t, 0.0); }
Tensor& ones_(Tensor& t) { return constant_(t, 1.0); }

Tensor& xavier_uniform_(Tensor& t, double gain, Generator* gen) {
  auto [fi, fo] = calculate_fan_in_and_fan_out(t);
  double a = gain * std::sqrt(6.0 / static_cast<double>(fi + fo));
  return uniform_(t, -a, a, gen);
}

Tensor& xavier_normal_(Tensor& t, double gain, Generator* gen) {
  auto [fi, fo] = calculate_fan_in_and_fan_out(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fi + fo)), gen);
}

namespace {
double kaiming_std(const Tensor& t, double a, FanMode mode, const std::string& nl) {
  auto [fi, fo] = calculate_fan_in_and_fan_out(t);
  int64_t fan = mode == FanMode::FanIn ? fi : fo;
  ATTN_CHECK(fan > 0, "init.kaiming: the tensor has a zero fan (shape ", shape_str(t.shape()), ")");
  return calculate_gain(nl, a) / std::sqrt(static_cast<double>(fan));
}
}  // namespace

Tensor& kaiming_uniform_(Tensor& t, double a, FanMode mode, const std::string& nl, Generator* gen) {
  double bound = std::sqrt(3.0) * kaiming_std(t, a, mode, nl);
  return uniform_(t, -bound, bound, gen);
}

Tensor& kaiming_normal_(Tensor& t, double a, FanMode mode, const std::string& nl, Generator* gen) {
  return normal_(t, 0.0, kaiming_std(t, a, mode, nl), gen);
}

}  // namespace attn::nn::init
