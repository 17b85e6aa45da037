// attn::nn::Module: the base of every layer, as torch.nn.Module. A module owns
// named parameters and buffers and named child modules; names compose with
// dots into PyTorch's state_dict keys ("encoder.layers.0.self_attn.in_proj_weight").
//
// Modules are ordinary classes (no holder): parameters are public Tensor
// members (`lin.weight`) and children are members registered by reference.
// Because the registry points at members, a module can be neither copied nor
// moved; build it in place (`nn::Linear lin(nn::LinearOptions(4, 8));`, or a
// factory returning a prvalue) and keep several in a ModuleList, Sequential or
// ModuleDict, which own them through unique_ptr.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "attn/dtype.h"
#include "attn/error.h"
#include "attn/io.h"
#include "attn/tensor.h"

namespace attn::nn {

// state_dict(): name -> tensor (the module's own tensors, detached; not copies).
using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  explicit Module(std::string type_name = "Module");
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = delete;
  Module& operator=(Module&&) = delete;

  // The class name ("Linear"), as PyTorch prints it.
  const std::string& type_name() const { return type_name_; }

  // Training mode for this module and every descendant (dropout, batch norm).
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // In registration order, children's after the module's own, keys dotted.
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<Module*> children() const;
  std::vector<std::pair<std::string, Module*>> named_children() const;
  // This module first (name ""), then every descendant depth-first.
  std::vector<std::pair<std::string, Module*>> named_modules();

  // Parameters and persistent buffers by their dotted names.
  StateDict state_dict() const;
  // Copies each entry into the matching parameter or buffer (shapes must
  // match; dtypes are converted). strict: attn::Error naming the missing
  // and unexpected keys (the first 8 of each, with the count) and the likely
  // cause when every key carries DataParallel's "module." prefix or none is
  // the model's; otherwise those are ignored. Misshaped entries are always
  // an error. Nothing is changed unless every check passes.
  void load_state_dict(const StateDict& state, bool strict = true);

  // Converts every floating parameter and buffer to `dtype` (float32/float64);
  // parameters stay leaves that require grad.
  void to(DType dtype);
  // Clears (set_to_none) or zeroes every parameter's gradient.
  void zero_grad(bool set_to_none = true);

  // The state_dict written to a safetensors file (atomic write); read from a
  // safetensors file or a PyTorch checkpoint (.pt, .pth, .bin: io::load_tensors).
  void save(const std::string& path, const io::Metadata& metadata = {}) const;
  void load(const std::string& path, bool strict = true);

  // PyTorch-style one-line description of this module ("Linear(in_features=4, ...)").
  virtual std::string extra_repr() const { return ""; }
  // The nested description of the module tree, as print(module) in PyTorch.
  std::string repr() const;

 protected:
  // `slot` must be a member of this module (it must outlive the registry).
  // An undefined tensor registers nothing (as PyTorch's `None` parameter).
  Tensor& register_parameter(const std::string& name, Tensor& slot, bool requires_grad = true);
  Tensor& register_buffer(const std::string& name, Tensor& slot, bool persistent = true);
  template <class M>
  M& register_module(const std::string& name, M& child) {
    add_child(name, &child);
    return child;
  }
  void add_child(const std::string& name, Module* child);

 private:
  void collect(const std::string& prefix, bool recurse,
               std::vector<std::pair<std::string, Tensor*>>& out, bool params, bool only_persistent) const;
  void repr_into(std::ostream& os, int indent) const;

  struct Entry {
    std::string name;
    Tensor* slot;
    bool persistent;
  };
  std::string type_name_;
  bool training_ = true;
  std::vector<Entry> params_;
  std::vector<Entry> buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

// Children named "0", "1", ... (PyTorch's ModuleList keys).
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  template <class M, class... Args>
  M& emplace_back(Args&&... args) {
    return push_back(std::make_unique<M>(std::forward<Args>(args)...));
  }
  template <class M>
  M& push_back(std::unique_ptr<M> m) {
    M& ref = *m;
    add_child(std::to_string(items_.size()), m.get());
    items_.push_back(std::move(m));
    return ref;
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  Module& operator[](size_t i) const;
  // The i-th module as its own type; attn::Error if it is another type.
  template <class M>
  M& at(size_t i) const {
    auto* p = dynamic_cast<M*>(&(*this)[i]);
    if (!p) throw Error(detail::str("ModuleList.at: item ", i, " is a ", (*this)[i].type_name()));
    return *p;
  }

 private:
  std::vector<std::unique_ptr<Module>> items_;
};

// Modules applied in order to one tensor; children named "0", "1", ... Any
// module with `Tensor forward(const Tensor&)` can be added.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  template <class M, class... Args>
  M& emplace_back(Args&&... args) {
    return push_back(std::make_unique<M>(std::forward<Args>(args)...));
  }
  template <class M>
  M& push_back(std::unique_ptr<M> m) {
    M* p = m.get();
    add_child(std::to_string(items_.size()), p);
    calls_.push_back([p](const Tensor& x) { return p->forward(x); });
    items_.push_back(std::move(m));
    return *p;
  }
  Tensor forward(const Tensor& x) const;
  size_t size() const { return items_.size(); }
  Module& operator[](size_t i) const;

 private:
  std::vector<std::unique_ptr<Module>> items_;
  std::vector<std::function<Tensor(const Tensor&)>> calls_;
};

// Children by name, in insertion order.
class ModuleDict : public Module {
 public:
  ModuleDict() : Module("ModuleDict") {}
  template <class M, class... Args>
  M& emplace(const std::string& key, Args&&... args) {
    return insert(key, std::make_unique<M>(std::forward<Args>(args)...));
  }
  template <class M>
  M& insert(const std::string& key, std::unique_ptr<M> m) {
    M& ref = *m;
    check_new_key(key);
    add_child(key, m.get());
    items_.emplace_back(key, std::move(m));
    return ref;
  }
  bool contains(const std::string& key) const;
  Module& operator[](const std::string& key) const;
  std::vector<std::string> keys() const;
  size_t size() const { return items_.size(); }

 private:
  void check_new_key(const std::string& key) const;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> items_;
};

}  // namespace attn::nn
