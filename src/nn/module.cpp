// Module registry, state_dict and containers.
#include "attn/nn/module.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "attn/autograd.h"
#include "attn/io.h"
#include "attn/ops.h"

namespace attn::nn {

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}

namespace {
void check_name(const Module& m, const std::string& kind, const std::string& name) {
  ATTN_CHECK(!name.empty() && name.find('.') == std::string::npos, m.type_name(), ": ", kind, " name '", name,
             "' must be non-empty and contain no '.'");
}
}  // namespace

Tensor& Module::register_parameter(const std::string& name, Tensor& slot, bool requires_grad) {
  check_name(*this, "parameter", name);
  if (!slot.defined()) return slot;
  for (const auto& e : params_)
    ATTN_CHECK(e.name != name, type_name_, ": parameter '", name, "' registered twice");
  if (slot.requires_grad() != requires_grad) {
    if (!slot.is_leaf()) slot = slot.detach();
    slot.requires_grad_(requires_grad);
  }
  params_.push_back({name, &slot, true});
  return slot;
}

Tensor& Module::register_buffer(const std::string& name, Tensor& slot, bool persistent) {
  check_name(*this, "buffer", name);
  if (!slot.defined()) return slot;
  for (const auto& e : buffers_)
    ATTN_CHECK(e.name != name, type_name_, ": buffer '", name, "' registered twice");
  buffers_.push_back({name, &slot, persistent});
  return slot;
}

void Module::add_child(const std::string& name, Module* child) {
  check_name(*this, "module", name);
  for (const auto& c : children_)
    ATTN_CHECK(c.first != name, type_name_, ": module '", name, "' registered twice");
  children_.emplace_back(name, child);
  child->train(training_);
}

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

void Module::collect(const std::string& prefix, bool recurse, std::vector<std::pair<std::string, Tensor*>>& out,
                     bool params, bool only_persistent) const {
  for (const auto& e : params ? params_ : buffers_) {
    if (only_persistent && !e.persistent) continue;
    if (!e.slot->defined()) continue;
    out.emplace_back(prefix + e.name, e.slot);
  }
  if (!recurse) return;
  for (const auto& c : children_) c.second->collect(prefix + c.first + ".", true, out, params, only_persistent);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", recurse, slots, true, false);
  std::vector<std::pair<std::string, Tensor>> out;
  std::set<const TensorImpl*> seen;  // a tensor shared by two modules is listed once, as PyTorch
  for (auto& [n, p] : slots)
    if (seen.insert(&p->impl()).second) out.emplace_back(n, *p);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, p] : named_parameters(recurse)) out.push_back(p);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", recurse, slots, false, false);
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [n, p] : slots) out.emplace_back(n, *p);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, b] : named_buffers(recurse)) out.push_back(b);
  return out;
}

std::vector<Module*> Module::children() const {
  std::vector<Module*> out;
  for (auto& c : children_) out.push_back(c.second);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_children() const { return children_; }

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [name, child] : children_)
    for (auto& [sub, m] : child->named_modules()) out.emplace_back(sub.empty() ? name : name + "." + sub, m);
  return out;
}

StateDict Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", true, slots, true, false);
  collect("", true, slots, false, true);
  StateDict out;
  for (auto& [n, p] : slots) out.emplace(n, p->detach());
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", true, slots, true, false);
  collect("", true, slots, false, true);
  std::vector<std::string> missing, unexpected, errors;
  std::set<std::string> known;
  for (auto& [name, slot] : slots) {
    known.insert(name);
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    if (!src.defined()) {
      errors.push_back(detail::str("'", name, "' is undefined"));
    } else if (src.shape() != slot->shape()) {
      errors.push_back(detail::str("'", name, "' has shape ", shape_str(src.shape()), " in the state_dict but ",
                                   shape_str(slot->shape()), " in the module"));
    } else if (is_floating(slot->dtype()) != is_floating(src.dtype()) ||
               (slot->dtype() == kBool) != (src.dtype() == kBool)) {
      errors.push_back(detail::str("'", name, "' is ", dtype_name(src.dtype()), " in the state_dict but ",
                                   dtype_name(slot->dtype()), " in the module"));
    }
  }
  for (auto& [name, t] : state)
    if (!known.count(name)) unexpected.push_back(name);
  // The first keys of each list (a whole model's keys would fill a screen), with the count.
  auto join = [](const std::vector<std::string>& v) {
    constexpr size_t kShown = 8;
    std::string s;
    for (size_t i = 0; i < v.size() && i < kShown; ++i) s += (i ? ", " : "") + ("'" + v[i] + "'");
    if (v.size() > kShown) s += detail::str(", ... (", v.size(), " in all)");
    return s;
  };
  std::string msg;
  if (!errors.empty()) {
    msg += "size or dtype mismatch: ";
    for (size_t i = 0; i < errors.size(); ++i) msg += (i ? "; " : "") + errors[i];
  }
  if (strict && !missing.empty()) msg += (msg.empty() ? "" : ". ") + ("missing keys: " + join(missing));
  if (strict && !unexpected.empty()) msg += (msg.empty() ? "" : ". ") + ("unexpected keys: " + join(unexpected));
  // What a user most likely did: saved from DataParallel, or loaded another model's weights.
  if (strict && !missing.empty() && !unexpected.empty()) {
    bool prefixed = !state.empty();
    for (auto& [name, t] : state) prefixed = prefixed && name.rfind("module.", 0) == 0;
    if (prefixed)
      msg += ". Every key starts with \"module.\" (a model saved from DataParallel or DistributedDataParallel): "
             "save model.module.state_dict() instead, or strip the prefix";
    else if (unexpected.size() == state.size())
      msg += ". None of the state_dict's keys is one of this model's: weights of another architecture or "
             "configuration?";
  }
  ATTN_CHECK(msg.empty(), type_name_, ".load_state_dict: ", msg);
  NoGradGuard ng;
  for (auto& [name, slot] : slots) {
    auto it = state.find(name);
    if (it != state.end()) slot->copy_(it->second);
  }
}

void Module::to(DType dtype) {
  ATTN_CHECK(dtype == kFloat32 || dtype == kFloat64, type_name_, ".to: dtype must be float32 or float64, got ",
             dtype_name(dtype));
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", true, slots, true, false);
  NoGradGuard ng;
  std::set<const TensorImpl*> done;
  for (auto& [n, p] : slots) {
    if (!is_floating(p->dtype()) || p->dtype() == dtype) continue;
    bool rg = p->requires_grad();
    *p = p->detach().to(dtype);
    if (rg) p->requires_grad_(true);
  }
  slots.clear();
  collect("", true, slots, false, false);
  for (auto& [n, b] : slots)
    if (is_floating(b->dtype()) && b->dtype() != dtype) *b = b->to(dtype);
}

void Module::zero_grad(bool set_to_none) {
  for (auto& p : parameters()) {
    if (!p.grad().defined()) continue;
    if (set_to_none) {
      p.set_grad({});
    } else {
      NoGradGuard ng;
      Tensor g = p.grad();
      g.zero_();
    }
  }
}

void Module::save(const std::string& path, const io::Metadata& metadata) const {
  io::TensorMap m;
  for (auto& [k, v] : state_dict()) m.emplace(k, v);
  io::save_safetensors(path, m, metadata);
}

void Module::load(const std::string& path, bool strict) {
  io::TensorMap m = io::load_tensors(path);
  load_state_dict(StateDict(m.begin(), m.end()), strict);
}

void Module::repr_into(std::ostream& os, int indent) const {
  os << type_name_ << "(";
  std::string extra = extra_repr();
  if (children_.empty()) {
    os << extra << ")";
    return;
  }
  std::string pad(static_cast<size_t>(indent + 2), ' ');
  if (!extra.empty()) os << "\n" << pad << extra;
  for (auto& [name, child] : children_) {
    os << "\n" << pad << "(" << name << "): ";
    child->repr_into(os, indent + 2);
  }
  os << "\n" << std::string(static_cast<size_t>(indent), ' ') << ")";
}

std::string Module::repr() const {
  std::ostringstream os;
  repr_into(os, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.repr(); }

Module& ModuleList::operator[](size_t i) const {
  ATTN_CHECK(i < items_.size(), "ModuleList: index ", i, " out of range for ", items_.size(), " modules");
  return *items_[i];
}

Module& Sequential::operator[](size_t i) const {
  ATTN_CHECK(i < items_.size(), "Sequential: index ", i, " out of range for ", items_.size(), " modules");
  return *items_[i];
}

Tensor Sequential::forward(const Tensor& x) const {
  Tensor y = x;
  for (auto& f : calls_) y = f(y);
  return y;
}

bool ModuleDict::contains(const std::string& key) const {
  return std::any_of(items_.begin(), items_.end(), [&](auto& kv) { return kv.first == key; });
}

Module& ModuleDict::operator[](const std::string& key) const {
  for (auto& [k, m] : items_)
    if (k == key) return *m;
  throw Error(detail::str("ModuleDict: no module named '", key, "'"));
}

std::vector<std::string> ModuleDict::keys() const {
  std::vector<std::string> out;
  for (auto& kv : items_) out.push_back(kv.first);
  return out;
}

void ModuleDict::check_new_key(const std::string& key) const {
  ATTN_CHECK(!contains(key), "ModuleDict: key '", key, "' already present");
}

}  // namespace attn::nn
