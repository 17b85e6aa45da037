// Internal: strided N-d iteration shared by the elementwise kernels, and
// dtype dispatch. Operands are described by (base pointer, strides in
// elements); broadcast dims have stride 0.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "attn/tensor.h"
#include "core/parallel.h"

namespace attn::kernels::cpu {

template <class T> struct TypeTag { using type = T; };

// Calls f(TypeTag<T>{}) for float32 / float64; attn::Error naming `op` otherwise.
template <class F>
decltype(auto) dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::Float32: return f(TypeTag<float>{});
    case DType::Float64: return f(TypeTag<double>{});
    default: break;
  }
  throw Error(detail::str(op, ": expected a float32 or float64 tensor, got ", dtype_name(dt)));
}

// float32, float64, int64
template <class F>
decltype(auto) dispatch_numeric(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::Float32: return f(TypeTag<float>{});
    case DType::Float64: return f(TypeTag<double>{});
    case DType::Int64: return f(TypeTag<int64_t>{});
    default: break;
  }
  throw Error(detail::str(op, ": expected a float32, float64 or int64 tensor, got ", dtype_name(dt)));
}

template <class F>
decltype(auto) dispatch_all(DType dt, F&& f) {
  switch (dt) {
    case DType::Float32: return f(TypeTag<float>{});
    case DType::Float64: return f(TypeTag<double>{});
    case DType::Int64: return f(TypeTag<int64_t>{});
    case DType::Bool: return f(TypeTag<bool>{});
    case DType::BFloat16: return f(TypeTag<BFloat16>{});
  }
  throw Error("dispatch: unknown dtype");
}

// Strides of t viewed with `shape` (t's shape broadcast to it: stride 0 on new
// or size-1 dims).
inline Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape st(shape.size(), 0);
  const int64_t off = static_cast<int64_t>(shape.size()) - t.dim();
  for (int64_t i = 0; i < t.dim(); ++i)
    st[off + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return st;
}

// Iterates over `shape` for N operands. f(offsets, n, inner_strides) handles a
// run of n elements along the innermost (coalesced) dim, operand k starting at
// offsets[k] and stepping inner_strides[k]. Runs are spread over threads when
// the total is large; each element is visited exactly once.
template <size_t N, class F>
void strided_loop(const Shape& shape_in, const std::array<Shape, N>& strides_in, F&& f) {
  // Drop size-1 dims, then merge dims that are contiguous for every operand.
  Shape shape;
  std::array<Shape, N> strides;
  for (size_t d = 0; d < shape_in.size(); ++d) {
    if (shape_in[d] == 0) return;
    if (shape_in[d] == 1) continue;
    bool merge = !shape.empty();
    for (size_t k = 0; k < N && merge; ++k)
      merge = strides[k].back() == strides_in[k][d] * shape_in[d];
    if (merge) {
      shape.back() *= shape_in[d];
      for (size_t k = 0; k < N; ++k) strides[k].back() = strides_in[k][d];
    } else {
      shape.push_back(shape_in[d]);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(strides_in[k][d]);
    }
  }
  std::array<int64_t, N> zero{};
  if (shape.empty()) {
    f(zero, int64_t{1}, zero);
    return;
  }
  const int64_t nd = static_cast<int64_t>(shape.size());
  const int64_t inner = shape.back();
  std::array<int64_t, N> inner_st;
  for (size_t k = 0; k < N; ++k) inner_st[k] = strides[k].back();
  int64_t outer = 1;
  for (int64_t d = 0; d + 1 < nd; ++d) outer *= shape[d];
  constexpr int64_t kChunk = 8192;
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
  const int64_t tasks = outer * chunks;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::min(inner, kChunk));
  detail::parallel_for(tasks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      int64_t o = t / chunks, c = t % chunks;
      std::array<int64_t, N> off{};
      int64_t rem = o;
      for (int64_t d = nd - 2; d >= 0; --d) {
        int64_t i = rem % shape[d];
        rem /= shape[d];
        for (size_t k = 0; k < N; ++k) off[k] += i * strides[k][d];
      }
      int64_t s = c * kChunk, n = std::min(kChunk, inner - s);
      for (size_t k = 0; k < N; ++k) off[k] += s * inner_st[k];
      f(off, n, inner_st);
    }
  });
}

}  // namespace attn::kernels::cpu
