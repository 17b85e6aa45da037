// matmul / mm / bmm. Everything reduces to one batched product of 3-d views,
// (B or 1, M, K) @ (B or 1, K, N), handed to BLAS without copies when each
// operand (or its transpose) has unit inner stride.
#include "ops/internal.h"

namespace attn {

using namespace ops;

namespace {

// a3: (Ba, M, K), b3: (Bb, K, N) with Ba, Bb equal or 1.
Tensor bmm_core(const Tensor& a3, const Tensor& b3) {
  const int64_t Bn = std::max(a3.size(0), b3.size(0));
  Tensor out = Tensor::make({Bn, a3.size(1), b3.size(2)}, a3.dtype());
  k::bmm(a3, b3, out);
  if (should_record({&a3, &b3})) {
    Tensor as = a3.detach(), bs = b3.detach();
    record("BmmBackward", {a3, b3}, out, [as, bs](const Tensor& g, const std::vector<bool>& n) {
      Tensor ga, gb;
      if (n[0]) {
        ga = bmm_core(g, bs.transpose(1, 2));
        if (as.size(0) == 1 && ga.size(0) != 1) ga = sum(ga, {0}, true);
      }
      if (n[1]) {
        gb = bmm_core(as.transpose(1, 2), g);
        if (bs.size(0) == 1 && gb.size(0) != 1) gb = sum(gb, {0}, true);
      }
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

void check_operands(const char* op, const Tensor& a, const Tensor& b) {
  check_float(op, "a", a);
  check_float(op, "b", b);
  check_same_dtype(op, "a", a, "b", b);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_operands("matmul", a, b);
  ATTN_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both arguments need at least 1 dim, got a ",
             shape_str(a.shape()), " and b ", shape_str(b.shape()));
  if (a.dim() == 1 && b.dim() == 1) {
    ATTN_CHECK(a.size(0) == b.size(0), "matmul: a is ", shape_str(a.shape()), " and b is ", shape_str(b.shape()),
               ": 1-d operands must have the same size");
    return matmul(a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  }
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  ATTN_CHECK(K == b.size(-2), "matmul: a is ", shape_str(a.shape()), " and b is ", shape_str(b.shape()),
             ": a.size(-1) must equal b.size(-2)");
  Shape batch_a(a.shape().begin(), a.shape().end() - 2), batch_b(b.shape().begin(), b.shape().end() - 2);
  if (b.dim() == 2 && a.dim() >= 2) {
    // (..., M, K) @ (K, N): one GEMM over all rows of a.
    Shape out_shape = batch_a;
    out_shape.push_back(M);
    out_shape.push_back(N);
    Tensor a2 = a.reshape({1, shape_numel(batch_a) * M, K});
    return bmm_core(a2, b.unsqueeze(0)).reshape(out_shape);
  }
  Shape batch = broadcast_shapes(batch_a, batch_b, "matmul");
  const int64_t Bn = shape_numel(batch);
  auto to3 = [&](const Tensor& t, const Shape& tb, int64_t r, int64_t c) {
    if (shape_numel(tb) == 1) return t.reshape({1, r, c});
    Shape full = batch;
    full.push_back(r);
    full.push_back(c);
    return t.expand(full).reshape({Bn, r, c});
  };
  Tensor out = bmm_core(to3(a, batch_a, M, K), to3(b, batch_b, K, N));
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  return out.reshape(out_shape);
}

Tensor mm(const Tensor& a, const Tensor& b) {
  check_operands("mm", a, b);
  check_dim("mm", "a", a, 2, 2);
  check_dim("mm", "b", b, 2, 2);
  ATTN_CHECK(a.size(1) == b.size(0), "mm: a is ", shape_str(a.shape()), " and b is ", shape_str(b.shape()),
             ": a.size(1) must equal b.size(0)");
  return bmm_core(a.unsqueeze(0), b.unsqueeze(0)).squeeze(0);
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  check_operands("bmm", a, b);
  check_dim("bmm", "a", a, 3, 3);
  check_dim("bmm", "b", b, 3, 3);
  ATTN_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), "bmm: a is ", shape_str(a.shape()), " and b is ",
             shape_str(b.shape()), ": expected a (B, n, k) and b (B, k, m)");
  return bmm_core(a, b);
}

}  // namespace attn
