// attn.functional: the attention ops with PyTorch's argument names, and the
// functional ops a model around them needs.
#include <algorithm>
#include <chrono>

#include "common.h"

namespace attn::python {
namespace {

F::SdpaOptions sdpa_options(py::handle attn_mask, double dropout_p, bool is_causal, std::optional<double> scale,
                            bool enable_gqa, py::handle window, int64_t global_tokens, int64_t stride,
                            py::handle alibi_slopes, double softcap, py::handle key_lengths,
                            const std::string& causal_align, Generator* generator) {
  F::SdpaOptions o;
  o.attn_mask(as_optional_tensor(attn_mask, "attn_mask"))
      .dropout_p(dropout_p)
      .is_causal(is_causal)
      .scale(scale)
      .enable_gqa(enable_gqa)
      .global_tokens(global_tokens)
      .stride(stride)
      .alibi_slopes(as_optional_tensor(alibi_slopes, "alibi_slopes"))
      .softcap(softcap)
      .key_lengths(as_optional_tensor(key_lengths, "key_lengths"))
      .generator(generator);
  if (!window.is_none()) {
    if (py::isinstance<py::int_>(window)) {
      const auto w = window.cast<int64_t>();
      o.window(F::Window(w, w));
    } else {
      auto w = window.cast<std::pair<std::optional<int64_t>, std::optional<int64_t>>>();
      o.window(F::Window(w.first.value_or(-1), w.second.value_or(-1)));
    }
  }
  if (causal_align == "top_left") o.causal_align(F::CausalAlign::TopLeft);
  else if (causal_align == "bottom_right") o.causal_align(F::CausalAlign::BottomRight);
  else
    throw py::value_error("attn.functional.scaled_dot_product_attention: causal_align must be 'top_left' or "
                          "'bottom_right', got '" + causal_align + "'");
  return o;
}

#define SDPA_ARGS                                                                                         \
  py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask") = py::none(),                  \
      py::arg("dropout_p") = 0.0, py::arg("is_causal") = false, py::arg("scale") = py::none(), py::kw_only(), \
      py::arg("enable_gqa") = false, py::arg("window") = py::none(), py::arg("global_tokens") = 0,         \
      py::arg("stride") = 0, py::arg("alibi_slopes") = py::none(), py::arg("softcap") = 0.0,               \
      py::arg("key_lengths") = py::none(), py::arg("causal_align") = "top_left",                          \
      py::arg("generator") = nullptr

}  // namespace

void bind_functional(py::module_& top) {
  py::module_ m = top.def_submodule("_functional", "attn's functional ops");

  m.def("scaled_dot_product_attention",
        [](py::object q, py::object k, py::object v, py::object attn_mask, double dropout_p, bool is_causal,
           std::optional<double> scale, bool enable_gqa, py::object window, int64_t global_tokens, int64_t stride,
           py::object alibi_slopes, double softcap, py::object key_lengths, const std::string& causal_align,
           Generator* generator, bool return_lse) -> py::object {
          Tensor tq = as_tensor(q, "query"), tk = as_tensor(k, "key"), tv = as_tensor(v, "value");
          F::SdpaOptions o = sdpa_options(attn_mask, dropout_p, is_causal, scale, enable_gqa, window, global_tokens,
                                          stride, alibi_slopes, softcap, key_lengths, causal_align, generator);
          if (return_lse) {
            std::tuple<Tensor, Tensor> r;
            {
              py::gil_scoped_release nogil;
              r = F::scaled_dot_product_attention_with_lse(tq, tk, tv, o);
            }
            return py::make_tuple(std::get<0>(r), std::get<1>(r));
          }
          Tensor r;
          {
            py::gil_scoped_release nogil;
            r = F::scaled_dot_product_attention(tq, tk, tv, o);
          }
          return py::cast(r);
        },
        SDPA_ARGS, py::arg("return_lse") = false);

  m.def("scaled_dot_product_attention_weights",
        [](py::object q, py::object k, py::object lse, py::object attn_mask, double dropout_p, bool is_causal,
           std::optional<double> scale, bool enable_gqa, py::object window, int64_t global_tokens, int64_t stride,
           py::object alibi_slopes, double softcap, py::object key_lengths, const std::string& causal_align,
           Generator* generator, bool average_heads) {
          Tensor tq = as_tensor(q, "query"), tk = as_tensor(k, "key"), tl = as_tensor(lse, "lse");
          F::SdpaOptions o = sdpa_options(attn_mask, dropout_p, is_causal, scale, enable_gqa, window, global_tokens,
                                          stride, alibi_slopes, softcap, key_lengths, causal_align, generator);
          py::gil_scoped_release nogil;
          return F::scaled_dot_product_attention_weights(tq, tk, tl, o, average_heads);
        },
        py::arg("query"), py::arg("key"), py::arg("lse"), py::arg("attn_mask") = py::none(),
        py::arg("dropout_p") = 0.0, py::arg("is_causal") = false, py::arg("scale") = py::none(), py::kw_only(),
        py::arg("enable_gqa") = false, py::arg("window") = py::none(), py::arg("global_tokens") = 0,
        py::arg("stride") = 0, py::arg("alibi_slopes") = py::none(), py::arg("softcap") = 0.0,
        py::arg("key_lengths") = py::none(), py::arg("causal_align") = "top_left", py::arg("generator") = nullptr,
        py::arg("average_heads") = false);

  m.def("scaled_dot_product_attention_reference",
        [](py::object q, py::object k, py::object v, py::object attn_mask, double dropout_p, bool is_causal,
           std::optional<double> scale, bool enable_gqa, py::object window, int64_t global_tokens, int64_t stride,
           py::object alibi_slopes, double softcap, py::object key_lengths, const std::string& causal_align,
           Generator* generator) {
          Tensor tq = as_tensor(q, "query"), tk = as_tensor(k, "key"), tv = as_tensor(v, "value");
          F::SdpaOptions o = sdpa_options(attn_mask, dropout_p, is_causal, scale, enable_gqa, window, global_tokens,
                                          stride, alibi_slopes, softcap, key_lengths, causal_align, generator);
          py::gil_scoped_release nogil;
          return F::scaled_dot_product_attention_reference(tq, tk, tv, o);
        },
        SDPA_ARGS);

  // Seconds per call of the C++ op alone, timed in C++ (the binding-overhead
  // benchmark subtracts it from the time of the same call made from Python).
  m.def("_time_sdpa", [](py::object q, py::object k, py::object v, int64_t calls) {
          Tensor tq = as_tensor(q, "query"), tk = as_tensor(k, "key"), tv = as_tensor(v, "value");
          py::gil_scoped_release nogil;
          for (int64_t i = 0; i < std::min<int64_t>(calls, 100); ++i) F::scaled_dot_product_attention(tq, tk, tv);
          const auto t0 = std::chrono::steady_clock::now();
          for (int64_t i = 0; i < calls; ++i) F::scaled_dot_product_attention(tq, tk, tv);
          const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
          return dt.count() / static_cast<double>(std::max<int64_t>(calls, 1));
        }, py::arg("query"), py::arg("key"), py::arg("value"), py::arg("calls"));

  m.def("linear_attention",
        [](py::object q, py::object k, py::object v, bool causal, double eps, int64_t chunk) {
          Tensor tq = as_tensor(q, "query"), tk = as_tensor(k, "key"), tv = as_tensor(v, "value");
          py::gil_scoped_release nogil;
          return F::linear_attention(tq, tk, tv, F::LinearAttentionOptions().causal(causal).eps(eps).chunk(chunk));
        },
        py::arg("query"), py::arg("key"), py::arg("value"), py::kw_only(), py::arg("causal") = false,
        py::arg("eps") = 1e-6, py::arg("chunk") = 64);

  m.def("rotary_embedding",
        [](py::object x, double base, bool interleaved, int64_t offset, py::object positions) {
          Tensor tx = as_tensor(x, "x");
          F::RotaryOptions o;
          o.base(base).offset(offset).positions(as_optional_tensor(positions, "positions"));
          o.layout(interleaved ? F::RopeLayout::Interleaved : F::RopeLayout::HalfSplit);
          return F::rotary_embedding(tx, o);
        },
        py::arg("x"), py::kw_only(), py::arg("base") = 10000.0, py::arg("interleaved") = false,
        py::arg("offset") = 0, py::arg("positions") = py::none());

  m.def("alibi_slopes", [](int64_t num_heads, py::object dtype) {
          return F::alibi_slopes(num_heads, dtype.is_none() ? kFloat32 : parse_dtype(dtype));
        }, py::arg("num_heads"), py::arg("dtype") = py::none());

  // The functional ops around attention.
  auto t = [](py::handle o, const char* what) { return as_tensor(o, what); };
  m.def("linear", [t](py::object x, py::object w, py::object b) {
          return F::linear(t(x, "input"), t(w, "weight"), as_optional_tensor(b, "bias"));
        }, py::arg("input"), py::arg("weight"), py::arg("bias") = py::none());
  m.def("softmax", [t](py::object x, int64_t dim) { return F::softmax(t(x, "input"), dim); }, py::arg("input"),
        py::arg("dim"));
  m.def("log_softmax", [t](py::object x, int64_t dim) { return F::log_softmax(t(x, "input"), dim); },
        py::arg("input"), py::arg("dim"));
  m.def("relu", [t](py::object x) { return F::relu(t(x, "input")); }, py::arg("input"));
  m.def("gelu", [t](py::object x, const std::string& approximate) { return F::gelu(t(x, "input"), approximate); },
        py::arg("input"), py::arg("approximate") = "none");
  m.def("layer_norm", [t](py::object x, Shape normalized_shape, py::object w, py::object b, double eps) {
          return F::layer_norm(t(x, "input"), normalized_shape, as_optional_tensor(w, "weight"),
                               as_optional_tensor(b, "bias"), eps);
        }, py::arg("input"), py::arg("normalized_shape"), py::arg("weight") = py::none(), py::arg("bias") = py::none(),
        py::arg("eps") = 1e-5);
  m.def("dropout", [t](py::object x, double p, bool training, Generator* gen) {
          return F::dropout(t(x, "input"), p, training, gen);
        }, py::arg("input"), py::arg("p") = 0.5, py::arg("training") = true, py::arg("generator") = nullptr);
  m.def("cross_entropy", [t](py::object x, py::object target, int64_t ignore_index, const std::string& reduction,
                             double label_smoothing) {
          F::CrossEntropyFuncOptions o;
          o.ignore_index(ignore_index).label_smoothing(label_smoothing);
          if (reduction == "mean") o.reduction(kMean);
          else if (reduction == "sum") o.reduction(kSum);
          else if (reduction == "none") o.reduction(kNone);
          else throw py::value_error("cross_entropy: reduction must be 'mean', 'sum' or 'none', got '" + reduction + "'");
          return F::cross_entropy(t(x, "input"), t(target, "target"), o);
        }, py::arg("input"), py::arg("target"), py::arg("ignore_index") = -100, py::arg("reduction") = "mean",
        py::arg("label_smoothing") = 0.0);
  m.def("mse_loss", [t](py::object x, py::object target, const std::string& reduction) {
          Reduction r = reduction == "sum" ? kSum : reduction == "none" ? kNone : kMean;
          if (reduction != "mean" && reduction != "sum" && reduction != "none")
            throw py::value_error("mse_loss: reduction must be 'mean', 'sum' or 'none', got '" + reduction + "'");
          return F::mse_loss(t(x, "input"), t(target, "target"), r);
        }, py::arg("input"), py::arg("target"), py::arg("reduction") = "mean");
}

}  // namespace attn::python
