// Row reductions, softmax and layer norm: reference kernels. Sums of float32
// accumulate in double so the reference is at least as exact as PyTorch.
#include <cmath>
#include <limits>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/loop.h"

namespace attn::kernels::cpu {

Tensor reduce_mid(Reduce op, const Tensor& x, int64_t O, int64_t R, int64_t I) {
  Tensor out = Tensor::make({O, I}, x.dtype());
  dispatch_float(x.dtype(), "reduce", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* po = out.data<T>();
    constexpr int64_t kChunk = 512;  // outputs per task: their double sums stay in L1
    const int64_t chunks = (I + kChunk - 1) / kChunk;
    const double div = op == Reduce::Mean ? static_cast<double>(R) : 1.0;
    detail::parallel_for(O * chunks, std::max<int64_t>(1, 16384 / std::max<int64_t>(R * kChunk, 1)),
                         [&](int64_t b, int64_t e) {
      double acc[kChunk];
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / chunks, c0 = (t % chunks) * kChunk, n = std::min(kChunk, I - c0);
        std::fill(acc, acc + n, 0.0);
        const T* base = px + o * R * I + c0;
        for (int64_t r = 0; r < R; ++r) {
          const T* row = base + r * I;
          for (int64_t c = 0; c < n; ++c) acc[c] += static_cast<double>(row[c]);
        }
        T* dst = po + o * I + c0;
        for (int64_t c = 0; c < n; ++c) dst[c] = static_cast<T>(op == Reduce::Mean ? acc[c] / div : acc[c]);
      }
    });
  });
  return out;
}

Tensor reduce_rows(Reduce op, const Tensor& x, double correction) {
  const int64_t M = x.size(0), N = x.size(1);
  Tensor out = Tensor::make({M}, x.dtype());
  dispatch_float(x.dtype(), "reduce", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* po = out.data<T>();
    detail::parallel_for(M, std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1)), [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m) {
        const T* r = px + m * N;
        switch (op) {
          case Reduce::Sum:
          case Reduce::Mean: {
            double s = 0;
            for (int64_t j = 0; j < N; ++j) s += r[j];
            po[m] = static_cast<T>(op == Reduce::Mean ? s / static_cast<double>(N) : s);
            break;
          }
          case Reduce::Amax:
          case Reduce::Amin: {
            const bool mx = op == Reduce::Amax;
            T v = r[0];
            for (int64_t j = 1; j < N; ++j) {
              if (v != v) break;
              if (r[j] != r[j] || (mx ? r[j] > v : r[j] < v)) v = r[j];
            }
            po[m] = v;
            break;
          }
          case Reduce::LogSumExp: {
            double mx = -std::numeric_limits<double>::infinity();
            for (int64_t j = 0; j < N; ++j) mx = std::max<double>(mx, r[j]);
            if (std::isinf(mx)) {  // all -inf (or +inf present): the max is the answer
              po[m] = static_cast<T>(mx);
              break;
            }
            double s = 0;
            for (int64_t j = 0; j < N; ++j) s += std::exp(static_cast<double>(r[j]) - mx);
            po[m] = static_cast<T>(mx + std::log(s));
            break;
          }
          case Reduce::Var: {
            double mean = 0;
            for (int64_t j = 0; j < N; ++j) mean += r[j];
            mean /= static_cast<double>(N);
            double ss = 0;
            for (int64_t j = 0; j < N; ++j) {
              double d = r[j] - mean;
              ss += d * d;
            }
            double denom = static_cast<double>(N) - correction;
            po[m] = static_cast<T>(denom > 0 ? ss / denom : std::numeric_limits<double>::quiet_NaN());
            break;
          }
        }
      }
    });
  });
  return out;
}

std::pair<Tensor, Tensor> argreduce_rows(bool want_max, const Tensor& x) {
  const int64_t M = x.size(0), N = x.size(1);
  Tensor vals = Tensor::make({M}, x.dtype());
  Tensor idx = Tensor::make({M}, DType::Int64);
  dispatch_numeric(x.dtype(), "argmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* pv = vals.data<T>();
    int64_t* pi = idx.data<int64_t>();
    for (int64_t m = 0; m < M; ++m) {
      const T* r = px + m * N;
      int64_t best = 0;
      for (int64_t j = 1; j < N; ++j) {
        if (r[best] != r[best]) break;  // NaN wins
        if (r[j] != r[j] || (want_max ? r[j] > r[best] : r[j] < r[best])) best = j;
      }
      pv[m] = r[best];
      pi[m] = best;
    }
  });
  return {vals, idx};
}

namespace {
// Views a contiguous tensor as (outer, n, inner) around `dim`.
void split_dims(const Tensor& x, int64_t dim, int64_t& outer, int64_t& n, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  n = x.dim() == 0 ? 1 : x.size(dim);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim, bool log) {
  Tensor y = Tensor::make(x.shape(), x.dtype());
  int64_t outer, n, inner;
  split_dims(x, dim, outer, n, inner);
  dispatch_float(x.dtype(), "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    detail::parallel_for(outer * inner, std::max<int64_t>(1, 8192 / std::max<int64_t>(n, 1)),
                         [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / inner, i = t % inner;
        const T* r = px + o * n * inner + i;
        T* w = py + o * n * inner + i;
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, r[j * inner]);
        if (mx == -std::numeric_limits<T>::infinity()) mx = 0;  // all -inf: keep NaN-free exp
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<double>(r[j * inner] - mx));
        if (log) {
          const T lse = static_cast<T>(std::log(s)) + mx;
          for (int64_t j = 0; j < n; ++j) w[j * inner] = r[j * inner] - lse;
        } else {
          const double inv = 1.0 / s;
          for (int64_t j = 0; j < n; ++j)
            w[j * inner] = static_cast<T>(std::exp(static_cast<double>(r[j * inner] - mx)) * inv);
        }
      }
    });
  });
  return y;
}

Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim, bool log) {
  Tensor gx = Tensor::make(y.shape(), y.dtype());
  int64_t outer, n, inner;
  split_dims(y, dim, outer, n, inner);
  dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = grad.data<T>();
    const T* py = y.data<T>();
    T* po = gx.data<T>();
    detail::parallel_for(outer * inner, std::max<int64_t>(1, 8192 / std::max<int64_t>(n, 1)),
                         [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t base = (t / inner) * n * inner + t % inner;
        double s = 0;
        if (log) {
          // dx = g - exp(y) * sum(g)
          for (int64_t j = 0; j < n; ++j) s += pg[base + j * inner];
          for (int64_t j = 0; j < n; ++j) {
            const int64_t k = base + j * inner;
            po[k] = static_cast<T>(pg[k] - std::exp(static_cast<double>(py[k])) * s);
          }
        } else {
          // dx = y * (g - sum(g * y))
          for (int64_t j = 0; j < n; ++j) s += static_cast<double>(pg[base + j * inner]) * py[base + j * inner];
          for (int64_t j = 0; j < n; ++j) {
            const int64_t k = base + j * inner;
            po[k] = static_cast<T>(py[k] * (pg[k] - s));
          }
        }
      }
    });
  });
  return gx;
}

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y,
                const Tensor& mean, const Tensor& rstd) {
  const int64_t M = x.size(0), N = x.size(1);
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    T* py = y.data<T>();
    double* pm = mean.data<double>();
    double* pr = rstd.data<double>();
    // Sums in float64, vectorised (omp simd reductions: a fixed order for a
    // given build, whatever the thread count); the row's mean and variance
    // are kept for the backward.
    detail::parallel_for(M, std::max<int64_t>(1, 8192 / std::max<int64_t>(N, 1)), [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m) {
        const T* r = px + m * N;
        double mu = 0;
#pragma omp simd reduction(+ : mu)
        for (int64_t j = 0; j < N; ++j) mu += static_cast<double>(r[j]);
        mu /= static_cast<double>(N);
        double var = 0;
#pragma omp simd reduction(+ : var)
        for (int64_t j = 0; j < N; ++j) {
          const double d = static_cast<double>(r[j]) - mu;
          var += d * d;
        }
        var /= static_cast<double>(N);
        const double rs = 1.0 / std::sqrt(var + eps);
        pm[m] = mu;
        pr[m] = rs;
        T* o = py + m * N;
        if (pw && pb) {
#pragma omp simd
          for (int64_t j = 0; j < N; ++j)
            o[j] = static_cast<T>((static_cast<double>(r[j]) - mu) * rs * pw[j] + pb[j]);
        } else if (pw) {
#pragma omp simd
          for (int64_t j = 0; j < N; ++j) o[j] = static_cast<T>((static_cast<double>(r[j]) - mu) * rs * pw[j]);
        } else if (pb) {
#pragma omp simd
          for (int64_t j = 0; j < N; ++j) o[j] = static_cast<T>((static_cast<double>(r[j]) - mu) * rs + pb[j]);
        } else {
#pragma omp simd
          for (int64_t j = 0; j < N; ++j) o[j] = static_cast<T>((static_cast<double>(r[j]) - mu) * rs);
        }
      }
    });
  });
}

void layer_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, const Tensor& dx, const Tensor& dw, const Tensor& db) {
  const int64_t M = x.size(0), N = x.size(1);
  dispatch_float(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = grad.data<T>();
    const T* px = x.data<T>();
    const double* pm = mean.data<double>();
    const double* pr = rstd.data<double>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    if (dx.defined()) {
      T* pdx = dx.data<T>();
      detail::parallel_for(M, std::max<int64_t>(1, 8192 / std::max<int64_t>(N, 1)), [&](int64_t b, int64_t e) {
        for (int64_t m = b; m < e; ++m) {
          // xhat = (x - mu) * rs; gxhat = g * w;
          // dx = rs * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))
          const T* g = pg + m * N;
          const T* r = px + m * N;
          const double mu = pm[m], rs = pr[m];
          double s1 = 0, s2 = 0;
          const T one = T(1);
#pragma omp simd reduction(+ : s1, s2)
          for (int64_t j = 0; j < N; ++j) {
            const double gh = static_cast<double>(g[j]) * (pw ? pw[j] : one);
            s1 += gh;
            s2 += gh * (static_cast<double>(r[j]) - mu) * rs;
          }
          s1 /= static_cast<double>(N);
          s2 /= static_cast<double>(N);
          T* o = pdx + m * N;
#pragma omp simd
          for (int64_t j = 0; j < N; ++j) {
            const double gh = static_cast<double>(g[j]) * (pw ? pw[j] : one);
            const double xh = (static_cast<double>(r[j]) - mu) * rs;
            o[j] = static_cast<T>(rs * (gh - s1 - xh * s2));
          }
        }
      });
    }
    if (dw.defined() || db.defined()) {
      T* pdw = dw.defined() ? dw.data<T>() : nullptr;
      T* pdb = db.defined() ? db.data<T>() : nullptr;
      detail::parallel_for(N, 64, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) {
          double sw = 0, sb = 0;
          for (int64_t m = 0; m < M; ++m) {
            const double g = pg[m * N + j];
            sw += g * (px[m * N + j] - pm[m]) * pr[m];
            sb += g;
          }
          if (pdw) pdw[j] = static_cast<T>(sw);
          if (pdb) pdb[j] = static_cast<T>(sb);
        }
      });
    }
  });
}

}  // namespace attn::kernels::cpu
