#include "support/op_cases.h"

namespace attn::testing {

namespace {
std::vector<Case> build_cases() {
  return {
      {"add", {}, {real({3, 4}), real({4})}},
      {"add", {}, {real({2, 1, 3}), real({4, 1})}},
      {"sub", {}, {real({3, 1}), real({1, 5})}},
      {"mul", {}, {real({2, 3, 4}), real({3, 1})}},
      {"div", {}, {real({3, 4}), pos({4})}},
      {"maximum", {}, {real({3, 4}), real({3, 4})}},
      {"minimum", {}, {real({3, 4}), real({4})}},
      {"pow", {}, {pos({3, 4}), real({4})}},
      {"pow_scalar", {{"exponent", 3.0}}, {real({5})}},
      {"pow_scalar", {{"exponent", 2.0}}, {real({5})}},
      {"pow_scalar", {{"exponent", -1.5}}, {pos({5})}},
      {"add_scalar", {{"value", 2.5}}, {real({4})}},
      {"rsub_scalar", {{"value", 2.5}}, {real({4})}},
      {"mul_scalar", {{"value", -3.0}}, {real({4})}},
      {"rdiv_scalar", {{"value", 2.0}}, {pos({4})}},
      {"neg", {}, {real({6})}},
      {"exp", {}, {real({2, 3})}},
      {"log", {}, {pos({2, 3})}},
      {"log1p", {}, {pos({2, 3})}},
      {"sqrt", {}, {pos({2, 3})}},
      {"rsqrt", {}, {pos({2, 3})}},
      {"abs", {}, {real({2, 3})}},
      {"sin", {}, {real({2, 3})}},
      {"cos", {}, {real({2, 3})}},
      {"tanh", {}, {real({2, 3})}},
      {"sigmoid", {}, {real({2, 3})}},
      {"relu", {}, {real({2, 3})}},
      {"clamp", {{"min", -0.5}, {"max", 0.5}}, {real({3, 4})}},
      {"clamp", {{"min", 0.1}}, {real({3, 4})}},
      {"where", {}, {mask({3, 4}), real({3, 4}), real({4})}},
      {"masked_fill", {{"value", 1.5}}, {real({3, 4}), mask({4})}},
      {"sum", {}, {real({3, 4})}},
      {"sum", {{"dim", {1}}, {"keepdim", true}}, {real({3, 4, 2})}},
      {"sum", {{"dim", {0, 2}}}, {real({3, 4, 2})}},
      {"mean", {{"dim", {-1}}}, {real({3, 4})}},
      {"mean", {}, {real({3, 4})}},
      {"var", {{"dim", {1}}}, {real({3, 5})}},
      {"var", {{"dim", {0, 1}}, {"correction", 0}, {"keepdim", true}}, {real({3, 5})}},
      {"std", {{"dim", {1}}}, {real({3, 5})}},
      {"amax", {{"dim", {1}}}, {real({3, 5})}},
      {"amin", {{"dim", {0}}, {"keepdim", true}}, {real({3, 5})}},
      {"max_dim", {{"dim", 1}}, {real({3, 5})}},
      {"min_dim", {{"dim", 0}, {"keepdim", true}}, {real({3, 5})}},
      {"max_all", {}, {real({3, 5})}},
      {"logsumexp", {{"dim", {1}}}, {real({3, 5})}},
      {"matmul", {}, {real({3, 4}), real({4, 5})}},
      {"matmul", {}, {real({2, 3, 4}), real({4, 5})}},
      {"matmul", {}, {real({2, 1, 3, 4}), real({3, 4, 2})}},
      {"matmul", {}, {real({4}), real({4, 3})}},
      {"matmul", {}, {real({2, 3, 4}), real({4})}},
      {"matmul", {}, {real({4}), real({4})}},
      {"matmul_bt", {}, {real({2, 3, 4}), real({2, 5, 4})}},
      {"mm", {}, {real({3, 4}), real({4, 2})}},
      {"bmm", {}, {real({2, 3, 4}), real({2, 4, 2})}},
      {"cat", {{"dim", 1}}, {real({2, 3}), real({2, 1}), real({2, 2})}},
      {"stack", {{"dim", 1}}, {real({2, 3}), real({2, 3})}},
      {"split", {{"size", 2}, {"dim", 1}, {"index", 1}}, {real({3, 5})}},
      {"chunk", {{"chunks", 3}, {"dim", 0}, {"index", 2}}, {real({5, 2})}},
      {"index_select", {{"dim", 0}}, {real({4, 3}), idx({5}, 4)}},
      {"index_select", {{"dim", 1}}, {real({2, 4, 3}), idx({6}, 4)}},
      {"gather", {{"dim", 1}}, {real({3, 4}), idx({3, 6}, 4)}},
      {"gather", {{"dim", 0}}, {real({3, 4}), idx({2, 3}, 3)}},
      {"scatter_add", {{"dim", 1}}, {real({3, 4}), idx({3, 5}, 4), real({3, 5})}},
      {"scatter_add", {{"dim", 0}}, {real({3, 4}), idx({2, 3}, 3), real({4, 4})}},
      {"pad", {{"pad", {1, 2}}, {"value", 0.5}}, {real({2, 3})}},
      {"pad", {{"pad", {1, -1, 0, 2}}}, {real({2, 3, 4})}},
      {"tril", {{"diagonal", 0}}, {real({2, 4, 4})}},
      {"triu", {{"diagonal", 1}}, {real({3, 5})}},
      {"transpose", {{"dim0", 0}, {"dim1", 2}}, {real({2, 3, 4})}},
      {"permute", {{"dims", {2, 0, 1}}}, {real({2, 3, 4})}},
      {"reshape", {{"shape", {4, -1}}}, {real({2, 3, 4})}},
      {"slice", {{"dim", 1}, {"start", 1}, {"end", 6}, {"step", 2}}, {real({2, 7})}},
      {"select", {{"dim", 1}, {"index", -1}}, {real({2, 3, 4})}},
      {"narrow", {{"dim", 0}, {"start", 1}, {"length", 2}}, {real({4, 3})}},
      {"unsqueeze", {{"dim", 1}}, {real({3, 4})}},
      {"squeeze", {{"dim", 1}}, {real({3, 1, 4})}},
      {"squeeze", {}, {real({3, 1, 4, 1})}},
      {"expand", {{"shape", {2, 3, 4}}}, {real({3, 1})}},
      {"flatten", {{"start_dim", 1}}, {real({2, 3, 4})}},
      {"contiguous_t", {}, {real({3, 4})}},
      {"gelu", {}, {real({3, 4})}},
      {"gelu", {{"approximate", "tanh"}}, {real({3, 4})}},
      {"elu", {{"alpha", 0.7}}, {real({3, 4})}},
      {"leaky_relu", {{"negative_slope", 0.2}}, {real({3, 4})}},
      {"softplus", {{"beta", 2.0}}, {real({3, 4})}},
      {"softmax", {{"dim", 1}}, {real({3, 5})}},
      {"softmax", {{"dim", 0}}, {real({3, 2, 2})}},
      {"log_softmax", {{"dim", -1}}, {real({3, 5})}},
      {"log_softmax", {{"dim", 1}}, {real({2, 3, 2})}},
      {"layer_norm", {{"normalized_shape", {5}}}, {real({3, 5}), opt(real({5})), opt(real({5}))}},
      {"layer_norm", {{"normalized_shape", {2, 3}}}, {real({2, 2, 3}), opt(real({2, 3}))}},
      {"layer_norm", {{"normalized_shape", {4}}}, {real({3, 4})}},
      {"linear", {}, {real({2, 3, 4}), real({5, 4}), opt(real({5}))}},
      {"linear", {}, {real({4}), real({2, 4})}},
      {"embedding", {}, {idx({2, 3}, 5), real({5, 4})}},
      {"embedding", {{"padding_idx", 1}}, {idx({7}, 3), real({3, 2})},
       // As PyTorch: the padding row never receives gradient.
       [](size_t i, Tensor& g) { if (i == 1) g.select(0, 1).zero_(); }},
      {"conv2d", {}, {real({2, 3, 5, 5}), real({4, 3, 3, 3}), opt(real({4}))}},
      {"conv2d", {{"stride", 2}, {"padding", 1}}, {real({1, 2, 6, 5}), real({3, 2, 3, 2})}},
      {"conv2d", {{"dilation", 2}, {"groups", 2}}, {real({1, 4, 6, 6}), real({2, 2, 2, 2}), opt(real({2}))}},
      {"conv2d", {{"padding", {1, 0}}}, {real({3, 4, 4}), real({2, 3, 3, 3})}},
      {"max_pool2d", {{"kernel_size", 2}}, {real({2, 2, 4, 4})}},
      {"max_pool2d", {{"kernel_size", 3}, {"stride", 2}, {"padding", 1}, {"ceil_mode", true}}, {real({1, 2, 6, 5})}},
      {"avg_pool2d", {{"kernel_size", 2}}, {real({2, 2, 4, 5})}},
      {"avg_pool2d", {{"kernel_size", 3}, {"stride", 2}, {"padding", 1}, {"count_include_pad", false}},
       {real({1, 2, 5, 5})}},
      {"adaptive_avg_pool2d", {{"output_size", {2, 3}}}, {real({2, 2, 5, 7})}},
      {"cross_entropy", {}, {real({4, 5}), idx({4}, 5)}},
      {"cross_entropy", {{"label_smoothing", 0.1}, {"reduction", "sum"}}, {real({4, 5}), idx({4}, 5), opt(posc({5}))}},
      {"cross_entropy", {{"label_smoothing", 0.2}}, {real({2, 3, 4}), idx({2, 4}, 3)}},
      {"cross_entropy", {}, {real({3, 4}), unit({3, 4})}},
      {"nll_loss", {}, {real({4, 5}), idx({4}, 5), opt(posc({5}))}},
      {"nll_loss", {{"reduction", "none"}}, {real({2, 3, 2}), idx({2, 2}, 3)}},
      {"mse_loss", {}, {real({3, 4}), real({3, 4})}},
      {"smooth_l1_loss", {{"beta", 0.5}}, {real({3, 4}), real({3, 4})}},
      {"bce_with_logits", {}, {real({3, 4}), unit({3, 4})}},
      {"bce_with_logits", {{"has_weight", true}, {"has_pos_weight", true}, {"reduction", "sum"}},
       {real({3, 4}), unit({3, 4}), opt(pos({4})), opt(pos({4}))}},
      {"dropout", {{"p", 0.3}}, {real({4, 5})}},
  };
}

}  // namespace

const std::vector<Case>& op_cases() {
  static const std::vector<Case> cases = build_cases();
  return cases;
}

Tensor make_input(const In& in, Generator& gen) {
  switch (in.kind) {
    case Kind::Real: return randn(in.shape, kFloat64, &gen);
    case Kind::Positive: return rand(in.shape, kFloat64, &gen) * 1.5 + 0.5;
    case Kind::Unit: return rand(in.shape, kFloat64, &gen);
    case Kind::Index: return randint(0, in.hi, in.shape, kInt64, &gen);
    case Kind::Bool: return rand(in.shape, kFloat64, &gen) < 0.5;
  }
  return {};
}

std::string case_label(const Case& c) {
  std::string s = c.op + " " + c.params.dump() + " inputs";
  for (const In& in : c.inputs) s += " " + shape_str(in.shape);
  return s;
}

}  // namespace attn::testing
