// attn::nn::init: parameter initialisations with torch.nn.init's names and
// distributions. Each fills its tensor in place (outside autograd) from `gen`
// (the default generator when null) and returns it.
#pragma once

#include <string>
#include <utility>

#include "attn/generator.h"
#include "attn/tensor.h"

namespace attn::nn::init {

enum class FanMode { FanIn, FanOut };

// (fan_in, fan_out) of a weight of 2 or more dims, as PyTorch computes it.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);
// "linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu" (param = slope), "selu".
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

Tensor& uniform_(Tensor& t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
Tensor& normal_(Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor& constant_(Tensor& t, double value);
Tensor& zeros_(Tensor& t);
Tensor& ones_(Tensor& t);
Tensor& xavier_uniform_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
Tensor& xavier_normal_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
Tensor& kaiming_uniform_(Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                         const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
Tensor& kaiming_normal_(Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                        const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);

}  // namespace attn::nn::init
