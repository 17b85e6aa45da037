// The extension module attn._attn; the package attn (python/attn) arranges
// its parts under PyTorch's names.
#include "attn/version.h"
#include "common.h"

PYBIND11_MODULE(_attn, m) {
  m.doc() = "attn: fused attention and the models built on it";
  attn::python::register_errors(m);
  attn::python::bind_tensor(m);
  attn::python::bind_functional(m);
  attn::python::bind_nn(m);
  attn::python::bind_models(m);
  m.attr("__version__") = attn::kVersion;
  m.def("set_num_threads", &attn::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &attn::get_num_threads);
}
