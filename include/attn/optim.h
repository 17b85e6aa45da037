// Optimizers, gradient clipping, learning-rate schedules and training
// checkpoints, with PyTorch's update rules (torch.optim in 1.13, the
// single-tensor path) and names.
//
//   optim::AdamW opt(model.parameters(), optim::AdamWOptions(3e-4).weight_decay(0.01));
//   optim::LinearLR warmup(opt, 0.1, 1.0, 100);
//   ...  loss.backward(); optim::clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad();
//
// One parameter group per optimizer (its lr is what schedules change).
// Parameters whose gradient is undefined are skipped by step(), as PyTorch.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "attn/functional.h"
#include "attn/generator.h"
#include "attn/io.h"
#include "attn/nn/module.h"
#include "attn/tensor.h"

namespace attn::optim {

struct SGDOptions {
  SGDOptions(double lr) : lr_(lr) {}  // NOLINT: as torch.optim.SGD(params, lr)
  ATTN_ARG(double, lr);
  ATTN_ARG(double, momentum) = 0.0;
  ATTN_ARG(double, dampening) = 0.0;
  ATTN_ARG(double, weight_decay) = 0.0;  // L2: added to the gradient
  ATTN_ARG(bool, nesterov) = false;
  ATTN_ARG(bool, maximize) = false;
};

struct AdamOptions {
  AdamOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT
  ATTN_ARG(double, lr);
  ATTN_ARG(double, beta1) = 0.9;
  ATTN_ARG(double, beta2) = 0.999;
  ATTN_ARG(double, eps) = 1e-8;
  ATTN_ARG(double, weight_decay) = 0.0;  // Adam: L2 added to the gradient
  ATTN_ARG(bool, amsgrad) = false;
  ATTN_ARG(bool, maximize) = false;
};

// AdamW: Adam with decoupled weight decay (the parameter is scaled by
// 1 - lr * weight_decay before the step). AdamWOptions is AdamOptions with
// PyTorch's AdamW default decay, 1e-2 (its setters return AdamOptions&).
struct AdamWOptions : AdamOptions {
  AdamWOptions(double lr = 1e-3) : AdamOptions(lr) { weight_decay(1e-2); }  // NOLINT
};

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params, const char* name);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;
  // Clears the parameters' gradients (undefined with set_to_none, else zeros).
  void zero_grad(bool set_to_none = true);
  const std::vector<Tensor>& parameters() const { return params_; }
  virtual double lr() const = 0;
  virtual void set_lr(double lr) = 0;
  // The lr schedules start from (PyTorch's group["initial_lr"]): set by the
  // first schedule attached, the lr at that time.
  double initial_lr();
  void set_initial_lr(double lr) { initial_lr_ = lr; }
  // The state for a checkpoint: "lr", "initial_lr" (once a schedule set
  // it), and per parameter index i
  // "state.i.step" and the buffers ("state.i.exp_avg", ...); parameters
  // never stepped have no entries. load_state_dict checks every key, shape
  // and dtype before changing anything.
  virtual io::TensorMap state_dict() const = 0;
  virtual void load_state_dict(const io::TensorMap& state) = 0;

 protected:
  std::vector<Tensor> params_;
  std::optional<double> initial_lr_;
  const char* name_;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& options);
  void step() override;
  double lr() const override { return options.lr(); }
  void set_lr(double lr) override { options.lr(lr); }
  io::TensorMap state_dict() const override;
  void load_state_dict(const io::TensorMap& state) override;
  SGDOptions options;

 private:
  std::vector<Tensor> momentum_buffer_;  // undefined until a parameter's first step
  std::vector<int64_t> steps_;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& options);
  void step() override;
  double lr() const override { return options.lr(); }
  void set_lr(double lr) override { options.lr(lr); }
  io::TensorMap state_dict() const override;
  void load_state_dict(const io::TensorMap& state) override;
  AdamOptions options;

 protected:
  Adam(std::vector<Tensor> params, const AdamOptions& options, bool decoupled, const char* name);

 private:
  bool decoupled_ = false;
  std::vector<Tensor> exp_avg_, exp_avg_sq_, max_exp_avg_sq_;
  std::vector<int64_t> steps_;
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, const AdamOptions& options = AdamWOptions());
};

// ---- Gradient clipping (torch.nn.utils) ------------------------------------------------
// Scales every gradient by min(1, max_norm / (total + 1e-6)), total being the
// norm_type norm of all gradients together (inf: the largest |g|); returns
// total. error_if_nonfinite: attn::Error when total is NaN or infinite.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);
// Clamps every gradient element to [-clip_value, clip_value].
void clip_grad_value_(const std::vector<Tensor>& params, double clip_value);

// ---- Learning-rate schedules (torch.optim.lr_scheduler) --------------------------------
// Constructing one applies epoch 0, as PyTorch; step() moves to the next
// epoch and sets the optimizer's lr. Each gives the closed form of
// PyTorch's schedule (the same values up to rounding).
class LRScheduler {
 public:
  explicit LRScheduler(Optimizer& optimizer);
  virtual ~LRScheduler() = default;
  void step();
  double get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  // Jumps to an epoch (resuming from a checkpoint) and sets the lr.
  void set_epoch(int64_t epoch);
  // The lr at an epoch.
  virtual double lr_at(int64_t epoch) const = 0;

 protected:
  void start();  // applies epoch 0; called by the subclasses' constructors
  // The optimizer's initial_lr (restored with its state from a checkpoint).
  double base_lr() const { return optimizer_.initial_lr(); }
  Optimizer& optimizer_;
  int64_t last_epoch_ = 0;
  double last_lr_ = 0;
};

// base * gamma ^ floor(epoch / step_size)
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  double lr_at(int64_t epoch) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// Linear warm-up: base * (start + (end - start) * min(epoch, total_iters) / total_iters).
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3, double end_factor = 1.0, int64_t total_iters = 5);
  double lr_at(int64_t epoch) const override;

 private:
  double start_, end_;
  int64_t total_;
};

// eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0);
  double lr_at(int64_t epoch) const override;

 private:
  int64_t t_max_;
  double eta_min_;
};

// base * lambda(epoch)
class LambdaLR : public LRScheduler {
 public:
  LambdaLR(Optimizer& optimizer, std::function<double(int64_t)> lambda);
  double lr_at(int64_t epoch) const override;

 private:
  std::function<double(int64_t)> lambda_;
};

// Runs schedulers[i] from milestone i - 1 on (each counting its epochs from
// its own start), as torch's SequentialLR: e.g. LinearLR warm-up for 100
// steps, then CosineAnnealingLR, with milestones {100}.
class SequentialLR : public LRScheduler {
 public:
  SequentialLR(Optimizer& optimizer, std::vector<std::unique_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones);
  double lr_at(int64_t epoch) const override;

 private:
  std::vector<std::unique_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

// ---- Checkpoints --------------------------------------------------------------------------
// One safetensors file, written atomically: "model.<name>" for the model's
// state_dict, "optimizer.<key>" for the optimizer's, and metadata "step",
// "generator.seed", "generator.offset" (when given) and any `extra` entries.
void save_checkpoint(const std::string& path, const nn::Module& model, const Optimizer* optimizer, int64_t step,
                     const Generator* generator = nullptr, const io::Metadata& extra = {});
// Loads what save_checkpoint wrote (the model strictly), restores the
// optimizer and the generator when given, and returns the metadata (with "step").
io::Metadata load_checkpoint(const std::string& path, nn::Module& model, Optimizer* optimizer = nullptr,
                             Generator* generator = nullptr);

}  // namespace attn::optim
