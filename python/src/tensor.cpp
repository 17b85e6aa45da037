// attn.Tensor: zero-copy views of NumPy arrays (buffer protocol) and of
// torch tensors (DLPack) and back; autograd, IO and generators.
#include <dlpack/dlpack.h>
#include <pybind11/numpy.h>

#include <cstring>
#include <sstream>

#include "common.h"

namespace attn::python {
namespace {

const char* kDLCapsule = "dltensor";
const char* kDLUsedCapsule = "used_dltensor";

// The owner of a NumPy buffer: released with the GIL held (the last attn
// reference may be dropped on any thread), and left alone once the interpreter
// has begun to shut down, when nothing may be touched.
std::shared_ptr<void> hold_buffer(std::unique_ptr<py::buffer_info> info) {
  return std::shared_ptr<void>(info.release(), [](void* p) {
    auto* b = static_cast<py::buffer_info*>(p);
    if (!Py_IsInitialized()) return;  // leaked on purpose: the interpreter is gone
    py::gil_scoped_acquire gil;
    delete b;
  });
}

// Bytes spanned by a strided layout (0 for an empty tensor).
size_t extent_bytes(const Shape& shape, const Shape& strides, size_t itemsize) {
  int64_t last = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return 0;
    last += (shape[d] - 1) * strides[d];
  }
  return static_cast<size_t>(last + 1) * itemsize;
}

Tensor view_memory(void* data, const Shape& shape, const Shape& strides, DType dtype,
                   std::shared_ptr<void> owner) {
  auto storage = std::make_shared<Storage>();
  storage->data = data;
  storage->nbytes = extent_bytes(shape, strides, itemsize(dtype));
  storage->owner = std::move(owner);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

std::string shape_text(const std::vector<py::ssize_t>& v) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << (v.size() == 1 ? ",)" : ")");
  return os.str();
}

Tensor from_buffer(py::handle obj, const char* what) {
  auto info = std::make_unique<py::buffer_info>(py::reinterpret_borrow<py::buffer>(obj).request());
  const std::string fmt = info->format;
  DType dt;
  if (fmt == "f" && info->itemsize == 4) dt = kFloat32;
  else if (fmt == "d" && info->itemsize == 8) dt = kFloat64;
  else if ((fmt == "l" || fmt == "q") && info->itemsize == 8) dt = kInt64;
  else if (fmt == "?" && info->itemsize == 1) dt = kBool;
  else
    throw py::type_error(detail::str("attn: ", what, ": an array of format '", fmt, "' (", info->itemsize,
                                     "-byte items) cannot be viewed; attn holds float32, float64, int64 and bool"));
  Shape shape(info->shape.begin(), info->shape.end());
  Shape strides(info->ndim);
  for (py::ssize_t d = 0; d < info->ndim; ++d) {
    const py::ssize_t s = info->strides[d];
    if (s < 0 || s % info->itemsize != 0)
      throw py::value_error(detail::str("attn: ", what, ": strides ", shape_text(info->strides),
                                        " (bytes) cannot be viewed: attn needs non-negative strides that are ",
                                        "multiples of the item size (", info->itemsize, "); pass a copy "
                                        "(numpy.ascontiguousarray)"));
    strides[d] = s / info->itemsize;
  }
  void* data = info->ptr;
  return view_memory(data, shape, strides, dt, hold_buffer(std::move(info)));
}

DType dl_dtype(const DLDataType& t, const char* what) {
  if (t.lanes == 1) {
    if (t.code == kDLFloat && t.bits == 32) return kFloat32;
    if (t.code == kDLFloat && t.bits == 64) return kFloat64;
    if (t.code == kDLInt && t.bits == 64) return kInt64;
    if (t.code == kDLBfloat && t.bits == 16) return kBFloat16;
    if (t.code == 6 /* kDLBool in DLPack >= 0.8 */ && t.bits == 8) return kBool;
  }
  throw py::type_error(detail::str("attn: ", what, ": DLPack dtype (code ", int(t.code), ", ", int(t.bits),
                                   " bits, ", t.lanes, " lanes) is not supported; attn holds float32, float64, "
                                   "int64, bool and bfloat16"));
}

std::string device_text(int type, int id) {
  switch (type) {
    case kDLCPU: return "cpu";
    case kDLCUDA: return detail::str("cuda:", id);
    case kDLCUDAHost: return "cuda_host";
    default: return detail::str("DLPack device type ", type, ":", id);
  }
}

void check_cpu(int type, int id, const char* what) {
  if (type != kDLCPU)
    throw py::type_error(detail::str("attn: ", what, ": the tensor is on ", device_text(type, id),
                                     "; attn runs on the CPU (move it with .cpu() first)"));
}

Tensor from_capsule(py::handle capsule, const char* what) {
  PyObject* cap = capsule.ptr();
  if (!PyCapsule_IsValid(cap, kDLCapsule))
    throw py::type_error(detail::str("attn: ", what, ": not a DLPack capsule named \"dltensor\" (it may have "
                                     "been consumed already)"));
  auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, kDLCapsule));
  const DLTensor& t = m->dl_tensor;
  check_cpu(t.device.device_type, t.device.device_id, what);
  const DType dt = dl_dtype(t.dtype, what);
  if (t.ndim < 0) throw py::value_error(detail::str("attn: ", what, ": DLPack ndim ", t.ndim, " is negative"));
  Shape shape(t.shape, t.shape + t.ndim);
  Shape strides(t.ndim);
  if (t.strides) {
    for (int d = 0; d < t.ndim; ++d) {
      if (t.strides[d] < 0)
        throw py::value_error(detail::str("attn: ", what, ": negative DLPack strides cannot be viewed; pass a "
                                          "contiguous copy"));
      strides[d] = t.strides[d];
    }
  } else {
    int64_t s = 1;
    for (int d = t.ndim - 1; d >= 0; --d) {
      strides[d] = s;
      s *= shape[d];
    }
  }
  for (int64_t n : shape)
    if (n < 0) throw py::value_error(detail::str("attn: ", what, ": DLPack shape ", shape_str(shape), " is negative"));
  void* data = static_cast<char*>(t.data) + t.byte_offset;
  // From here on attn owns the managed tensor: it calls the deleter when the
  // last view goes, and the capsule no longer does.
  PyCapsule_SetName(cap, kDLUsedCapsule);
  std::shared_ptr<void> owner(m, [](void* p) {
    auto* mt = static_cast<DLManagedTensor*>(p);
    if (mt->deleter) mt->deleter(mt);
  });
  return view_memory(data, shape, strides, dt, std::move(owner));
}

Tensor from_dlpack_object(py::handle obj, const char* what) {
  if (PyCapsule_CheckExact(obj.ptr())) return from_capsule(obj, what);
  if (py::hasattr(obj, "__dlpack_device__")) {
    py::tuple dev = obj.attr("__dlpack_device__")();
    check_cpu(dev[0].cast<int>(), dev[1].cast<int>(), what);
  }
  py::object capsule = obj.attr("__dlpack__")();
  return from_capsule(capsule, what);
}

// torch.Tensor and torch._C._to_dlpack, once torch has been imported (attn
// never imports it itself): a torch tensor is exported in C, without the
// Python-level __dlpack__ and __dlpack_device__ (a few microseconds a call).
struct TorchHooks {
  py::object tensor_type, to_dlpack;
};
const TorchHooks* torch_hooks() {
  static TorchHooks* hooks = nullptr;  // leaked: lives as long as the interpreter
  if (hooks) return hooks;
  py::dict modules = py::module_::import("sys").attr("modules");
  if (!modules.contains("torch")) return nullptr;
  py::module_ torch = modules["torch"];
  hooks = new TorchHooks{torch.attr("Tensor"), torch.attr("_C").attr("_to_dlpack")};
  return hooks;
}

bool is_torch_tensor(py::handle obj) {
  const TorchHooks* h = torch_hooks();
  return h && PyObject_IsInstance(obj.ptr(), h->tensor_type.ptr()) == 1;
}

Tensor from_torch(py::handle obj, const char* what) {
  py::object src = py::reinterpret_borrow<py::object>(obj);
  py::object capsule;
  try {
    capsule = torch_hooks()->to_dlpack(src);
  } catch (py::error_already_set& e) {
    // torch 1.13 cannot export bool over DLPack; its NumPy view shares memory.
    if (py::str(src.attr("dtype")).cast<std::string>() != "torch.bool")
      throw py::type_error(detail::str("attn: ", what, ": ", e.what()));
    py::tuple dev = src.attr("__dlpack_device__")();
    check_cpu(dev[0].cast<int>(), dev[1].cast<int>(), what);
    if (src.attr("requires_grad").cast<bool>()) src = src.attr("detach")();
    return from_buffer(src.attr("numpy")(), what);
  }
  return from_capsule(capsule, what);
}

// DLPack export: the attn tensor kept alive by the managed tensor.
struct Exported {
  Tensor tensor;
  Shape shape, strides;
  DLManagedTensor managed{};
};

DLDataType to_dl(DType dt) {
  switch (dt) {
    case DType::Float32: return {kDLFloat, 32, 1};
    case DType::Float64: return {kDLFloat, 64, 1};
    case DType::Int64: return {kDLInt, 64, 1};
    case DType::BFloat16: return {kDLBfloat, 16, 1};
    case DType::Bool: return {6 /* kDLBool */, 8, 1};
  }
  return {kDLFloat, 32, 1};
}

py::capsule to_dlpack(const Tensor& t) {
  auto* e = new Exported{t.detach(), t.shape(), t.strides(), {}};
  DLTensor& d = e->managed.dl_tensor;
  d.data = e->tensor.numel() ? e->tensor.raw_data() : nullptr;
  d.device = {kDLCPU, 0};
  d.ndim = static_cast<int>(e->shape.size());
  d.dtype = to_dl(t.dtype());
  d.shape = e->shape.data();
  d.strides = e->strides.data();
  d.byte_offset = 0;
  e->managed.manager_ctx = e;
  e->managed.deleter = [](DLManagedTensor* m) { delete static_cast<Exported*>(m->manager_ctx); };
  return py::capsule(&e->managed, kDLCapsule, [](PyObject* cap) {
    // Not consumed: the capsule still owns the managed tensor.
    if (PyCapsule_IsValid(cap, kDLCapsule)) {
      auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, kDLCapsule));
      m->deleter(m);
    }
  });
}

py::dtype numpy_dtype(DType dt) {
  switch (dt) {
    case DType::Float32: return py::dtype::of<float>();
    case DType::Float64: return py::dtype::of<double>();
    case DType::Int64: return py::dtype::of<int64_t>();
    case DType::Bool: return py::dtype::of<bool>();
    case DType::BFloat16: break;
  }
  throw py::type_error("attn.Tensor.numpy: NumPy has no bfloat16; convert with .to('float32') first");
}

py::array to_numpy(const Tensor& t) {
  py::dtype dt = numpy_dtype(t.dtype());
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  std::vector<py::ssize_t> strides(t.dim());
  for (int64_t d = 0; d < t.dim(); ++d) strides[d] = t.stride(d) * static_cast<py::ssize_t>(t.itemsize());
  auto* keep = new Tensor(t.detach());
  py::capsule base(keep, [](void* p) { delete static_cast<Tensor*>(p); });
  void* data = t.numel() ? t.raw_data() : nullptr;
  return py::array(dt, shape, strides, data, base);
}

Tensor scalar_like(const Tensor& t, double v) { return scalar_tensor(v, t.dtype()); }

Tensor operand(const Tensor& self, py::handle other) {
  if (py::isinstance<py::float_>(other) || py::isinstance<py::int_>(other) || py::isinstance<py::bool_>(other))
    return scalar_like(self, other.cast<double>());
  return as_tensor(other, "other");
}

Shape shape_args(const py::args& args) {
  if (args.size() == 1 && !py::isinstance<py::int_>(args[0])) return args[0].cast<Shape>();
  return args.cast<Shape>();
}

// Basic indexing as NumPy and torch: integers, slices (any step > 0),
// Ellipsis and None, giving views.
Tensor index(const Tensor& t, py::object key) {
  py::tuple items = py::isinstance<py::tuple>(key) ? key.cast<py::tuple>() : py::make_tuple(key);
  int64_t consumed = 0;
  for (py::handle it : items)
    if (!it.is_none() && !it.is(py::ellipsis())) ++consumed;
  ATTN_CHECK(consumed <= t.dim(), "index: ", consumed, " indices for a tensor of ", t.dim(), " dims");
  Tensor r = t;
  int64_t d = 0;
  for (py::handle it : items) {
    if (it.is_none()) {
      r = r.unsqueeze(d++);
    } else if (it.is(py::ellipsis())) {
      d += t.dim() - consumed;
    } else if (py::isinstance<py::slice>(it)) {
      py::ssize_t start, stop, step, len;
      if (!it.cast<py::slice>().compute(r.size(d), &start, &stop, &step, &len)) throw py::error_already_set();
      if (step <= 0) throw py::value_error("attn.Tensor: slices need a positive step");
      r = r.slice(d, start, start + len * step, step);
      ++d;
    } else {
      r = r.select(d, it.cast<int64_t>());
    }
  }
  return r;
}

}  // namespace

Tensor as_tensor(py::handle obj, const char* what) {
  if (py::isinstance<Tensor>(obj)) return obj.cast<Tensor>();
  if (obj.is_none()) throw py::type_error(detail::str("attn: ", what, ": expected a tensor, got None"));
  if (PyObject_CheckBuffer(obj.ptr())) return from_buffer(obj, what);
  if (PyCapsule_CheckExact(obj.ptr())) return from_capsule(obj, what);
  // A torch tensor (one that requires grad too: attn reads its data).
  if (is_torch_tensor(obj)) return from_torch(obj, what);
  if (py::hasattr(obj, "__dlpack__")) return from_dlpack_object(obj, what);
  if (py::isinstance<py::float_>(obj) || py::isinstance<py::int_>(obj) || py::isinstance<py::list>(obj) ||
      py::isinstance<py::tuple>(obj))
    throw py::type_error(detail::str("attn: ", what, ": expected a tensor (attn.Tensor, a NumPy array or a torch "
                                     "tensor), got a Python ", py::str(obj.get_type().attr("__name__")).cast<std::string>(),
                                     "; use attn.tensor(...) to make one"));
  throw py::type_error(detail::str("attn: ", what, ": expected a tensor (attn.Tensor, a NumPy array or a torch "
                                   "tensor), got ", py::str(obj.get_type().attr("__name__")).cast<std::string>()));
}

Tensor as_optional_tensor(py::handle obj, const char* what) {
  if (obj.is_none()) return {};
  return as_tensor(obj, what);
}

DType parse_dtype(py::handle obj) {
  std::string s = py::str(obj);
  for (const char* prefix : {"torch.", "numpy.", "attn."})
    if (s.rfind(prefix, 0) == 0) s = s.substr(std::strlen(prefix));
  if (s == "float32" || s == "float") return kFloat32;
  if (s == "float64" || s == "double") return kFloat64;
  if (s == "int64" || s == "long") return kInt64;
  if (s == "bool") return kBool;
  if (s == "bfloat16") return kBFloat16;
  throw py::type_error(detail::str("attn: dtype '", s, "' is not one of float32, float64, int64, bool, bfloat16"));
}

void register_errors(py::module_& m) {
  static py::exception<Error> error(m, "Error", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    }
  });
}

void bind_tensor(py::module_& m) {
  py::class_<Tensor>(m, "Tensor", py::buffer_protocol(),
                     "An attn tensor. attn.Tensor(x) views x without a copy: a NumPy array, a torch tensor "
                     "(through DLPack) or anything with __dlpack__ or the buffer protocol.")
      .def(py::init([](py::object obj) { return as_tensor(obj, "Tensor"); }), py::arg("data"))
      .def_buffer([](Tensor& t) -> py::buffer_info {
        py::dtype dt = numpy_dtype(t.dtype());
        std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end()), strides(t.dim());
        for (int64_t d = 0; d < t.dim(); ++d) strides[d] = t.stride(d) * static_cast<py::ssize_t>(t.itemsize());
        return py::buffer_info(t.numel() ? t.raw_data() : nullptr, static_cast<py::ssize_t>(t.itemsize()),
                               py::str(dt.attr("char")).cast<std::string>(), t.dim(), shape, strides);
      })
      .def_property_readonly("shape", [](const Tensor& t) { return py::tuple(py::cast(t.shape())); })
      .def("size", [](const Tensor& t, std::optional<int64_t> d) -> py::object {
             if (d) return py::int_(t.size(*d));
             return py::tuple(py::cast(t.shape()));
           }, py::arg("dim") = py::none())
      .def_property_readonly("ndim", &Tensor::dim)
      .def("dim", &Tensor::dim)
      .def("numel", &Tensor::numel)
      .def("stride", [](const Tensor& t) { return py::tuple(py::cast(t.strides())); })
      .def_property_readonly("dtype", [](const Tensor& t) { return std::string(dtype_name(t.dtype())); })
      .def_property_readonly("device", [](const Tensor&) { return "cpu"; })
      .def("is_contiguous", &Tensor::is_contiguous)
      .def("numpy", &to_numpy, "A NumPy array sharing this tensor's memory")
      .def("__array__", [](const Tensor& t, py::object dtype) -> py::object {
             py::object a = to_numpy(t);
             return dtype.is_none() ? a : a.attr("astype")(dtype);
           }, py::arg("dtype") = py::none())
      .def("__dlpack__", [](const Tensor& t, py::object) { return to_dlpack(t); }, py::arg("stream") = py::none())
      .def("__dlpack_device__", [](const Tensor&) { return py::make_tuple(int(kDLCPU), 0); })
      .def("item", [](const Tensor& t) -> py::object {
             ATTN_CHECK(t.numel() == 1, "item: the tensor has ", t.numel(), " elements, not 1");
             if (t.dtype() == kInt64) return py::int_(t.item<int64_t>());
             if (t.dtype() == kBool) return py::bool_(t.item<bool>());
             return py::float_(t.item<double>());
           })
      .def("tolist", [](const Tensor& t) { return to_numpy(t).attr("tolist")(); })
      .def_property("requires_grad", &Tensor::requires_grad,
                    [](Tensor& t, bool r) { t.requires_grad_(r); })
      .def("requires_grad_", [](Tensor& t, bool r) { t.requires_grad_(r); return t; },
           py::arg("requires_grad") = true)
      .def_property("grad", [](const Tensor& t) -> py::object {
             Tensor g = t.grad();
             return g.defined() ? py::cast(g) : py::none();
           }, [](const Tensor& t, py::object g) { t.set_grad(as_optional_tensor(g, "grad")); })
      .def_property_readonly("is_leaf", &Tensor::is_leaf)
      .def_property_readonly("grad_fn", [](const Tensor& t) -> py::object {
        std::string n = t.grad_fn_name();
        return n.empty() ? py::object(py::none()) : py::object(py::str(n));
      })
      .def("backward", [](const Tensor& t, py::object gradient, bool retain_graph) {
             Tensor g = as_optional_tensor(gradient, "gradient");
             py::gil_scoped_release nogil;
             t.backward(g, retain_graph);
           }, py::arg("gradient") = py::none(), py::arg("retain_graph") = false)
      .def("detach", &Tensor::detach)
      .def("contiguous", &Tensor::contiguous)
      .def("clone", &Tensor::clone)
      .def("to", [](const Tensor& t, py::object dtype) { return t.to(parse_dtype(dtype)); }, py::arg("dtype"))
      .def("float", [](const Tensor& t) { return t.to(kFloat32); })
      .def("double", [](const Tensor& t) { return t.to(kFloat64); })
      .def("reshape", [](const Tensor& t, py::args shape) { return t.reshape(shape_args(shape)); })
      .def("view", [](const Tensor& t, py::args shape) { return t.view(shape_args(shape)); })
      .def("transpose", &Tensor::transpose, py::arg("dim0"), py::arg("dim1"))
      .def("permute", [](const Tensor& t, py::args dims) { return t.permute(shape_args(dims)); })
      .def("unsqueeze", &Tensor::unsqueeze, py::arg("dim"))
      .def("flatten", &Tensor::flatten, py::arg("start_dim") = 0, py::arg("end_dim") = -1)
      .def("narrow", &Tensor::narrow, py::arg("dim"), py::arg("start"), py::arg("length"))
      .def("select", &Tensor::select, py::arg("dim"), py::arg("index"))
      .def("sum", [](const Tensor& t, py::object dim, bool keepdim) {
             if (dim.is_none()) return t.sum();
             return py::isinstance<py::int_>(dim) ? t.sum({dim.cast<int64_t>()}, keepdim) : t.sum(dim.cast<Shape>(), keepdim);
           }, py::arg("dim") = py::none(), py::arg("keepdim") = false)
      .def("mean", [](const Tensor& t, py::object dim, bool keepdim) {
             if (dim.is_none()) return t.mean();
             return py::isinstance<py::int_>(dim) ? t.mean({dim.cast<int64_t>()}, keepdim) : t.mean(dim.cast<Shape>(), keepdim);
           }, py::arg("dim") = py::none(), py::arg("keepdim") = false)
      .def("zero_", [](Tensor& t) { t.zero_(); return t; })
      .def("fill_", [](Tensor& t, double v) { t.fill_(v); return t; })
      .def("copy_", [](Tensor& t, py::object src) { t.copy_(as_tensor(src, "src")); return t; })
      .def("__add__", [](const Tensor& a, py::object b) { return add(a, operand(a, b)); })
      .def("__radd__", [](const Tensor& a, py::object b) { return add(operand(a, b), a); })
      .def("__sub__", [](const Tensor& a, py::object b) { return sub(a, operand(a, b)); })
      .def("__rsub__", [](const Tensor& a, py::object b) { return sub(operand(a, b), a); })
      .def("__mul__", [](const Tensor& a, py::object b) { return mul(a, operand(a, b)); })
      .def("__rmul__", [](const Tensor& a, py::object b) { return mul(operand(a, b), a); })
      .def("__truediv__", [](const Tensor& a, py::object b) { return div(a, operand(a, b)); })
      .def("__neg__", [](const Tensor& a) { return neg(a); })
      .def("__pow__", [](const Tensor& a, double e) { return pow(a, e); })
      .def("__matmul__", [](const Tensor& a, py::object b) { return matmul(a, as_tensor(b, "other")); })
      .def("__getitem__", &index)
      .def("__len__", [](const Tensor& t) {
        ATTN_CHECK(t.dim() > 0, "len: a 0-d tensor has no length");
        return t.size(0);
      })
      .def("__repr__", [](const Tensor& t) { return t.to_string(); });

  m.def("from_numpy", [](py::object a) { return as_tensor(a, "from_numpy"); }, py::arg("array"),
        "A tensor sharing the array's memory (float32, float64, int64 or bool)");
  m.def("from_dlpack", [](py::object obj) { return as_tensor(obj, "from_dlpack"); }, py::arg("tensor"),
        "A tensor sharing the memory of an object with __dlpack__ (a torch CPU tensor) or of a DLPack capsule");
  m.def("as_tensor", [](py::object obj) { return as_tensor(obj, "as_tensor"); }, py::arg("data"));
  m.def("tensor", [](py::object data, py::object dtype, bool requires_grad) {
          py::module_ np = py::module_::import("numpy");
          py::object a = np.attr("array")(data);
          if (!dtype.is_none()) a = a.attr("astype")(py::str(dtype_name(parse_dtype(dtype))));
          else if (py::str(a.attr("dtype").attr("kind")).cast<std::string>() == "f") a = a.attr("astype")("float32");
          Tensor t = as_tensor(a, "tensor").clone();
          t.requires_grad_(requires_grad);
          return t;
        }, py::arg("data"), py::arg("dtype") = py::none(), py::arg("requires_grad") = false,
        "A new tensor holding a copy of data (nested lists, a NumPy array); Python floats become float32");
  auto factory = [&m](const char* name, Tensor (*fn)(const Shape&, TensorOptions)) {
    m.def(name, [fn](py::args shape, py::object dtype, bool requires_grad) {
            TensorOptions o(dtype.is_none() ? kFloat32 : parse_dtype(dtype));
            return fn(shape_args(shape), o.requires_grad(requires_grad));
          }, py::kw_only(), py::arg("dtype") = py::none(), py::arg("requires_grad") = false);
  };
  factory("zeros", &zeros);
  factory("ones", &ones);
  factory("empty", &empty);

  py::class_<Generator>(m, "Generator", "A random stream (Philox; draws are reproducible from the seed)")
      .def(py::init<uint64_t>(), py::arg("seed") = 0x5eed)
      .def("manual_seed", [](Generator& g, uint64_t s) -> Generator& { g.manual_seed(s); return g; },
           py::return_value_policy::reference_internal)
      .def("seed", &Generator::seed);
  m.def("manual_seed", &manual_seed, py::arg("seed"), "Seeds the default generator");
  m.def("randn", [](py::args shape, py::object dtype, bool requires_grad, Generator* gen) {
          TensorOptions o(dtype.is_none() ? kFloat32 : parse_dtype(dtype));
          return randn(shape_args(shape), o.requires_grad(requires_grad), gen);
        }, py::kw_only(), py::arg("dtype") = py::none(), py::arg("requires_grad") = false,
        py::arg("generator") = nullptr);

  m.def("is_grad_enabled", &is_grad_enabled);
  m.def("set_grad_enabled", &set_grad_enabled, py::arg("mode"));
  py::module_ ag = m.def_submodule("autograd", "attn's reverse-mode automatic differentiation");
  ag.def("backward", [](py::list roots, py::object grads, bool retain_graph) {
           std::vector<Tensor> r, g;
           for (py::handle h : roots) r.push_back(as_tensor(h, "tensors"));
           if (!grads.is_none())
             for (py::handle h : grads) g.push_back(as_optional_tensor(h, "grad_tensors"));
           py::gil_scoped_release nogil;
           autograd::backward(r, g, retain_graph);
         }, py::arg("tensors"), py::arg("grad_tensors") = py::none(), py::arg("retain_graph") = false);
  ag.def("grad", [](py::list outputs, py::list inputs, py::object grad_outputs, bool retain_graph) {
           std::vector<Tensor> o, i, g;
           for (py::handle h : outputs) o.push_back(as_tensor(h, "outputs"));
           for (py::handle h : inputs) i.push_back(as_tensor(h, "inputs"));
           if (!grad_outputs.is_none())
             for (py::handle h : grad_outputs) g.push_back(as_optional_tensor(h, "grad_outputs"));
           std::vector<Tensor> r;
           {
             py::gil_scoped_release nogil;
             r = autograd::grad(o, i, g, retain_graph);
           }
           py::list out;
           for (const Tensor& t : r) out.append(t.defined() ? py::cast(t) : py::none());
           return out;
         }, py::arg("outputs"), py::arg("inputs"), py::arg("grad_outputs") = py::none(),
         py::arg("retain_graph") = false);

  // IO: dictionaries of tensors.
  auto to_dict = [](const io::TensorMap& tm) {
    py::dict d;
    for (const auto& [k, v] : tm) d[py::str(k)] = v;
    return d;
  };
  m.def("load_safetensors", [to_dict](const std::string& path) { return to_dict(io::load_safetensors(path)); },
        py::arg("path"), "A dict of the tensors in a safetensors file");
  m.def("save_safetensors", [](const std::string& path, py::dict tensors, std::optional<io::Metadata> metadata) {
          io::TensorMap tm;
          for (auto [k, v] : tensors) tm[k.cast<std::string>()] = as_tensor(v, "tensors");
          io::save_safetensors(path, tm, metadata.value_or(io::Metadata{}));
        }, py::arg("path"), py::arg("tensors"), py::arg("metadata") = py::none(),
        "Writes a dict of tensors (attn, NumPy or torch) to a safetensors file, atomically");
  m.def("load_torch", [to_dict](const std::string& path, const std::string& select) {
          return to_dict(io::load_torch(path, io::TorchLoadOptions().select(select)));
        }, py::arg("path"), py::arg("select") = "",
        "The tensors of a torch.save file (read without running its pickle), optionally one sub-dict's");
  m.def("load", [to_dict](const std::string& path) { return to_dict(io::load_tensors(path)); }, py::arg("path"),
        "The tensors of a .safetensors or torch.save (.pt, .pth, .bin) file");
}

}  // namespace attn::python
