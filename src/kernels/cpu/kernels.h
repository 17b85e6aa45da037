// Internal: the CPU kernels. Plain reference implementations (float64
// capable, the test oracle) plus BLAS for GEMM. Kernels know nothing of
// autograd; ops in src/ops validate inputs before calling them, so kernels
// assume well-formed arguments.
//
// Legend: M = rows, N = row length / columns, K = inner GEMM dim, B = batch.
#pragma once

#include <cstdint>
#include <utility>

#include "attn/generator.h"
#include "attn/tensor.h"

namespace attn::kernels::cpu {

// ---- the machine ---------------------------------------------------------------
// The SIMD target the attention parts run ("AVX-512 (Highway AVX3)", "AVX2+FMA
// (Highway AVX2)", ...: the best compiled target this CPU supports, chosen at
// run time), with the other kernels' compile-time target where it differs,
// and OpenBLAS's run-time kernel.
const char* simd_target();
// Applies ATTN_SIMD (avx512, avx2 or sse4: the best target at or below it)
// once, before the attention parts' first dispatch.
void choose_simd_target();
const char* blas_core();

// ---- copies ------------------------------------------------------------------
// dst[i] = convert(src[i]); src has dst's shape (a broadcast view is fine).
void copy(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);
// dst (contiguous, 1-d): start + i * step (float or int64).
void fill_arange(const Tensor& dst, double start, double step);
// dst (contiguous, 1-d, float): n evenly spaced values from start to end; the
// second half counts back from end, as PyTorch, so both ends are exact.
void fill_linspace(const Tensor& dst, double start, double end);

// ---- elementwise ---------------------------------------------------------------
enum class Unary { Neg, Exp, Log, Log1p, Sqrt, Rsqrt, Abs, Sign, Sin, Cos, Tanh, Sigmoid, Relu,
                   Gelu, GeluTanh, Elu, LeakyRelu, Pow, Clamp, Softplus };
// y = op(x; p0, p1). Params: Elu alpha = p0; LeakyRelu slope = p0; Pow exponent = p0;
// Clamp min = p0, max = p1 (use -inf / inf for none); Softplus beta = p0,
// threshold = p1. Result contiguous.
Tensor unary(Unary op, const Tensor& x, double p0 = 0, double p1 = 0);
// grad * dy/dx given x and y = op(x); all three of the same shape.
Tensor unary_backward(Unary op, const Tensor& grad, const Tensor& x, const Tensor& y, double p0 = 0,
                      double p1 = 0);

enum class Binary { Add, Sub, Mul, Div, Max, Min, Pow };
// a and b broadcast to out_shape; same dtype (float, or int64 for Add/Sub/Mul/Max/Min).
Tensor binary(Binary op, const Tensor& a, const Tensor& b, const Shape& out_shape);

enum class Compare { Eq, Ne, Lt, Le, Gt, Ge };
Tensor compare(Compare op, const Tensor& a, const Tensor& b, const Shape& out_shape);  // -> bool

enum class Logical { And, Or };
Tensor logical(Logical op, const Tensor& a, const Tensor& b, const Shape& out_shape);
Tensor logical_not(const Tensor& a);

// cond (bool) ? a : b, all broadcast to out_shape.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, const Shape& out_shape);

// Keeps the lower (upper = false: j - i <= k) or upper (j - i >= k) triangle
// of the last two dims; zero elsewhere.
Tensor tri(const Tensor& x, int64_t k, bool upper);

// ---- reductions ------------------------------------------------------------------
enum class Reduce { Sum, Mean, Amax, Amin, LogSumExp, Var };
// x: contiguous (M, N) -> (M). Var divides by N - correction (NaN when <= 0).
// Float sums accumulate in double.
Tensor reduce_rows(Reduce op, const Tensor& x, double correction = 0);
// Sum (or Mean) of a contiguous x viewed as (O, R, I) over R -> (O, I): each
// output accumulates its R entries in order in double, as reduce_rows does,
// but the I outputs of a row advance together (vectorised, no transpose).
Tensor reduce_mid(Reduce op, const Tensor& x, int64_t O, int64_t R, int64_t I);
// x: contiguous (M, N), N >= 1 -> (values (M), int64 indices (M)) of the first
// max (want_max) or min. NaN counts as the extreme, as PyTorch.
std::pair<Tensor, Tensor> argreduce_rows(bool want_max, const Tensor& x);

// Softmax (or log-softmax) along `dim` of a contiguous x.
Tensor softmax(const Tensor& x, int64_t dim, bool log);
// Given y = softmax(x) (or log_softmax), grad_x from grad_y; both contiguous.
Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim, bool log);

// ---- GEMM (BLAS) ---------------------------------------------------------------
// C (M, N) = alpha * op(A) (M, K) @ op(B) (K, N) + beta * C, row-major.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, double beta, float* C, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
          int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);
// out (B, M, N) contiguous = a (B, M, K) @ b (B, K, N), a and b any strides
// (batch stride 0 broadcasts). Copies an operand only when neither it nor its
// transpose has unit inner stride. bias (N), contiguous, when defined, is
// added to every row (each tile starts from it: no extra pass over out).
void bmm(const Tensor& a, const Tensor& b, const Tensor& out, const Tensor& bias = {});

// ---- indexing ----------------------------------------------------------------------
// index: int64 (n), values checked by the op.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out.index_select(dim, index) += src, in place; out contiguous.
void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
// out.index_select(dim, index) = max(itself, src), in place; out contiguous.
void index_amax(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
// out[i][j] = x[i][index[i][j]] along dim; index int64 with x's rank.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// out[...index...] += src along dim, in place; out contiguous.
void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
// Relative distances (Shaw et al.), over rows of the last two dims, all
// contiguous: expand: out (R, L, S)[i][j] = r (R, L, 2K + 1)[i][clip(j - i, -K, K) + K];
// reduce (its adjoint): out (R, L, 2K + 1)[i][d] = sum of p (R, L, S)[i][j]
// over the j with clip(j - i, -K, K) + K = d.
void relative_expand(const Tensor& r, const Tensor& out, int64_t K);
void relative_reduce(const Tensor& p, const Tensor& out, int64_t K);

// ---- normalisation -------------------------------------------------------------------
// x: contiguous (M, N); weight, bias: (N) or undefined. Fills y (M, N),
// mean (M), rstd (M), both float64 whatever x's dtype: the backward recomputes
// x - mean, which cancels badly for short rows if mean is rounded to float32.
void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y,
                const Tensor& mean, const Tensor& rstd);
// Gradients of layer_norm; any of dx, dw, db may be undefined (not wanted).
void layer_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, const Tensor& dx, const Tensor& dw, const Tensor& db);

// ---- random ---------------------------------------------------------------------------
// Element i of a draw depends on (gen seed, first counter block, i) only.
void fill_normal(const Tensor& t, double mean, double std, Generator& gen);
void fill_uniform(const Tensor& t, double low, double high, Generator& gen);
void fill_randint(const Tensor& t, int64_t low, int64_t high, Generator& gen);
// 1/keep where uniform < keep, else 0 (the dropout multiplier).
// Element i takes word (first + i') % 4 of block first + i' / 4, i' = i +
// index_offset, first = the generator's reserve of ceil(reserve_elems / 4)
// blocks (reserve_elems < 0: t.numel()).
void fill_dropout_mask(const Tensor& t, double keep, Generator& gen, int64_t index_offset = 0,
                       int64_t reserve_elems = -1);

// ---- convolution and pooling ------------------------------------------------------------
struct Conv2dGeometry {
  int64_t N, C, H, W;           // input
  int64_t O, kH, kW;            // output channels, kernel
  int64_t sH, sW, pH, pW, dH, dW, groups;
  int64_t oH, oW;               // output
};
// y (N, O, oH, oW) = conv2d(x (N, C, H, W), w (O, C/groups, kH, kW)) + bias (O).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dGeometry& g);
// Gradients; any of dx, dw, db may be undefined.
void conv2d_backward(const Tensor& grad, const Tensor& x, const Tensor& w, const Conv2dGeometry& g,
                     const Tensor& dx, const Tensor& dw, const Tensor& db);

struct Pool2dGeometry {
  int64_t N, C, H, W;
  int64_t kH, kW, sH, sW, pH, pW, dH, dW;
  int64_t oH, oW;
  bool count_include_pad = true;
  int64_t divisor_override = 0;  // 0: none
};
// (y, argmax indices into H*W) for x (N, C, H, W) contiguous.
std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const Pool2dGeometry& g);
Tensor max_pool2d_backward(const Tensor& grad, const Tensor& indices, const Pool2dGeometry& g);
Tensor avg_pool2d(const Tensor& x, const Pool2dGeometry& g);
Tensor avg_pool2d_backward(const Tensor& grad, const Pool2dGeometry& g);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t oH, int64_t oW);
Tensor adaptive_avg_pool2d_backward(const Tensor& grad, int64_t H, int64_t W);

// ---- optimizer updates (parameters, gradients and state contiguous, one dtype) ----------
struct SgdHyper {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, maximize = false;
  bool first = false;  // the momentum buffer's first step: buf = g
};
// buf undefined: no momentum.
void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdHyper& h);
struct AdamHyper {
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  bool decoupled = false, amsgrad = false, maximize = false;
  int64_t step = 1;  // this step's number, from 1
};
// max_exp_avg_sq undefined unless amsgrad.
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const Tensor& max_exp_avg_sq, const AdamHyper& h);

}  // namespace attn::kernels::cpu
