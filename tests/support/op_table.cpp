#include "support/op_table.h"

#include <cmath>
#include <sstream>

namespace attn::testing {

namespace {

Shape shape_of(const json& j) { return j.get<Shape>(); }
Reduction reduction_of(const json& p) {
  const std::string r = p.value("reduction", std::string("mean"));
  return r == "none" ? Reduction::None : r == "sum" ? Reduction::Sum : Reduction::Mean;
}
Tensor opt(const std::vector<Tensor>& in, size_t i) { return i < in.size() ? in[i] : Tensor(); }

std::map<std::string, OpFn> build() {
  std::map<std::string, OpFn> t;
  // elementwise
  t["add"] = [](auto& in, auto&) { return add(in[0], in[1]); };
  t["sub"] = [](auto& in, auto&) { return sub(in[0], in[1]); };
  t["mul"] = [](auto& in, auto&) { return mul(in[0], in[1]); };
  t["div"] = [](auto& in, auto&) { return div(in[0], in[1]); };
  t["maximum"] = [](auto& in, auto&) { return maximum(in[0], in[1]); };
  t["minimum"] = [](auto& in, auto&) { return minimum(in[0], in[1]); };
  t["pow"] = [](auto& in, auto&) { return pow(in[0], in[1]); };
  t["pow_scalar"] = [](auto& in, auto& p) { return pow(in[0], p.at("exponent").template get<double>()); };
  t["add_scalar"] = [](auto& in, auto& p) { return in[0] + p.at("value").template get<double>(); };
  t["rsub_scalar"] = [](auto& in, auto& p) { return p.at("value").template get<double>() - in[0]; };
  t["mul_scalar"] = [](auto& in, auto& p) { return in[0] * p.at("value").template get<double>(); };
  t["rdiv_scalar"] = [](auto& in, auto& p) { return p.at("value").template get<double>() / in[0]; };
  t["neg"] = [](auto& in, auto&) { return neg(in[0]); };
  t["exp"] = [](auto& in, auto&) { return exp(in[0]); };
  t["log"] = [](auto& in, auto&) { return log(in[0]); };
  t["log1p"] = [](auto& in, auto&) { return log1p(in[0]); };
  t["sqrt"] = [](auto& in, auto&) { return sqrt(in[0]); };
  t["rsqrt"] = [](auto& in, auto&) { return rsqrt(in[0]); };
  t["abs"] = [](auto& in, auto&) { return abs(in[0]); };
  t["sin"] = [](auto& in, auto&) { return sin(in[0]); };
  t["cos"] = [](auto& in, auto&) { return cos(in[0]); };
  t["tanh"] = [](auto& in, auto&) { return tanh(in[0]); };
  t["sigmoid"] = [](auto& in, auto&) { return sigmoid(in[0]); };
  t["relu"] = [](auto& in, auto&) { return relu(in[0]); };
  t["clamp"] = [](auto& in, auto& p) {
    std::optional<double> lo, hi;
    if (p.contains("min")) lo = p["min"].template get<double>();
    if (p.contains("max")) hi = p["max"].template get<double>();
    return clamp(in[0], lo, hi);
  };
  t["where"] = [](auto& in, auto&) { return where(in[0], in[1], in[2]); };
  t["masked_fill"] = [](auto& in, auto& p) { return masked_fill(in[0], in[1], p.at("value").template get<double>()); };
  // reductions
  auto dims = [](const json& p) { return p.contains("dim") ? p["dim"].get<Shape>() : Shape{}; };
  t["sum"] = [dims](auto& in, auto& p) { return sum(in[0], dims(p), p.value("keepdim", false)); };
  t["mean"] = [dims](auto& in, auto& p) { return mean(in[0], dims(p), p.value("keepdim", false)); };
  t["var"] = [dims](auto& in, auto& p) {
    return var(in[0], dims(p), p.value("correction", int64_t{1}), p.value("keepdim", false));
  };
  t["std"] = [dims](auto& in, auto& p) {
    return attn::std(in[0], dims(p), p.value("correction", int64_t{1}), p.value("keepdim", false));
  };
  t["amax"] = [dims](auto& in, auto& p) { return amax(in[0], dims(p), p.value("keepdim", false)); };
  t["amin"] = [dims](auto& in, auto& p) { return amin(in[0], dims(p), p.value("keepdim", false)); };
  t["max_dim"] = [](auto& in, auto& p) {
    return std::get<0>(max(in[0], p.at("dim").template get<int64_t>(), p.value("keepdim", false)));
  };
  t["min_dim"] = [](auto& in, auto& p) {
    return std::get<0>(min(in[0], p.at("dim").template get<int64_t>(), p.value("keepdim", false)));
  };
  t["max_all"] = [](auto& in, auto&) { return max(in[0]); };
  // forward only: bool and int64 outputs (forward_only_ops() below)
  t["eq"] = [](auto& in, auto&) { return eq(in[0], in[1]); };
  t["ne"] = [](auto& in, auto&) { return ne(in[0], in[1]); };
  t["lt"] = [](auto& in, auto&) { return lt(in[0], in[1]); };
  t["le"] = [](auto& in, auto&) { return le(in[0], in[1]); };
  t["gt"] = [](auto& in, auto&) { return gt(in[0], in[1]); };
  t["ge"] = [](auto& in, auto&) { return ge(in[0], in[1]); };
  t["logical_not"] = [](auto& in, auto&) { return logical_not(in[0]); };
  t["logical_and"] = [](auto& in, auto&) { return logical_and(in[0], in[1]); };
  t["logical_or"] = [](auto& in, auto&) { return logical_or(in[0], in[1]); };
  t["argmax_dim"] = [](auto& in, auto& p) {
    return argmax(in[0], p.at("dim").template get<int64_t>(), p.value("keepdim", false));
  };
  t["argmin_dim"] = [](auto& in, auto& p) {
    return argmin(in[0], p.at("dim").template get<int64_t>(), p.value("keepdim", false));
  };
  t["argmax_all"] = [](auto& in, auto&) { return argmax(in[0]); };
  t["max_dim_indices"] = [](auto& in, auto& p) {
    return std::get<1>(max(in[0], p.at("dim").template get<int64_t>(), p.value("keepdim", false)));
  };
  t["logsumexp"] = [dims](auto& in, auto& p) { return logsumexp(in[0], dims(p), p.value("keepdim", false)); };
  // linear algebra
  t["matmul"] = [](auto& in, auto&) { return matmul(in[0], in[1]); };
  t["matmul_bt"] = [](auto& in, auto&) { return matmul(in[0], in[1].transpose(-1, -2)); };
  t["mm"] = [](auto& in, auto&) { return mm(in[0], in[1]); };
  t["bmm"] = [](auto& in, auto&) { return bmm(in[0], in[1]); };
  // shapes and indexing
  t["cat"] = [](auto& in, auto& p) { return cat(in, p.value("dim", int64_t{0})); };
  t["stack"] = [](auto& in, auto& p) { return stack(in, p.value("dim", int64_t{0})); };
  t["split"] = [](auto& in, auto& p) {
    auto parts = split(in[0], p.at("size").template get<int64_t>(), p.value("dim", int64_t{0}));
    return parts.at(p.at("index").template get<size_t>());
  };
  t["chunk"] = [](auto& in, auto& p) {
    auto parts = chunk(in[0], p.at("chunks").template get<int64_t>(), p.value("dim", int64_t{0}));
    return parts.at(p.at("index").template get<size_t>());
  };
  t["index_select"] = [](auto& in, auto& p) { return index_select(in[0], p.at("dim").template get<int64_t>(), in[1]); };
  t["gather"] = [](auto& in, auto& p) { return gather(in[0], p.at("dim").template get<int64_t>(), in[1]); };
  t["scatter_add"] = [](auto& in, auto& p) {
    return scatter_add(in[0], p.at("dim").template get<int64_t>(), in[1], in[2]);
  };
  t["pad"] = [](auto& in, auto& p) {
    return pad(in[0], p.at("pad").template get<std::vector<int64_t>>(), p.value("value", 0.0));
  };
  t["tril"] = [](auto& in, auto& p) { return tril(in[0], p.value("diagonal", int64_t{0})); };
  t["triu"] = [](auto& in, auto& p) { return triu(in[0], p.value("diagonal", int64_t{0})); };
  t["transpose"] = [](auto& in, auto& p) {
    return in[0].transpose(p.at("dim0").template get<int64_t>(), p.at("dim1").template get<int64_t>());
  };
  t["permute"] = [](auto& in, auto& p) { return in[0].permute(shape_of(p.at("dims"))); };
  t["reshape"] = [](auto& in, auto& p) { return in[0].reshape(shape_of(p.at("shape"))); };
  t["slice"] = [](auto& in, auto& p) {
    return in[0].slice(p.at("dim").template get<int64_t>(), p.at("start").template get<int64_t>(),
                       p.at("end").template get<int64_t>(), p.value("step", int64_t{1}));
  };
  t["select"] = [](auto& in, auto& p) {
    return in[0].select(p.at("dim").template get<int64_t>(), p.at("index").template get<int64_t>());
  };
  t["narrow"] = [](auto& in, auto& p) {
    return in[0].narrow(p.at("dim").template get<int64_t>(), p.at("start").template get<int64_t>(),
                        p.at("length").template get<int64_t>());
  };
  t["unsqueeze"] = [](auto& in, auto& p) { return in[0].unsqueeze(p.at("dim").template get<int64_t>()); };
  t["squeeze"] = [](auto& in, auto& p) {
    return p.contains("dim") ? in[0].squeeze(p["dim"].template get<int64_t>()) : in[0].squeeze();
  };
  t["expand"] = [](auto& in, auto& p) { return in[0].expand(shape_of(p.at("shape"))); };
  t["flatten"] = [](auto& in, auto& p) {
    return in[0].flatten(p.value("start_dim", int64_t{0}), p.value("end_dim", int64_t{-1}));
  };
  t["contiguous_t"] = [](auto& in, auto&) { return in[0].transpose(0, 1).contiguous(); };
  // neural-network ops
  t["gelu"] = [](auto& in, auto& p) { return F::gelu(in[0], p.value("approximate", std::string("none"))); };
  t["elu"] = [](auto& in, auto& p) { return F::elu(in[0], p.value("alpha", 1.0)); };
  t["leaky_relu"] = [](auto& in, auto& p) { return F::leaky_relu(in[0], p.value("negative_slope", 0.01)); };
  t["softplus"] = [](auto& in, auto& p) { return F::softplus(in[0], p.value("beta", 1.0), p.value("threshold", 20.0)); };
  t["softmax"] = [](auto& in, auto& p) { return F::softmax(in[0], p.at("dim").template get<int64_t>()); };
  t["log_softmax"] = [](auto& in, auto& p) { return F::log_softmax(in[0], p.at("dim").template get<int64_t>()); };
  t["layer_norm"] = [](auto& in, auto& p) {
    return F::layer_norm(in[0], shape_of(p.at("normalized_shape")), opt(in, 1), opt(in, 2), p.value("eps", 1e-5));
  };
  t["linear"] = [](auto& in, auto&) { return F::linear(in[0], in[1], opt(in, 2)); };
  t["embedding"] = [](auto& in, auto& p) {
    std::optional<int64_t> pad;
    if (p.contains("padding_idx")) pad = p["padding_idx"].template get<int64_t>();
    return F::embedding(in[0], in[1], pad);
  };
  auto pair = [](const json& p, const char* key, int64_t def) -> Pair2 {
    if (!p.contains(key)) return def;
    if (p[key].is_array()) return Pair2(p[key][0].get<int64_t>(), p[key][1].get<int64_t>());
    return p[key].get<int64_t>();
  };
  t["conv2d"] = [pair](auto& in, auto& p) {
    return F::conv2d(in[0], in[1],
                     F::Conv2dFuncOptions()
                         .bias(opt(in, 2))
                         .stride(pair(p, "stride", 1))
                         .padding(pair(p, "padding", 0))
                         .dilation(pair(p, "dilation", 1))
                         .groups(p.value("groups", int64_t{1})));
  };
  t["max_pool2d"] = [pair](auto& in, auto& p) {
    F::MaxPool2dFuncOptions o(pair(p, "kernel_size", 2));
    if (p.contains("stride")) o.stride(pair(p, "stride", 1));
    return F::max_pool2d(in[0], o.padding(pair(p, "padding", 0))
                                    .dilation(pair(p, "dilation", 1))
                                    .ceil_mode(p.value("ceil_mode", false)));
  };
  t["avg_pool2d"] = [pair](auto& in, auto& p) {
    F::AvgPool2dFuncOptions o(pair(p, "kernel_size", 2));
    if (p.contains("stride")) o.stride(pair(p, "stride", 1));
    if (p.contains("divisor_override")) o.divisor_override(p["divisor_override"].template get<int64_t>());
    return F::avg_pool2d(in[0], o.padding(pair(p, "padding", 0))
                                    .ceil_mode(p.value("ceil_mode", false))
                                    .count_include_pad(p.value("count_include_pad", true)));
  };
  t["adaptive_avg_pool2d"] = [pair](auto& in, auto& p) { return F::adaptive_avg_pool2d(in[0], pair(p, "output_size", 1)); };
  t["cross_entropy"] = [](auto& in, auto& p) {
    return F::cross_entropy(in[0], in[1],
                            F::CrossEntropyFuncOptions()
                                .weight(opt(in, 2))
                                .ignore_index(p.value("ignore_index", int64_t{-100}))
                                .reduction(reduction_of(p))
                                .label_smoothing(p.value("label_smoothing", 0.0)));
  };
  t["nll_loss"] = [](auto& in, auto& p) {
    return F::nll_loss(in[0], in[1],
                       F::NLLLossFuncOptions()
                           .weight(opt(in, 2))
                           .ignore_index(p.value("ignore_index", int64_t{-100}))
                           .reduction(reduction_of(p)));
  };
  t["mse_loss"] = [](auto& in, auto& p) { return F::mse_loss(in[0], in[1], reduction_of(p)); };
  t["smooth_l1_loss"] = [](auto& in, auto& p) {
    return F::smooth_l1_loss(in[0], in[1], reduction_of(p), p.value("beta", 1.0));
  };
  t["bce_with_logits"] = [](auto& in, auto& p) {
    F::BCEWithLogitsFuncOptions o;
    o.reduction(reduction_of(p));
    if (p.value("has_weight", false)) o.weight(in.at(2));
    if (p.value("has_pos_weight", false)) o.pos_weight(in.at(p.value("has_weight", false) ? 3 : 2));
    return F::binary_cross_entropy_with_logits(in[0], in[1], o);
  };
  t["dropout"] = [](auto& in, auto& p) {
    Generator g(p.value("seed", uint64_t{7}));  // the same mask on every call
    return F::dropout(in[0], p.value("p", 0.5), true, &g);
  };
  return t;
}

}  // namespace

const std::map<std::string, OpFn>& op_table() {
  static const std::map<std::string, OpFn> table = build();
  return table;
}

const std::set<std::string>& forward_only_ops() {
  static const std::set<std::string> ops = {"eq",         "ne",         "lt",         "le",
                                            "gt",         "ge",         "logical_not", "logical_and",
                                            "logical_or", "argmax_dim", "argmin_dim", "argmax_all",
                                            "max_dim_indices"};
  return ops;
}

const OpFn& get_op(const std::string& name) {
  auto it = op_table().find(name);
  if (it == op_table().end()) throw std::runtime_error("op_table: no op named " + name);
  return it->second;
}

Comparison compare(const std::string& label, const Tensor& got_in, const Tensor& ref_in, double rtol, double atol) {
  Comparison c;
  std::ostringstream os;
  if (!got_in.defined() || !ref_in.defined() || got_in.shape() != ref_in.shape()) {
    c.ok = false;
    os << label << ": shape " << (got_in.defined() ? shape_str(got_in.shape()) : "undefined") << " vs reference "
       << (ref_in.defined() ? shape_str(ref_in.shape()) : "undefined");
    c.message = os.str();
    return c;
  }
  NoGradGuard ng;
  Tensor got = got_in.detach().to(kFloat64).contiguous(), ref = ref_in.detach().to(kFloat64).contiguous();
  const double* g = got.data<double>();
  const double* r = ref.data<double>();
  double worst_excess = -1;
  for (int64_t i = 0; i < got.numel(); ++i) {
    bool bad;
    double diff = std::abs(g[i] - r[i]);
    if (std::isnan(g[i]) || std::isnan(r[i])) {
      bad = true;
      diff = std::numeric_limits<double>::infinity();
    } else if (std::isinf(r[i]) || std::isinf(g[i])) {
      bad = g[i] != r[i];
      diff = bad ? std::numeric_limits<double>::infinity() : 0;
    } else {
      bad = diff > atol + rtol * std::abs(r[i]);
      c.max_abs = std::max(c.max_abs, diff);
      if (std::abs(r[i]) > 0) c.max_rel = std::max(c.max_rel, diff / std::abs(r[i]));
    }
    const double excess = diff - (atol + rtol * std::abs(r[i]));
    if (bad) ++c.bad;
    if (excess > worst_excess || c.worst_index < 0) {
      worst_excess = excess;
      c.worst_index = i;
    }
  }
  c.ok = c.bad == 0;
  if (!c.ok) {
    os << label << ": " << c.bad << " of " << got.numel() << " entries exceed atol " << atol << " + rtol " << rtol
       << " * |ref|; worst at flat index " << c.worst_index << ": got " << g[c.worst_index] << ", reference "
       << r[c.worst_index] << " (max abs diff " << c.max_abs << ")";
    c.message = os.str();
  }
  return c;
}

}  // namespace attn::testing
