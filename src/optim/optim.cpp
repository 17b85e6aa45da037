// Optimizers, clipping, schedules and checkpoints (see include/attn/optim.h).
#include "attn/optim.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "attn/autograd.h"
#include "attn/error.h"
#include "attn/ops.h"
#include "kernels/cpu/kernels.h"

namespace attn::optim {

namespace k = ::attn::kernels::cpu;

namespace {

std::string key(size_t i, const char* field) {
  std::ostringstream os;
  os << "state." << i << "." << field;
  return os.str();
}

// The gradient of p, contiguous, checked against p.
Tensor grad_of(const char* op, size_t i, const Tensor& p) {
  Tensor g = p.grad();
  if (!g.defined()) return g;
  ATTN_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype(), op, ": parameter ", i, " is ", shape_str(p.shape()),
             " ", dtype_name(p.dtype()), " but its gradient is ", shape_str(g.shape()), " ", dtype_name(g.dtype()));
  return g.contiguous();
}

Tensor scalar_i64(int64_t v) { return from_vector(std::vector<int64_t>{v}, Shape{}); }

// Checks a loaded state: every key is one this optimizer knows, every buffer
// matches its parameter, steps are non-negative int64 scalars.
struct StateReader {
  const char* op;
  const io::TensorMap& state;
  const std::vector<Tensor>& params;
  std::vector<std::string> fields;  // buffer fields besides "step"

  void check() const {
    ATTN_CHECK(state.count("lr") && state.at("lr").numel() == 1, op, ": the state has no scalar \"lr\"");
    for (const auto& [name, t] : state) {
      if (name == "lr" || name == "initial_lr") {
        ATTN_CHECK(t.numel() == 1 && is_floating(t.dtype()), op, ": \"", name, "\" must be a float scalar");
        continue;
      }
      std::istringstream is(name);
      std::string head, idx, field;
      const bool ok = std::getline(is, head, '.') && std::getline(is, idx, '.') && std::getline(is, field) &&
                      head == "state" && !idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos;
      ATTN_CHECK(ok, op, ": unexpected key \"", name, "\" in the state");
      const size_t i = std::stoul(idx);
      ATTN_CHECK(i < params.size(), op, ": key \"", name, "\" names parameter ", i, " but there are ", params.size());
      if (field == "step") {
        ATTN_CHECK(t.dtype() == kInt64 && t.numel() == 1 && t.item<int64_t>() >= 0, op, ": \"", name,
                   "\" must be a non-negative int64 scalar");
        continue;
      }
      ATTN_CHECK(std::find(fields.begin(), fields.end(), field) != fields.end(), op, ": unexpected key \"", name,
                 "\" in the state");
      ATTN_CHECK(t.shape() == params[i].shape(), op, ": \"", name, "\" is ", shape_str(t.shape()), " but parameter ",
                 i, " is ", shape_str(params[i].shape()));
      ATTN_CHECK(is_floating(t.dtype()), op, ": \"", name, "\" must be float, got ", dtype_name(t.dtype()));
      ATTN_CHECK(state.count(key(i, "step")), op, ": \"", name, "\" comes without \"", key(i, "step"), "\"");
    }
  }
  int64_t step(size_t i) const { return state.count(key(i, "step")) ? state.at(key(i, "step")).item<int64_t>() : 0; }
  // The buffer in the parameter's dtype, or undefined.
  Tensor buffer(size_t i, const char* field) const {
    auto it = state.find(key(i, field));
    return it == state.end() ? Tensor() : it->second.to(params[i].dtype()).contiguous().clone();
  }
};

}  // namespace

Optimizer::Optimizer(std::vector<Tensor> params, const char* name) : params_(std::move(params)), name_(name) {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    ATTN_CHECK(p.defined(), name_, ": parameter ", i, " is undefined");
    ATTN_CHECK(p.dtype() == kFloat32 || p.dtype() == kFloat64, name_, ": parameter ", i,
               " must be float32 or float64, got ", dtype_name(p.dtype()));
    ATTN_CHECK(p.is_leaf() && p.requires_grad(), name_, ": parameter ", i,
               " must be a leaf that requires grad (a module parameter)");
    ATTN_CHECK(p.is_contiguous(), name_, ": parameter ", i, " must be contiguous");
    for (size_t j = 0; j < i; ++j)
      ATTN_CHECK(!p.is_same(params_[j]), name_, ": parameter ", i, " is parameter ", j, " again");
  }
}

void Optimizer::zero_grad(bool set_to_none) {
  for (const Tensor& p : params_) {
    if (set_to_none) {
      p.set_grad({});
    } else if (p.grad().defined()) {
      NoGradGuard ng;
      p.set_grad(zeros_like(p));
    }
  }
}

double Optimizer::initial_lr() {
  if (!initial_lr_) initial_lr_ = lr();
  return *initial_lr_;
}

// "lr" and "initial_lr" into a state.
static void put_lrs(io::TensorMap& s, double lr, const std::optional<double>& initial) {
  s["lr"] = from_vector(std::vector<double>{lr}, Shape{});
  if (initial) s["initial_lr"] = from_vector(std::vector<double>{*initial}, Shape{});
}

// ---- SGD --------------------------------------------------------------------------------

SGD::SGD(std::vector<Tensor> params, const SGDOptions& o) : Optimizer(std::move(params), "SGD"), options(o) {
  ATTN_CHECK(o.lr() >= 0, "SGD: lr must be >= 0, got ", o.lr());
  ATTN_CHECK(o.momentum() >= 0, "SGD: momentum must be >= 0, got ", o.momentum());
  ATTN_CHECK(o.weight_decay() >= 0, "SGD: weight_decay must be >= 0, got ", o.weight_decay());
  ATTN_CHECK(!o.nesterov() || (o.momentum() > 0 && o.dampening() == 0),
             "SGD: nesterov needs momentum > 0 and dampening 0, got momentum ", o.momentum(), " and dampening ",
             o.dampening());
  momentum_buffer_.resize(params_.size());
  steps_.assign(params_.size(), 0);
}

void SGD::step() {
  NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = grad_of("SGD", i, params_[i]);
    if (!g.defined()) continue;
    k::SgdHyper h;
    h.lr = options.lr(), h.momentum = options.momentum(), h.dampening = options.dampening();
    h.weight_decay = options.weight_decay(), h.nesterov = options.nesterov(), h.maximize = options.maximize();
    if (options.momentum() != 0 && !momentum_buffer_[i].defined()) {
      momentum_buffer_[i] = zeros_like(params_[i]);
      h.first = true;
    }
    k::sgd_step(params_[i], g, options.momentum() != 0 ? momentum_buffer_[i] : Tensor(), h);
    ++steps_[i];
  }
}

io::TensorMap SGD::state_dict() const {
  io::TensorMap s;
  put_lrs(s, options.lr(), initial_lr_);
  for (size_t i = 0; i < params_.size(); ++i) {
    if (steps_[i] == 0) continue;
    s[key(i, "step")] = scalar_i64(steps_[i]);
    if (momentum_buffer_[i].defined()) s[key(i, "momentum_buffer")] = momentum_buffer_[i].clone();
  }
  return s;
}

void SGD::load_state_dict(const io::TensorMap& state) {
  StateReader r{"SGD::load_state_dict", state, params_, {"momentum_buffer"}};
  r.check();
  options.lr(state.at("lr").to(kFloat64).item<double>());
  initial_lr_ = state.count("initial_lr") ? std::optional<double>(state.at("initial_lr").to(kFloat64).item<double>())
                                          : std::nullopt;
  for (size_t i = 0; i < params_.size(); ++i) {
    steps_[i] = r.step(i);
    momentum_buffer_[i] = r.buffer(i, "momentum_buffer");
  }
}

// ---- Adam / AdamW ---------------------------------------------------------------------------

Adam::Adam(std::vector<Tensor> params, const AdamOptions& o) : Adam(std::move(params), o, false, "Adam") {}

Adam::Adam(std::vector<Tensor> params, const AdamOptions& o, bool decoupled, const char* name)
    : Optimizer(std::move(params), name), options(o), decoupled_(decoupled) {
  ATTN_CHECK(o.lr() >= 0, name, ": lr must be >= 0, got ", o.lr());
  ATTN_CHECK(o.eps() >= 0, name, ": eps must be >= 0, got ", o.eps());
  ATTN_CHECK(o.beta1() >= 0 && o.beta1() < 1 && o.beta2() >= 0 && o.beta2() < 1, name,
             ": betas must be in [0, 1), got (", o.beta1(), ", ", o.beta2(), ")");
  ATTN_CHECK(o.weight_decay() >= 0, name, ": weight_decay must be >= 0, got ", o.weight_decay());
  exp_avg_.resize(params_.size());
  exp_avg_sq_.resize(params_.size());
  max_exp_avg_sq_.resize(params_.size());
  steps_.assign(params_.size(), 0);
}

AdamW::AdamW(std::vector<Tensor> params, const AdamOptions& o) : Adam(std::move(params), o, true, "AdamW") {}

void Adam::step() {
  NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = grad_of(name_, i, params_[i]);
    if (!g.defined()) continue;
    if (!exp_avg_[i].defined()) {
      exp_avg_[i] = zeros_like(params_[i]);
      exp_avg_sq_[i] = zeros_like(params_[i]);
    }
    if (options.amsgrad() && !max_exp_avg_sq_[i].defined()) max_exp_avg_sq_[i] = zeros_like(params_[i]);
    k::AdamHyper h;
    h.lr = options.lr(), h.beta1 = options.beta1(), h.beta2 = options.beta2(), h.eps = options.eps();
    h.weight_decay = options.weight_decay(), h.decoupled = decoupled_, h.amsgrad = options.amsgrad();
    h.maximize = options.maximize(), h.step = ++steps_[i];
    k::adam_step(params_[i], g, exp_avg_[i], exp_avg_sq_[i], options.amsgrad() ? max_exp_avg_sq_[i] : Tensor(), h);
  }
}

io::TensorMap Adam::state_dict() const {
  io::TensorMap s;
  put_lrs(s, options.lr(), initial_lr_);
  for (size_t i = 0; i < params_.size(); ++i) {
    if (steps_[i] == 0) continue;
    s[key(i, "step")] = scalar_i64(steps_[i]);
    s[key(i, "exp_avg")] = exp_avg_[i].clone();
    s[key(i, "exp_avg_sq")] = exp_avg_sq_[i].clone();
    if (max_exp_avg_sq_[i].defined()) s[key(i, "max_exp_avg_sq")] = max_exp_avg_sq_[i].clone();
  }
  return s;
}

void Adam::load_state_dict(const io::TensorMap& state) {
  const std::string op = std::string(name_) + "::load_state_dict";
  StateReader r{op.c_str(), state, params_, {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}};
  r.check();
  for (size_t i = 0; i < params_.size(); ++i)
    ATTN_CHECK(r.step(i) == 0 || (state.count(key(i, "exp_avg")) && state.count(key(i, "exp_avg_sq"))), op,
               ": parameter ", i, " has a step but no exp_avg / exp_avg_sq");
  options.lr(state.at("lr").to(kFloat64).item<double>());
  initial_lr_ = state.count("initial_lr") ? std::optional<double>(state.at("initial_lr").to(kFloat64).item<double>())
                                          : std::nullopt;
  for (size_t i = 0; i < params_.size(); ++i) {
    steps_[i] = r.step(i);
    exp_avg_[i] = r.buffer(i, "exp_avg");
    exp_avg_sq_[i] = r.buffer(i, "exp_avg_sq");
    max_exp_avg_sq_[i] = r.buffer(i, "max_exp_avg_sq");
  }
}

// ---- clipping ---------------------------------------------------------------------------------

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  ATTN_CHECK(norm_type > 0, "clip_grad_norm_: norm_type must be positive (or inf), got ", norm_type);
  NoGradGuard ng;
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  // torch: the norm of each gradient, then the norm of those norms.
  double total = 0;
  const bool inf = std::isinf(norm_type);
  for (const Tensor& g : grads) {
    Tensor a = abs(g.to(kFloat64)).reshape({-1});
    const double n = a.numel() == 0 ? 0.0
                     : inf          ? amax(a, {0}).item<double>()
                                    : std::pow(sum(pow(a, norm_type)).item<double>(), 1.0 / norm_type);
    total = inf ? std::max(total, n) : total + std::pow(n, norm_type);
  }
  if (!inf) total = std::pow(total, 1.0 / norm_type);
  ATTN_CHECK(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm_: the total norm of order ", norm_type,
             " of the gradients is ", total, " (not finite)");
  const double coef = std::min(1.0, max_norm / (total + 1e-6));
  for (Tensor g : grads) g.mul_(coef);
  return total;
}

void clip_grad_value_(const std::vector<Tensor>& params, double clip_value) {
  ATTN_CHECK(clip_value >= 0, "clip_grad_value_: clip_value must be >= 0, got ", clip_value);
  NoGradGuard ng;
  for (const Tensor& p : params)
    if (p.grad().defined()) p.grad().copy_(clamp(p.grad(), -clip_value, clip_value));
}

// ---- schedules ----------------------------------------------------------------------------

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer) { optimizer.initial_lr(); }

void LRScheduler::start() { set_epoch(0); }

void LRScheduler::step() { set_epoch(last_epoch_ + 1); }

void LRScheduler::set_epoch(int64_t epoch) {
  ATTN_CHECK(epoch >= 0, "LRScheduler: epoch must be >= 0, got ", epoch);
  last_epoch_ = epoch;
  last_lr_ = lr_at(epoch);
  optimizer_.set_lr(last_lr_);
}

StepLR::StepLR(Optimizer& o, int64_t step_size, double gamma) : LRScheduler(o), step_size_(step_size), gamma_(gamma) {
  ATTN_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
  start();
}
double StepLR::lr_at(int64_t e) const { return base_lr() * std::pow(gamma_, static_cast<double>(e / step_size_)); }

LinearLR::LinearLR(Optimizer& o, double start_factor, double end_factor, int64_t total_iters)
    : LRScheduler(o), start_(start_factor), end_(end_factor), total_(total_iters) {
  ATTN_CHECK(start_factor > 0 && start_factor <= 1 && end_factor >= 0 && end_factor <= 1,
             "LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], got ", start_factor, " and ",
             end_factor);
  ATTN_CHECK(total_iters > 0, "LinearLR: total_iters must be positive, got ", total_iters);
  start();
}
double LinearLR::lr_at(int64_t e) const {
  const double t = static_cast<double>(std::min(e, total_)) / static_cast<double>(total_);
  return base_lr() * (start_ + (end_ - start_) * t);
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& o, int64_t T_max, double eta_min)
    : LRScheduler(o), t_max_(T_max), eta_min_(eta_min) {
  ATTN_CHECK(T_max > 0, "CosineAnnealingLR: T_max must be positive, got ", T_max);
  start();
}
double CosineAnnealingLR::lr_at(int64_t e) const {
  const double pi = 3.14159265358979323846;
  return eta_min_ + (base_lr() - eta_min_) * (1 + std::cos(pi * static_cast<double>(e) / static_cast<double>(t_max_))) / 2;
}

LambdaLR::LambdaLR(Optimizer& o, std::function<double(int64_t)> lambda) : LRScheduler(o), lambda_(std::move(lambda)) {
  ATTN_CHECK(static_cast<bool>(lambda_), "LambdaLR: the lambda is empty");
  start();
}
double LambdaLR::lr_at(int64_t e) const { return base_lr() * lambda_(e); }

SequentialLR::SequentialLR(Optimizer& o, std::vector<std::unique_ptr<LRScheduler>> schedulers,
                           std::vector<int64_t> milestones)
    : LRScheduler(o), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
  ATTN_CHECK(!schedulers_.empty() && milestones_.size() + 1 == schedulers_.size(),
             "SequentialLR: needs one milestone fewer than schedulers, got ", schedulers_.size(), " schedulers and ",
             milestones_.size(), " milestones");
  for (const auto& s : schedulers_) ATTN_CHECK(s != nullptr, "SequentialLR: a scheduler is null");
  for (size_t i = 0; i < milestones_.size(); ++i)
    ATTN_CHECK(milestones_[i] > 0 && (i == 0 || milestones_[i] > milestones_[i - 1]),
               "SequentialLR: milestones must be positive and increasing");
  start();
}
double SequentialLR::lr_at(int64_t e) const {
  size_t idx = 0;
  while (idx < milestones_.size() && e >= milestones_[idx]) ++idx;
  return schedulers_[idx]->lr_at(idx == 0 ? e : e - milestones_[idx - 1]);
}

// ---- checkpoints ----------------------------------------------------------------------------

void save_checkpoint(const std::string& path, const nn::Module& model, const Optimizer* optimizer, int64_t step,
                     const Generator* generator, const io::Metadata& extra) {
  io::TensorMap all;
  for (const auto& [name, t] : model.state_dict()) all["model." + name] = t.detach().contiguous();
  if (optimizer)
    for (const auto& [name, t] : optimizer->state_dict()) all["optimizer." + name] = t.contiguous();
  io::Metadata meta = extra;
  meta["format"] = "attn-checkpoint-1";
  meta["step"] = std::to_string(step);
  if (generator) {
    meta["generator.seed"] = std::to_string(generator->seed());
    meta["generator.offset"] = std::to_string(generator->offset());
  }
  io::save_safetensors(path, all, meta);
}

io::Metadata load_checkpoint(const std::string& path, nn::Module& model, Optimizer* optimizer, Generator* generator) {
  io::SafetensorsFile f = io::read_safetensors(path);
  auto it = f.metadata.find("format");
  ATTN_CHECK(it != f.metadata.end() && it->second == "attn-checkpoint-1", "load_checkpoint: ", path,
             " is not an attn checkpoint (no metadata format = attn-checkpoint-1)");
  auto number = [&](const std::string& name) {
    auto m = f.metadata.find(name);
    ATTN_CHECK(m != f.metadata.end(), "load_checkpoint: ", path, " has no metadata \"", name, "\"");
    size_t used = 0;
    unsigned long long v = 0;
    try {
      v = std::stoull(m->second, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    ATTN_CHECK(used == m->second.size() && !m->second.empty(), "load_checkpoint: metadata \"", name,
               "\" must be a non-negative integer, got \"", m->second, "\"");
    return static_cast<uint64_t>(v);
  };
  number("step");
  nn::StateDict model_state;
  io::TensorMap opt_state;
  for (const auto& [name, t] : f.tensors) {
    if (name.rfind("model.", 0) == 0) {
      model_state[name.substr(6)] = t;
    } else if (name.rfind("optimizer.", 0) == 0) {
      opt_state[name.substr(10)] = t;
    } else {
      ATTN_CHECK(false, "load_checkpoint: unexpected tensor \"", name, "\" in ", path);
    }
  }
  ATTN_CHECK(!optimizer || !opt_state.empty(), "load_checkpoint: ", path, " holds no optimizer state");
  uint64_t seed = 0, offset = 0;
  if (generator) seed = number("generator.seed"), offset = number("generator.offset");
  // Each load checks everything before changing anything; the optimizer's
  // old state comes back if the model's load then fails.
  if (optimizer) {
    const io::TensorMap old = optimizer->state_dict();
    optimizer->load_state_dict(opt_state);
    try {
      model.load_state_dict(model_state, /*strict=*/true);
    } catch (...) {
      optimizer->load_state_dict(old);
      throw;
    }
  } else {
    model.load_state_dict(model_state, /*strict=*/true);
  }
  if (generator) {
    generator->manual_seed(seed);
    generator->set_offset(offset);
  }
  return f.metadata;
}

}  // namespace attn::optim
