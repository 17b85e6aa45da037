// attn.nn: the modules, constructed with PyTorch's argument names; a module's
// state_dict() and load_state_dict() take and give dicts of tensors (attn,
// NumPy or torch), so a torch module's state_dict() loads as it is.
#include "common.h"

namespace attn::python {
namespace {

using nn::Module;
using OptT = py::object;  // an optional tensor argument (None or a tensor)

Tensor T(py::handle o, const char* what) { return as_tensor(o, what); }
Tensor O(py::handle o, const char* what) { return as_optional_tensor(o, what); }
py::object opt(const Tensor& t) { return t.defined() ? py::cast(t) : py::none(); }

// Runs f without the GIL: attn's threads do the work meanwhile.
template <class Fn>
auto nogil(Fn&& f) {
  py::gil_scoped_release release;
  return f();
}

py::dict state_dict_of(const Module& m) {
  py::dict d;
  for (auto& [k, v] : m.state_dict()) d[py::str(k)] = v.detach();
  return d;
}

nn::StateDict to_state_dict(py::handle obj) {
  nn::StateDict sd;
  for (auto [k, v] : py::reinterpret_borrow<py::dict>(obj)) {
    const std::string key = py::str(k);
    sd[key] = as_tensor(v, key.c_str());
  }
  return sd;
}

// A member attribute of a module by name: a parameter, a buffer or a child,
// as torch.nn.Module.__getattr__ finds them.
py::object module_attr(py::object self, const std::string& name) {
  auto& m = self.cast<Module&>();
  for (auto& [n, t] : m.named_parameters(false))
    if (n == name) return py::cast(t);
  for (auto& [n, t] : m.named_buffers(false))
    if (n == name) return py::cast(t);
  for (auto& [n, c] : m.named_children())
    if (n == name) return py::cast(c, py::return_value_policy::reference_internal, self);
  throw py::attribute_error(detail::str("'", m.type_name(), "' object has no attribute '", name, "'"));
}

nn::TransformerEncoderLayerOptions layer_options(int64_t d_model, int64_t nhead, int64_t dim_feedforward,
                                                 double dropout, const std::string& activation,
                                                 double layer_norm_eps, bool batch_first, bool norm_first,
                                                 bool bias) {
  return nn::TransformerEncoderLayerOptions(d_model, nhead)
      .dim_feedforward(dim_feedforward)
      .dropout(dropout)
      .activation(activation)
      .layer_norm_eps(layer_norm_eps)
      .batch_first(batch_first)
      .norm_first(norm_first)
      .bias(bias);
}

#define LAYER_ARGS                                                                                        \
  py::arg("d_model"), py::arg("nhead"), py::arg("dim_feedforward") = 2048, py::arg("dropout") = 0.1,      \
      py::arg("activation") = "relu", py::arg("layer_norm_eps") = 1e-5, py::arg("batch_first") = false,   \
      py::arg("norm_first") = false, py::arg("bias") = true

// TransformerDecoderLayer.forward and TransformerDecoder.forward.
template <class M>
Tensor decoder_forward(const M& mm, py::object tgt, py::object memory, OptT tgt_mask, OptT memory_mask,
                       OptT tgt_kpm, OptT memory_kpm, bool tgt_is_causal, bool memory_is_causal) {
  Tensor t = T(tgt, "tgt"), mem = T(memory, "memory"), a = O(tgt_mask, "tgt_mask"), b = O(memory_mask, "memory_mask"),
         c = O(tgt_kpm, "tgt_key_padding_mask"), d = O(memory_kpm, "memory_key_padding_mask");
  return nogil([&] { return mm.forward(t, mem, a, b, c, d, tgt_is_causal, memory_is_causal); });
}

#define DECODER_ARGS                                                                                          \
  py::arg("tgt"), py::arg("memory"), py::arg("tgt_mask") = py::none(), py::arg("memory_mask") = py::none(),  \
      py::arg("tgt_key_padding_mask") = py::none(), py::arg("memory_key_padding_mask") = py::none(),         \
      py::arg("tgt_is_causal") = false, py::arg("memory_is_causal") = false

// As torch: an encoder (decoder) built from a layer is num_layers clones of
// it, weights included; norm is a LayerNorm or None.
template <class Stack, class Layer, class Options>
std::unique_ptr<Stack> stack_of(const Layer& layer, int64_t num_layers, const nn::LayerNorm* norm) {
  Options o(layer.options, num_layers);
  if (norm) o.norm(norm->options);
  auto stack = std::make_unique<Stack>(o);
  for (int64_t i = 0; i < num_layers; ++i) stack->layer(i).load_state_dict(layer.state_dict());
  if (norm) stack->norm->load_state_dict(norm->state_dict());
  return stack;
}

nn::RNNOptions rnn_options(int64_t input_size, int64_t hidden_size, int64_t num_layers, bool bias,
                           bool batch_first, double dropout, bool bidirectional) {
  return nn::RNNOptions(input_size, hidden_size)
      .num_layers(num_layers)
      .bias(bias)
      .batch_first(batch_first)
      .dropout(dropout)
      .bidirectional(bidirectional);
}

#define RNN_ARGS                                                                                            \
  py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers") = 1, py::arg("bias") = true,         \
      py::arg("batch_first") = false, py::arg("dropout") = 0.0, py::arg("bidirectional") = false

nn::GATConvOptions gat_options(int64_t in_channels, int64_t out_channels, int64_t heads, bool concat,
                               double negative_slope, double dropout, bool add_self_loops, bool bias,
                               bool share_weights) {
  return nn::GATConvOptions(in_channels, out_channels)
      .heads(heads)
      .concat(concat)
      .negative_slope(negative_slope)
      .dropout(dropout)
      .add_self_loops(add_self_loops)
      .bias(bias)
      .share_weights(share_weights);
}

template <class M>
py::object gat_forward(const M& m, py::object x, py::object edge_index, bool return_attention_weights) {
  Tensor tx = T(x, "x"), te = T(edge_index, "edge_index");
  if (!return_attention_weights) return py::cast(nogil([&] { return m.forward(tx, te); }));
  auto [out, att] = nogil([&] { return m.forward_with_attention(tx, te); });
  return py::make_tuple(out, py::make_tuple(std::get<0>(att), std::get<1>(att)));
}

}  // namespace

void bind_nn(py::module_& top) {
  py::module_ m = top.def_submodule("_nn", "attn's modules");

  py::class_<Module>(m, "Module")
      .def("train", [](py::object self, bool mode) { self.cast<Module&>().train(mode); return self; },
           py::arg("mode") = true)
      .def("eval", [](py::object self) { self.cast<Module&>().eval(); return self; })
      .def_property_readonly("training", &Module::is_training)
      .def("parameters", [](const Module& mm, bool recurse) { return mm.parameters(recurse); },
           py::arg("recurse") = true)
      .def("named_parameters", [](const Module& mm, bool recurse) { return mm.named_parameters(recurse); },
           py::arg("recurse") = true)
      .def("buffers", [](const Module& mm, bool recurse) { return mm.buffers(recurse); }, py::arg("recurse") = true)
      .def("named_buffers", [](const Module& mm, bool recurse) { return mm.named_buffers(recurse); },
           py::arg("recurse") = true)
      .def("state_dict", &state_dict_of, "A dict of the parameters and persistent buffers (views, no copies)")
      .def("load_state_dict",
           [](Module& mm, py::object state, bool strict) { mm.load_state_dict(to_state_dict(state), strict); },
           py::arg("state_dict"), py::arg("strict") = true,
           "Copies a dict of tensors (attn, NumPy or torch; a torch module's state_dict() as it is) into the module")
      .def("zero_grad", &Module::zero_grad, py::arg("set_to_none") = true)
      .def("to", [](py::object self, py::object dtype) { self.cast<Module&>().to(parse_dtype(dtype)); return self; },
           py::arg("dtype"))
      .def("double", [](py::object self) { self.cast<Module&>().to(kFloat64); return self; })
      .def("float", [](py::object self) { self.cast<Module&>().to(kFloat32); return self; })
      .def("save", [](const Module& mm, const std::string& path) { mm.save(path); }, py::arg("path"))
      .def("load", &Module::load, py::arg("path"), py::arg("strict") = true)
      .def("__getattr__", &module_attr)
      .def("__call__", [](py::object self, py::args a, py::kwargs k) { return self.attr("forward")(*a, **k); })
      .def("__repr__", &Module::repr);

  py::class_<nn::Linear, Module>(m, "Linear")
      .def(py::init([](int64_t in, int64_t out, bool bias) {
             return std::make_unique<nn::Linear>(nn::LinearOptions(in, out).bias(bias));
           }), py::arg("in_features"), py::arg("out_features"), py::arg("bias") = true)
      .def("forward", [](const nn::Linear& mm, py::object x) { return mm.forward(T(x, "input")); }, py::arg("input"));

  py::class_<nn::LayerNorm, Module>(m, "LayerNorm")
      .def(py::init([](py::object shape, double eps, bool affine, bool bias) {
             Shape s = py::isinstance<py::int_>(shape) ? Shape{shape.cast<int64_t>()} : shape.cast<Shape>();
             return std::make_unique<nn::LayerNorm>(
                 nn::LayerNormOptions(s).eps(eps).elementwise_affine(affine).bias(bias));
           }), py::arg("normalized_shape"), py::arg("eps") = 1e-5, py::arg("elementwise_affine") = true,
           py::arg("bias") = true)
      .def("forward", [](const nn::LayerNorm& mm, py::object x) { return mm.forward(T(x, "input")); },
           py::arg("input"));

  py::class_<nn::Embedding, Module>(m, "Embedding")
      .def(py::init([](int64_t n, int64_t dim, std::optional<int64_t> padding_idx) {
             return std::make_unique<nn::Embedding>(nn::EmbeddingOptions(n, dim).padding_idx(padding_idx));
           }), py::arg("num_embeddings"), py::arg("embedding_dim"), py::arg("padding_idx") = py::none())
      .def("forward", [](const nn::Embedding& mm, py::object x) { return mm.forward(T(x, "input")); },
           py::arg("input"));

  py::class_<nn::MultiheadAttention, Module>(m, "MultiheadAttention")
      .def(py::init([](int64_t embed_dim, int64_t num_heads, double dropout, bool bias, bool add_bias_kv,
                       bool add_zero_attn, std::optional<int64_t> kdim, std::optional<int64_t> vdim,
                       bool batch_first) {
             return std::make_unique<nn::MultiheadAttention>(nn::MultiheadAttentionOptions(embed_dim, num_heads)
                                                                 .dropout(dropout)
                                                                 .bias(bias)
                                                                 .add_bias_kv(add_bias_kv)
                                                                 .add_zero_attn(add_zero_attn)
                                                                 .kdim(kdim)
                                                                 .vdim(vdim)
                                                                 .batch_first(batch_first));
           }),
           py::arg("embed_dim"), py::arg("num_heads"), py::arg("dropout") = 0.0, py::arg("bias") = true,
           py::arg("add_bias_kv") = false, py::arg("add_zero_attn") = false, py::arg("kdim") = py::none(),
           py::arg("vdim") = py::none(), py::arg("batch_first") = false)
      .def("forward",
           [](const nn::MultiheadAttention& mm, py::object q, py::object k, py::object v, OptT key_padding_mask,
              bool need_weights, OptT attn_mask, bool average_attn_weights, bool is_causal) {
             Tensor tq = T(q, "query"), tk = T(k, "key"), tv = T(v, "value");
             Tensor kpm = O(key_padding_mask, "key_padding_mask"), am = O(attn_mask, "attn_mask");
             auto [out, w] = nogil([&] {
               return mm.forward(tq, tk, tv, kpm, need_weights, am, average_attn_weights, is_causal);
             });
             return py::make_tuple(out, opt(w));
           },
           py::arg("query"), py::arg("key"), py::arg("value"), py::arg("key_padding_mask") = py::none(),
           py::arg("need_weights") = true, py::arg("attn_mask") = py::none(),
           py::arg("average_attn_weights") = true, py::arg("is_causal") = false);

  py::class_<nn::TransformerEncoderLayer, Module>(m, "TransformerEncoderLayer")
      .def(py::init([](int64_t d, int64_t h, int64_t ff, double dr, const std::string& act, double eps, bool bf,
                       bool nf, bool bias) {
             return std::make_unique<nn::TransformerEncoderLayer>(layer_options(d, h, ff, dr, act, eps, bf, nf, bias));
           }), LAYER_ARGS)
      .def("forward",
           [](const nn::TransformerEncoderLayer& mm, py::object src, OptT src_mask, OptT kpm, bool is_causal) {
             Tensor s = T(src, "src"), a = O(src_mask, "src_mask"), p = O(kpm, "src_key_padding_mask");
             return nogil([&] { return mm.forward(s, a, p, is_causal); });
           },
           py::arg("src"), py::arg("src_mask") = py::none(), py::arg("src_key_padding_mask") = py::none(),
           py::arg("is_causal") = false);

  py::class_<nn::TransformerDecoderLayer, Module>(m, "TransformerDecoderLayer")
      .def(py::init([](int64_t d, int64_t h, int64_t ff, double dr, const std::string& act, double eps, bool bf,
                       bool nf, bool bias) {
             return std::make_unique<nn::TransformerDecoderLayer>(layer_options(d, h, ff, dr, act, eps, bf, nf, bias));
           }), LAYER_ARGS)
      .def("forward", &decoder_forward<nn::TransformerDecoderLayer>, DECODER_ARGS);

  py::class_<nn::TransformerEncoder, Module>(m, "TransformerEncoder")
      .def(py::init(&stack_of<nn::TransformerEncoder, nn::TransformerEncoderLayer, nn::TransformerEncoderOptions>),
           py::arg("encoder_layer"), py::arg("num_layers"), py::arg("norm") = nullptr)
      .def("forward",
           [](const nn::TransformerEncoder& mm, py::object src, OptT mask, OptT kpm, bool is_causal) {
             Tensor s = T(src, "src"), a = O(mask, "mask"), p = O(kpm, "src_key_padding_mask");
             return nogil([&] { return mm.forward(s, a, p, is_causal); });
           },
           py::arg("src"), py::arg("mask") = py::none(), py::arg("src_key_padding_mask") = py::none(),
           py::arg("is_causal") = false);

  py::class_<nn::TransformerDecoder, Module>(m, "TransformerDecoder")
      .def(py::init(&stack_of<nn::TransformerDecoder, nn::TransformerDecoderLayer, nn::TransformerDecoderOptions>),
           py::arg("decoder_layer"), py::arg("num_layers"), py::arg("norm") = nullptr)
      .def("forward", &decoder_forward<nn::TransformerDecoder>, DECODER_ARGS);

  py::class_<nn::Transformer, Module>(m, "Transformer")
      .def(py::init([](int64_t d, int64_t h, int64_t ne, int64_t nd, int64_t ff, double dr, const std::string& act,
                       double eps, bool bf, bool nf, bool bias) {
             return std::make_unique<nn::Transformer>(nn::TransformerOptions(d, h)
                                                          .num_encoder_layers(ne)
                                                          .num_decoder_layers(nd)
                                                          .dim_feedforward(ff)
                                                          .dropout(dr)
                                                          .activation(act)
                                                          .layer_norm_eps(eps)
                                                          .batch_first(bf)
                                                          .norm_first(nf)
                                                          .bias(bias));
           }),
           py::arg("d_model") = 512, py::arg("nhead") = 8, py::arg("num_encoder_layers") = 6,
           py::arg("num_decoder_layers") = 6, py::arg("dim_feedforward") = 2048, py::arg("dropout") = 0.1,
           py::arg("activation") = "relu", py::arg("layer_norm_eps") = 1e-5, py::arg("batch_first") = false,
           py::arg("norm_first") = false, py::arg("bias") = true)
      .def("forward",
           [](const nn::Transformer& mm, py::object src, py::object tgt, OptT src_mask, OptT tgt_mask,
              OptT memory_mask, OptT src_kpm, OptT tgt_kpm, OptT memory_kpm, bool src_is_causal,
              bool tgt_is_causal, bool memory_is_causal) {
             Tensor s = T(src, "src"), t = T(tgt, "tgt"), a = O(src_mask, "src_mask"), b = O(tgt_mask, "tgt_mask"),
                    c = O(memory_mask, "memory_mask"), d = O(src_kpm, "src_key_padding_mask"),
                    e = O(tgt_kpm, "tgt_key_padding_mask"), f = O(memory_kpm, "memory_key_padding_mask");
             return nogil([&] {
               return mm.forward(s, t, a, b, c, d, e, f, src_is_causal, tgt_is_causal, memory_is_causal);
             });
           },
           py::arg("src"), py::arg("tgt"), py::arg("src_mask") = py::none(), py::arg("tgt_mask") = py::none(),
           py::arg("memory_mask") = py::none(), py::arg("src_key_padding_mask") = py::none(),
           py::arg("tgt_key_padding_mask") = py::none(), py::arg("memory_key_padding_mask") = py::none(),
           py::arg("src_is_causal") = false, py::arg("tgt_is_causal") = false, py::arg("memory_is_causal") = false)
      .def_static("generate_square_subsequent_mask",
                  [](int64_t sz, py::object dtype) {
                    return nn::Transformer::generate_square_subsequent_mask(sz, dtype.is_none() ? kFloat32
                                                                                            : parse_dtype(dtype));
                  },
                  py::arg("sz"), py::arg("dtype") = py::none());

  py::class_<nn::RNN, Module>(m, "RNN")
      .def(py::init([](int64_t in, int64_t hid, int64_t layers, const std::string& nonlinearity, bool bias, bool bf,
                       double dr, bool bi) {
             auto o = rnn_options(in, hid, layers, bias, bf, dr, bi);
             if (nonlinearity == "relu") o.nonlinearity(nn::RNNNonlinearity::ReLU);
             else if (nonlinearity != "tanh")
               throw py::value_error("RNN: nonlinearity must be 'tanh' or 'relu', got '" + nonlinearity + "'");
             return std::make_unique<nn::RNN>(o);
           }),
           py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers") = 1, py::arg("nonlinearity") = "tanh",
           py::arg("bias") = true, py::arg("batch_first") = false, py::arg("dropout") = 0.0,
           py::arg("bidirectional") = false)
      .def("forward", [](const nn::RNN& mm, py::object input, OptT hx) {
             Tensor x = T(input, "input"), h = O(hx, "hx");
             auto [out, hn] = nogil([&] { return mm.forward(x, h); });
             return py::make_tuple(out, hn);
           }, py::arg("input"), py::arg("hx") = py::none());

  py::class_<nn::LSTM, Module>(m, "LSTM")
      .def(py::init([](int64_t in, int64_t hid, int64_t layers, bool bias, bool bf, double dr, bool bi) {
             return std::make_unique<nn::LSTM>(rnn_options(in, hid, layers, bias, bf, dr, bi));
           }), RNN_ARGS)
      .def("forward", [](const nn::LSTM& mm, py::object input, py::object hx) {
             Tensor x = T(input, "input");
             nn::LSTM::State s;
             if (!hx.is_none()) {
               auto hc = hx.cast<py::tuple>();
               if (hc.size() != 2) throw py::value_error("LSTM.forward: hx must be a tuple (h_0, c_0)");
               s = {T(hc[0], "h_0"), T(hc[1], "c_0")};
             }
             auto [out, st] = nogil([&] { return mm.forward(x, s); });
             return py::make_tuple(out, py::make_tuple(std::get<0>(st), std::get<1>(st)));
           }, py::arg("input"), py::arg("hx") = py::none());

  py::class_<nn::GRU, Module>(m, "GRU")
      .def(py::init([](int64_t in, int64_t hid, int64_t layers, bool bias, bool bf, double dr, bool bi) {
             return std::make_unique<nn::GRU>(rnn_options(in, hid, layers, bias, bf, dr, bi));
           }), RNN_ARGS)
      .def("forward", [](const nn::GRU& mm, py::object input, OptT hx) {
             Tensor x = T(input, "input"), h = O(hx, "hx");
             auto [out, hn] = nogil([&] { return mm.forward(x, h); });
             return py::make_tuple(out, hn);
           }, py::arg("input"), py::arg("hx") = py::none());

#define GAT_ARGS                                                                                                   \
  py::arg("in_channels"), py::arg("out_channels"), py::arg("heads") = 1, py::arg("concat") = true,               \
      py::arg("negative_slope") = 0.2, py::arg("dropout") = 0.0, py::arg("add_self_loops") = true,               \
      py::arg("bias") = true
  py::class_<nn::GATConv, Module>(m, "GATConv")
      .def(py::init([](int64_t in, int64_t out, int64_t heads, bool concat, double ns, double dr, bool loops,
                       bool bias) {
             return std::make_unique<nn::GATConv>(gat_options(in, out, heads, concat, ns, dr, loops, bias, false));
           }), GAT_ARGS)
      .def("forward", &gat_forward<nn::GATConv>, py::arg("x"), py::arg("edge_index"),
           py::arg("return_attention_weights") = false);
  py::class_<nn::GATv2Conv, Module>(m, "GATv2Conv")
      .def(py::init([](int64_t in, int64_t out, int64_t heads, bool concat, double ns, double dr, bool loops,
                       bool bias, bool share) {
             return std::make_unique<nn::GATv2Conv>(gat_options(in, out, heads, concat, ns, dr, loops, bias, share));
           }), GAT_ARGS, py::arg("share_weights") = false)
      .def("forward", &gat_forward<nn::GATv2Conv>, py::arg("x"), py::arg("edge_index"),
           py::arg("return_attention_weights") = false);

  py::class_<nn::RelativeMultiheadAttention, Module>(m, "RelativeMultiheadAttention")
      .def(py::init([](int64_t e, int64_t h, int64_t k, bool rv, double dr, bool bias, bool bf) {
             return std::make_unique<nn::RelativeMultiheadAttention>(nn::RelativeMultiheadAttentionOptions(e, h)
                                                                         .max_relative_position(k)
                                                                         .relative_values(rv)
                                                                         .dropout(dr)
                                                                         .bias(bias)
                                                                         .batch_first(bf));
           }),
           py::arg("embed_dim"), py::arg("num_heads"), py::arg("max_relative_position") = 16,
           py::arg("relative_values") = true, py::arg("dropout") = 0.0, py::arg("bias") = true,
           py::arg("batch_first") = false)
      .def("forward",
           [](const nn::RelativeMultiheadAttention& mm, py::object q, py::object k, py::object v, OptT kpm,
              bool need_weights, OptT attn_mask) {
             Tensor tq = T(q, "query"), tk = T(k, "key"), tv = T(v, "value"), p = O(kpm, "key_padding_mask"),
                    a = O(attn_mask, "attn_mask");
             auto [out, w] = nogil([&] { return mm.forward(tq, tk, tv, p, need_weights, a); });
             return py::make_tuple(out, opt(w));
           },
           py::arg("query"), py::arg("key"), py::arg("value"), py::arg("key_padding_mask") = py::none(),
           py::arg("need_weights") = true, py::arg("attn_mask") = py::none());

  py::class_<nn::AdditiveAttention, Module>(m, "AdditiveAttention")
      .def(py::init([](int64_t q, int64_t k, int64_t h, bool bias) {
             return std::make_unique<nn::AdditiveAttention>(nn::AdditiveAttentionOptions(q, k, h).bias(bias));
           }), py::arg("query_dim"), py::arg("key_dim"), py::arg("hidden_dim"), py::arg("bias") = true)
      .def("forward", [](const nn::AdditiveAttention& mm, py::object q, py::object k, OptT v, OptT kpm) {
             auto [out, w] = mm.forward(T(q, "query"), T(k, "keys"), O(v, "values"), O(kpm, "key_padding_mask"));
             return py::make_tuple(out, w);
           }, py::arg("query"), py::arg("keys"), py::arg("values") = py::none(),
           py::arg("key_padding_mask") = py::none());

  py::class_<nn::LuongAttention, Module>(m, "LuongAttention")
      .def(py::init([](int64_t q, int64_t k, const std::string& score, int64_t hidden, bool scale) {
             nn::LuongAttentionOptions o(q, k);
             if (score == "dot") o.score(nn::LuongScore::Dot);
             else if (score == "general") o.score(nn::LuongScore::General);
             else if (score == "concat") o.score(nn::LuongScore::Concat);
             else throw py::value_error("LuongAttention: score must be 'dot', 'general' or 'concat', got '" + score + "'");
             return std::make_unique<nn::LuongAttention>(o.hidden_dim(hidden).scale(scale));
           }), py::arg("query_dim"), py::arg("key_dim"), py::arg("score") = "general", py::arg("hidden_dim") = 0,
           py::arg("scale") = false)
      .def("forward", [](const nn::LuongAttention& mm, py::object q, py::object k, OptT v, OptT kpm) {
             auto [out, w] = mm.forward(T(q, "query"), T(k, "keys"), O(v, "values"), O(kpm, "key_padding_mask"));
             return py::make_tuple(out, w);
           }, py::arg("query"), py::arg("keys"), py::arg("values") = py::none(),
           py::arg("key_padding_mask") = py::none());

  py::class_<nn::AttentionPooling, Module>(m, "AttentionPooling")
      .def(py::init<int64_t, bool>(), py::arg("input_dim"), py::arg("batch_first") = true)
      .def("forward", [](const nn::AttentionPooling& mm, py::object x, OptT kpm) {
             auto [out, w] = mm.forward(T(x, "x"), O(kpm, "key_padding_mask"));
             return py::make_tuple(out, w);
           }, py::arg("x"), py::arg("key_padding_mask") = py::none());

  py::class_<nn::CosineAttention, Module>(m, "CosineAttention")
      .def(py::init<double>(), py::arg("initial_logit_scale") = 2.302585092994046)
      .def("forward", [](const nn::CosineAttention& mm, py::object q, py::object k, py::object v, OptT mask) {
             return mm.forward(T(q, "q"), T(k, "k"), T(v, "v"), O(mask, "attn_mask"));
           }, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("attn_mask") = py::none());

  py::class_<nn::RotaryEmbedding, Module>(m, "RotaryEmbedding")
      .def(py::init([](int64_t dim, double base, bool interleaved) {
             return std::make_unique<nn::RotaryEmbedding>(nn::RotaryEmbeddingOptions(dim).base(base).layout(
                 interleaved ? F::RopeLayout::Interleaved : F::RopeLayout::HalfSplit));
           }), py::arg("dim"), py::arg("base") = 10000.0, py::arg("interleaved") = false)
      .def("forward", [](const nn::RotaryEmbedding& mm, py::object x, int64_t offset) {
             return mm.forward(T(x, "x"), offset);
           }, py::arg("x"), py::arg("offset") = 0);

  py::class_<nn::T5RelativePositionBias, Module>(m, "T5RelativePositionBias")
      .def(py::init([](int64_t heads, int64_t buckets, int64_t max_distance, bool bidirectional) {
             return std::make_unique<nn::T5RelativePositionBias>(nn::T5RelativePositionBiasOptions(heads)
                                                                     .num_buckets(buckets)
                                                                     .max_distance(max_distance)
                                                                     .bidirectional(bidirectional));
           }), py::arg("num_heads"), py::arg("num_buckets") = 32, py::arg("max_distance") = 128,
           py::arg("bidirectional") = true)
      .def("forward", &nn::T5RelativePositionBias::forward, py::arg("query_length"), py::arg("key_length"),
           py::arg("query_offset") = 0);

  py::class_<nn::LocalitySelfAttention, Module>(m, "LocalitySelfAttention")
      .def(py::init([](int64_t dim, int64_t heads, int64_t dim_head, double dropout) {
             return std::make_unique<nn::LocalitySelfAttention>(
                 nn::LocalitySelfAttentionOptions(dim).heads(heads).dim_head(dim_head).dropout(dropout));
           }), py::arg("dim"), py::arg("heads") = 8, py::arg("dim_head") = 64, py::arg("dropout") = 0.0)
      .def("forward", [](const nn::LocalitySelfAttention& mm, py::object x) { return mm.forward(T(x, "x")); },
           py::arg("x"));

  py::class_<nn::ShiftedPatchTokenization, Module>(m, "ShiftedPatchTokenization")
      .def(py::init([](int64_t in, int64_t patch, int64_t dim) {
             return std::make_unique<nn::ShiftedPatchTokenization>(nn::ShiftedPatchTokenizationOptions(in, patch, dim));
           }), py::arg("in_channels"), py::arg("patch_size"), py::arg("dim"))
      .def("forward", [](const nn::ShiftedPatchTokenization& mm, py::object x) { return mm.forward(T(x, "x")); },
           py::arg("x"));
}

}  // namespace attn::python
