// Tensor ops: free functions mirroring torch.* names and semantics.
//
// Every op checks its inputs and throws attn::Error beginning with the op's
// name; differentiable ops record their backward when an input requires grad.
// Binary ops broadcast as PyTorch. Floating ops need float32 or float64 and,
// unlike PyTorch, do not promote mixed dtypes: both operands must have the same
// dtype (a C++ scalar takes the tensor's dtype).
#pragma once

#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "attn/generator.h"
#include "attn/tensor.h"

namespace attn {

// ---- factories -------------------------------------------------------------
Tensor empty(const Shape& shape, TensorOptions options = {});
Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
Tensor scalar_tensor(double value, TensorOptions options = {});  // 0-d
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor empty_like(const Tensor& t);
// [0, end) or [start, end) by step; the default dtype is int64, as torch.arange with integers.
Tensor arange(double end, TensorOptions options = kInt64);
Tensor arange(double start, double end, double step = 1.0, TensorOptions options = kInt64);
Tensor linspace(double start, double end, int64_t steps, TensorOptions options = {});
Tensor eye(int64_t n, int64_t m = -1, TensorOptions options = {});
// Random draws from `gen` (the default generator when null).
Tensor randn(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);
Tensor rand(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions options = kInt64,
               Generator* gen = nullptr);
Tensor randn_like(const Tensor& t, Generator* gen = nullptr);
Tensor rand_like(const Tensor& t, Generator* gen = nullptr);
// Copies `data` into a new tensor of `shape` (a 1-d shape of data.size() when empty).
template <class T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape = {});
Tensor from_vector(const std::vector<int>& data, const Shape& shape = {});  // to int64

// ---- elementwise -----------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& exponent);
Tensor pow(const Tensor& a, double exponent);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor log1p(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor sign(const Tensor& a);
Tensor sin(const Tensor& a);
Tensor cos(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor relu(const Tensor& a);
// Gradient passes where min <= a <= max (inclusive), as PyTorch.
Tensor clamp(const Tensor& a, std::optional<double> min, std::optional<double> max);
Tensor clamp_min(const Tensor& a, double min);
Tensor clamp_max(const Tensor& a, double max);

// Comparisons give bool tensors (any matching dtypes; not differentiable).
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& a);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
bool equal(const Tensor& a, const Tensor& b);  // same shape, dtype and values
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

// condition ? a : b, all three broadcast; condition is bool.
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& condition, const Tensor& a, double b);
Tensor where(const Tensor& condition, double a, const Tensor& b);
// a with `value` where mask (bool, broadcastable to a) is true.
Tensor masked_fill(const Tensor& a, const Tensor& mask, double value);

// ---- reductions (dims may be negative; an empty dims list reduces all) -----
Tensor sum(const Tensor& a);
Tensor sum(const Tensor& a, const Shape& dims, bool keepdim = false);
Tensor mean(const Tensor& a);
Tensor mean(const Tensor& a, const Shape& dims, bool keepdim = false);
// Unbiased by default (correction = 1), as torch.var; empty dims reduce all.
Tensor var(const Tensor& a, const Shape& dims, int64_t correction = 1, bool keepdim = false);
Tensor var(const Tensor& a);  // over all elements, unbiased
Tensor std(const Tensor& a, const Shape& dims, int64_t correction = 1, bool keepdim = false);
// Gradient split evenly among tied maxima, as torch.amax.
Tensor amax(const Tensor& a, const Shape& dims, bool keepdim = false);
Tensor amin(const Tensor& a, const Shape& dims, bool keepdim = false);
Tensor max(const Tensor& a);  // 0-d, gradient split among ties
Tensor min(const Tensor& a);
// (values, indices) along dim; the gradient goes to the index (the first maximum).
std::tuple<Tensor, Tensor> max(const Tensor& a, int64_t dim, bool keepdim = false);
std::tuple<Tensor, Tensor> min(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& a);  // index into the flattened tensor
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& a);
Tensor argmin(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor logsumexp(const Tensor& a, const Shape& dims, bool keepdim = false);

// ---- linear algebra (BLAS) ---------------------------------------------------
// torch.matmul: 1-d and 2-d operands, and batched operands whose batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor mm(const Tensor& a, const Tensor& b);   // (n, k) @ (k, m)
Tensor bmm(const Tensor& a, const Tensor& b);  // (B, n, k) @ (B, k, m)

// ---- shapes, joins and indexing -----------------------------------------------
Tensor reshape(const Tensor& a, const Shape& shape);
Tensor transpose(const Tensor& a, int64_t d0, int64_t d1);
Tensor permute(const Tensor& a, const Shape& dims);
Tensor unsqueeze(const Tensor& a, int64_t dim);
Tensor squeeze(const Tensor& a, int64_t dim);
Tensor flatten(const Tensor& a, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& a, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& split_sizes, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& a, int64_t chunks, int64_t dim = 0);
// index: int64 1-d.
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index);
// a with src's slices added at index along dim: out.select(dim, index[j]) +=
// src.select(dim, j), repeated indices summed (as torch.index_add). index:
// int64 (n); src: a's shape with n in dim. Differentiable in a and src.
Tensor index_add(const Tensor& a, int64_t dim, const Tensor& index, const Tensor& src);
// As torch.index_reduce with reduce "amax" (the only one here): a with each
// slice replaced by the max of itself (include_self) and the src slices
// indexed to it. Not differentiable: attn::Error if an input requires grad in
// grad mode (use it on detached values, e.g. a softmax's shift).
Tensor index_reduce(const Tensor& a, int64_t dim, const Tensor& index, const Tensor& src,
                    const std::string& reduce = "amax", bool include_self = true);
// index: int64 with a's number of dims.
Tensor gather(const Tensor& a, int64_t dim, const Tensor& index);
// Out of place: a copy of a with src added at index along dim.
Tensor scatter_add(const Tensor& a, int64_t dim, const Tensor& index, const Tensor& src);
// Constant padding, pads given from the last dim backwards as torch.nn.functional.pad:
// {left, right, top, bottom, ...}. Negative pads crop.
Tensor pad(const Tensor& a, const std::vector<int64_t>& pads, double value = 0.0);
Tensor tril(const Tensor& a, int64_t diagonal = 0);
Tensor triu(const Tensor& a, int64_t diagonal = 0);
// Sums a to `shape` (the reverse of broadcasting), as autograd needs.
Tensor sum_to(const Tensor& a, const Shape& shape);
// The shape a and b broadcast to; attn::Error naming `op` when they do not.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op = "broadcast");

// ---- operators -----------------------------------------------------------------
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator<(const Tensor& a, const Tensor& b);
Tensor operator<=(const Tensor& a, const Tensor& b);
Tensor operator>(const Tensor& a, const Tensor& b);
Tensor operator>=(const Tensor& a, const Tensor& b);
Tensor operator==(const Tensor& a, const Tensor& b);
Tensor operator!=(const Tensor& a, const Tensor& b);
Tensor operator<(const Tensor& a, double b);
Tensor operator<=(const Tensor& a, double b);
Tensor operator>(const Tensor& a, double b);
Tensor operator>=(const Tensor& a, double b);
Tensor operator==(const Tensor& a, double b);
Tensor operator!=(const Tensor& a, double b);
Tensor operator~(const Tensor& a);  // logical_not of a bool tensor
Tensor operator&(const Tensor& a, const Tensor& b);
Tensor operator|(const Tensor& a, const Tensor& b);

}  // namespace attn
