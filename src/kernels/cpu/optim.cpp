// Optimizer updates, element by element in the parameter's dtype, in the
// order of operations of torch.optim's single-tensor path (so float32
// results round as PyTorch's do, up to fused multiply-adds).
#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/loop.h"

namespace attn::kernels::cpu {

void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdHyper& h) {
  dispatch_float(param.dtype(), "SGD", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = param.data<T>();
    const T* gr = grad.data<T>();
    T* b = buf.defined() ? buf.data<T>() : nullptr;
    const T lr = static_cast<T>(-h.lr), wd = static_cast<T>(h.weight_decay), mom = static_cast<T>(h.momentum);
    const T damp = static_cast<T>(1.0 - h.dampening);
    detail::parallel_for(param.numel(), 1 << 14, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) {
        T g = h.maximize ? -gr[i] : gr[i];
        if (h.weight_decay != 0) g = g + wd * p[i];
        if (b) {
          if (h.first) {
            b[i] = g;
          } else {
            const T t = b[i] * mom;
            b[i] = t + damp * g;
          }
          g = h.nesterov ? g + mom * b[i] : b[i];
        }
        p[i] = p[i] + lr * g;
      }
    });
  });
}

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const Tensor& max_exp_avg_sq, const AdamHyper& h) {
  dispatch_float(param.dtype(), "Adam", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = param.data<T>();
    const T* gr = grad.data<T>();
    T* m = exp_avg.data<T>();
    T* v = exp_avg_sq.data<T>();
    T* vmax = max_exp_avg_sq.defined() ? max_exp_avg_sq.data<T>() : nullptr;
    const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
    const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
    const T step_size = static_cast<T>(-(h.lr / bc1)), bc2_sqrt = static_cast<T>(std::sqrt(bc2));
    const T b1 = static_cast<T>(h.beta1), b2 = static_cast<T>(h.beta2);
    const T c1 = static_cast<T>(1.0 - h.beta1), c2 = static_cast<T>(1.0 - h.beta2);
    const T wd = static_cast<T>(h.weight_decay), eps = static_cast<T>(h.eps);
    const T decay = static_cast<T>(1.0 - h.lr * h.weight_decay);
    detail::parallel_for(param.numel(), 1 << 14, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) {
        T g = h.maximize ? -gr[i] : gr[i];
        if (h.decoupled) {
          p[i] = p[i] * decay;
        } else if (h.weight_decay != 0) {
          g = g + wd * p[i];
        }
        const T mt = m[i] * b1, vt = v[i] * b2;
        m[i] = mt + c1 * g;
        v[i] = vt + c2 * g * g;
        T second = v[i];
        if (vmax) second = vmax[i] = std::max(vmax[i], v[i]);
        const T denom = std::sqrt(second) / bc2_sqrt + eps;
        p[i] = p[i] + step_size * (m[i] / denom);
      }
    });
  });
}

}  // namespace attn::kernels::cpu
