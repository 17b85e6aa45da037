// Convolution (im2col + GEMM) and pooling reference kernels, NCHW.
// Legend: N = batch, C = input channels, O = output channels, G = groups,
// (H, W) input, (oH, oW) output, (kH, kW) kernel.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/loop.h"

namespace attn::kernels::cpu {

namespace {

// cols (Cg*kH*kW, oH*oW) from one image's channel group x (Cg, H, W).
template <class T>
void im2col(const T* x, int64_t Cg, const Conv2dGeometry& g, T* cols) {
  const int64_t L = g.oH * g.oW;
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t ki = 0; ki < g.kH; ++ki)
      for (int64_t kj = 0; kj < g.kW; ++kj) {
        T* row = cols + ((c * g.kH + ki) * g.kW + kj) * L;
        for (int64_t oy = 0; oy < g.oH; ++oy) {
          const int64_t iy = oy * g.sH - g.pH + ki * g.dH;
          for (int64_t ox = 0; ox < g.oW; ++ox) {
            const int64_t ix = ox * g.sW - g.pW + kj * g.dW;
            row[oy * g.oW + ox] =
                (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) ? x[(c * g.H + iy) * g.W + ix] : T(0);
          }
        }
      }
}

// dx (Cg, H, W) += col2im(cols (Cg*kH*kW, oH*oW)).
template <class T>
void col2im(const T* cols, int64_t Cg, const Conv2dGeometry& g, T* dx) {
  const int64_t L = g.oH * g.oW;
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t ki = 0; ki < g.kH; ++ki)
      for (int64_t kj = 0; kj < g.kW; ++kj) {
        const T* row = cols + ((c * g.kH + ki) * g.kW + kj) * L;
        for (int64_t oy = 0; oy < g.oH; ++oy) {
          const int64_t iy = oy * g.sH - g.pH + ki * g.dH;
          if (iy < 0 || iy >= g.H) continue;
          for (int64_t ox = 0; ox < g.oW; ++ox) {
            const int64_t ix = ox * g.sW - g.pW + kj * g.dW;
            if (ix >= 0 && ix < g.W) dx[(c * g.H + iy) * g.W + ix] += row[oy * g.oW + ox];
          }
        }
      }
}

}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& bias, const Conv2dGeometry& g) {
  Tensor x = x_in.contiguous(), w = w_in.contiguous();
  Tensor y = Tensor::make({g.N, g.O, g.oH, g.oW}, x.dtype());
  const int64_t Cg = g.C / g.groups, Og = g.O / g.groups, L = g.oH * g.oW, Kc = Cg * g.kH * g.kW;
  dispatch_float(x.dtype(), "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* pw = w.data<T>();
    const T* pb = bias.defined() ? bias.contiguous().template data<T>() : nullptr;
    T* py = y.data<T>();
    detail::parallel_for(g.N * g.groups, 1, [&](int64_t b, int64_t e) {
      std::vector<T> cols(static_cast<size_t>(Kc * L));
      for (int64_t t = b; t < e; ++t) {
        const int64_t n = t / g.groups, gr = t % g.groups;
        im2col(px + (n * g.C + gr * Cg) * g.H * g.W, Cg, g, cols.data());
        T* out = py + (n * g.O + gr * Og) * L;
        gemm(false, false, Og, L, Kc, 1.0, pw + gr * Og * Kc, Kc, cols.data(), L, 0.0, out, L);
        if (pb)
          for (int64_t o = 0; o < Og; ++o)
            for (int64_t l = 0; l < L; ++l) out[o * L + l] += pb[gr * Og + o];
      }
    });
  });
  return y;
}

void conv2d_backward(const Tensor& grad_in, const Tensor& x_in, const Tensor& w_in, const Conv2dGeometry& g,
                     const Tensor& dx, const Tensor& dw, const Tensor& db) {
  Tensor x = x_in.contiguous(), w = w_in.contiguous(), grad = grad_in.contiguous();
  const int64_t Cg = g.C / g.groups, Og = g.O / g.groups, L = g.oH * g.oW, Kc = Cg * g.kH * g.kW;
  dispatch_float(x.dtype(), "conv2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* pw = w.data<T>();
    const T* pg = grad.data<T>();
    if (dx.defined()) {
      fill(dx, 0.0);
      T* pdx = dx.data<T>();
      detail::parallel_for(g.N * g.groups, 1, [&](int64_t b, int64_t e) {
        std::vector<T> cols(static_cast<size_t>(Kc * L));
        for (int64_t t = b; t < e; ++t) {
          const int64_t n = t / g.groups, gr = t % g.groups;
          // cols = W_g^T (Kc, Og) @ grad_g (Og, L)
          gemm(true, false, Kc, L, Og, 1.0, pw + gr * Og * Kc, Kc, pg + (n * g.O + gr * Og) * L, L, 0.0,
               cols.data(), L);
          col2im(cols.data(), Cg, g, pdx + (n * g.C + gr * Cg) * g.H * g.W);
        }
      });
    }
    if (dw.defined()) {
      fill(dw, 0.0);
      T* pdw = dw.data<T>();
      // Parallel over groups only; images are summed in order (deterministic).
      detail::parallel_for(g.groups, 1, [&](int64_t b, int64_t e) {
        std::vector<T> cols(static_cast<size_t>(Kc * L));
        for (int64_t gr = b; gr < e; ++gr)
          for (int64_t n = 0; n < g.N; ++n) {
            im2col(px + (n * g.C + gr * Cg) * g.H * g.W, Cg, g, cols.data());
            // dW_g (Og, Kc) += grad_g (Og, L) @ cols^T (L, Kc)
            gemm(false, true, Og, Kc, L, 1.0, pg + (n * g.O + gr * Og) * L, L, cols.data(), L, 1.0,
                 pdw + gr * Og * Kc, Kc);
          }
      });
    }
    if (db.defined()) {
      T* pdb = db.data<T>();
      for (int64_t o = 0; o < g.O; ++o) {
        double s = 0;
        for (int64_t n = 0; n < g.N; ++n)
          for (int64_t l = 0; l < L; ++l) s += pg[(n * g.O + o) * L + l];
        pdb[o] = static_cast<T>(s);
      }
    }
  });
}

std::pair<Tensor, Tensor> max_pool2d(const Tensor& x_in, const Pool2dGeometry& g) {
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::make({g.N, g.C, g.oH, g.oW}, x.dtype());
  Tensor idx = Tensor::make({g.N, g.C, g.oH, g.oW}, DType::Int64);
  dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    int64_t* pi = idx.data<int64_t>();
    detail::parallel_for(g.N * g.C, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const T* plane = px + p * g.H * g.W;
        for (int64_t oy = 0; oy < g.oH; ++oy)
          for (int64_t ox = 0; ox < g.oW; ++ox) {
            T best = -std::numeric_limits<T>::infinity();
            int64_t bi = -1;
            for (int64_t ki = 0; ki < g.kH; ++ki) {
              const int64_t iy = oy * g.sH - g.pH + ki * g.dH;
              if (iy < 0 || iy >= g.H) continue;
              for (int64_t kj = 0; kj < g.kW; ++kj) {
                const int64_t ix = ox * g.sW - g.pW + kj * g.dW;
                if (ix < 0 || ix >= g.W) continue;
                const T v = plane[iy * g.W + ix];
                if (bi < 0 || v > best || v != v) {
                  best = v;
                  bi = iy * g.W + ix;
                  if (v != v) goto done;
                }
              }
            }
          done:
            py[(p * g.oH + oy) * g.oW + ox] = best;
            pi[(p * g.oH + oy) * g.oW + ox] = bi;
          }
      }
    });
  });
  return {y, idx};
}

Tensor max_pool2d_backward(const Tensor& grad_in, const Tensor& indices, const Pool2dGeometry& g) {
  Tensor grad = grad_in.contiguous();
  Tensor dx = Tensor::make({g.N, g.C, g.H, g.W}, grad.dtype(), true);
  dispatch_float(grad.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = grad.data<T>();
    const int64_t* pi = indices.data<int64_t>();
    T* pd = dx.data<T>();
    detail::parallel_for(g.N * g.C, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p)
        for (int64_t o = 0; o < g.oH * g.oW; ++o) {
          const int64_t i = pi[p * g.oH * g.oW + o];
          if (i >= 0) pd[p * g.H * g.W + i] += pg[p * g.oH * g.oW + o];
        }
    });
  });
  return dx;
}

namespace {
// The window of output (oy, ox) clipped to the padded and to the real input,
// and its divisor, as PyTorch's avg_pool2d.
struct AvgWindow {
  int64_t y0, y1, x0, x1, div;
};
AvgWindow avg_window(const Pool2dGeometry& g, int64_t oy, int64_t ox) {
  int64_t y0 = oy * g.sH - g.pH, x0 = ox * g.sW - g.pW;
  int64_t y1 = std::min(y0 + g.kH, g.H + g.pH), x1 = std::min(x0 + g.kW, g.W + g.pW);
  const int64_t pool = (y1 - y0) * (x1 - x0);
  y0 = std::max<int64_t>(y0, 0);
  x0 = std::max<int64_t>(x0, 0);
  y1 = std::min(y1, g.H);
  x1 = std::min(x1, g.W);
  int64_t div = g.divisor_override ? g.divisor_override : (g.count_include_pad ? pool : (y1 - y0) * (x1 - x0));
  return {y0, y1, x0, x1, div};
}
}  // namespace

Tensor avg_pool2d(const Tensor& x_in, const Pool2dGeometry& g) {
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::make({g.N, g.C, g.oH, g.oW}, x.dtype());
  dispatch_float(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    detail::parallel_for(g.N * g.C, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p)
        for (int64_t oy = 0; oy < g.oH; ++oy)
          for (int64_t ox = 0; ox < g.oW; ++ox) {
            AvgWindow w = avg_window(g, oy, ox);
            double s = 0;
            for (int64_t iy = w.y0; iy < w.y1; ++iy)
              for (int64_t ix = w.x0; ix < w.x1; ++ix) s += px[(p * g.H + iy) * g.W + ix];
            py[(p * g.oH + oy) * g.oW + ox] = static_cast<T>(w.div > 0 ? s / w.div : 0.0);
          }
    });
  });
  return y;
}

Tensor avg_pool2d_backward(const Tensor& grad_in, const Pool2dGeometry& g) {
  Tensor grad = grad_in.contiguous();
  Tensor dx = Tensor::make({g.N, g.C, g.H, g.W}, grad.dtype(), true);
  dispatch_float(grad.dtype(), "avg_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = grad.data<T>();
    T* pd = dx.data<T>();
    detail::parallel_for(g.N * g.C, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p)
        for (int64_t oy = 0; oy < g.oH; ++oy)
          for (int64_t ox = 0; ox < g.oW; ++ox) {
            AvgWindow w = avg_window(g, oy, ox);
            if (w.div <= 0) continue;
            const T v = static_cast<T>(pg[(p * g.oH + oy) * g.oW + ox] / static_cast<double>(w.div));
            for (int64_t iy = w.y0; iy < w.y1; ++iy)
              for (int64_t ix = w.x0; ix < w.x1; ++ix) pd[(p * g.H + iy) * g.W + ix] += v;
          }
    });
  });
  return dx;
}

namespace {
// Calls f(plane, output index, y0, y1, x0, x1) for every output of an
// adaptive pool from (H, W) to (oH, oW): window [floor(o*in/out), ceil((o+1)*in/out)).
template <class F>
void for_each_adaptive_window(int64_t P, int64_t oH, int64_t oW, int64_t H, int64_t W, F f) {
  detail::parallel_for(P, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      for (int64_t oy = 0; oy < oH; ++oy)
        for (int64_t ox = 0; ox < oW; ++ox)
          f(p, (p * oH + oy) * oW + ox, (oy * H) / oH, ((oy + 1) * H + oH - 1) / oH, (ox * W) / oW,
            ((ox + 1) * W + oW - 1) / oW);
  });
}
}  // namespace

Tensor adaptive_avg_pool2d(const Tensor& x_in, int64_t oH, int64_t oW) {
  Tensor x = x_in.contiguous();
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  Tensor y = Tensor::make({x.size(0), x.size(1), oH, oW}, x.dtype());
  dispatch_float(x.dtype(), "adaptive_avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    for_each_adaptive_window(P, oH, oW, H, W, [&](int64_t p, int64_t o, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
      double s = 0;
      for (int64_t iy = y0; iy < y1; ++iy)
        for (int64_t ix = x0; ix < x1; ++ix) s += px[(p * H + iy) * W + ix];
      py[o] = static_cast<T>(s / static_cast<double>((y1 - y0) * (x1 - x0)));
    });
  });
  return y;
}

Tensor adaptive_avg_pool2d_backward(const Tensor& grad_in, int64_t H, int64_t W) {
  Tensor grad = grad_in.contiguous();
  const int64_t P = grad.size(0) * grad.size(1), oH = grad.size(2), oW = grad.size(3);
  Tensor dx = Tensor::make({grad.size(0), grad.size(1), H, W}, grad.dtype(), true);
  dispatch_float(grad.dtype(), "adaptive_avg_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = grad.data<T>();
    T* pd = dx.data<T>();
    for_each_adaptive_window(P, oH, oW, H, W, [&](int64_t p, int64_t o, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
      const T v = static_cast<T>(pg[o] / static_cast<double>((y1 - y0) * (x1 - x0)));
      for (int64_t iy = y0; iy < y1; ++iy)
        for (int64_t ix = x0; ix < x1; ++ix) pd[(p * H + iy) * W + ix] += v;
    });
  });
  return dx;
}

}  // namespace attn::kernels::cpu
