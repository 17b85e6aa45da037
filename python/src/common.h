// Shared by the binding files of the Python module: converting Python objects
// to attn tensors without copies, and the option parsers.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "attn/attn.h"

namespace py = pybind11;

namespace attn::python {

// A Python object as an attn tensor, sharing its memory: an attn.Tensor as it
// is; an object with __dlpack__ (a torch tensor, a NumPy array) or a DLPack
// capsule; an object with the buffer protocol (a NumPy array, a memoryview).
// The source stays alive as long as any attn tensor views it. Raises TypeError
// for what cannot be viewed (an unsupported dtype, a device other than the CPU)
// and ValueError for a layout attn cannot express (negative strides, strides
// that are not a multiple of the item size). `what` names the argument.
Tensor as_tensor(py::handle obj, const char* what);
// As as_tensor; None gives an undefined tensor.
Tensor as_optional_tensor(py::handle obj, const char* what);

// attn::DType from "float32", "float64", "int64", "bool", "bfloat16" (and the
// same names with a "torch." or "numpy." prefix, or a NumPy dtype object).
DType parse_dtype(py::handle obj);

// attn::Error carries attn's message; raised as attn.Error (a ValueError).
void register_errors(py::module_& m);

void bind_tensor(py::module_& m);
void bind_functional(py::module_& m);
void bind_nn(py::module_& m);
void bind_models(py::module_& m);

}  // namespace attn::python
