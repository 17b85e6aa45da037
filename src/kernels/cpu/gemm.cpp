// GEMM through OpenBLAS (the OpenMP build: inside an OpenMP parallel region it
// runs single-threaded, so batched products parallelise over the batch
// without nested oversubscription).
#include <cblas.h>

#include <limits>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/loop.h"

namespace attn::kernels::cpu {

namespace {
// BLAS takes int dims; attn's are int64.
blasint to_blas(int64_t v, const char* what) {
  ATTN_CHECK(v <= static_cast<int64_t>(std::numeric_limits<blasint>::max()), "matmul: ", what, " = ", v,
             " exceeds the BLAS integer range");
  return static_cast<blasint>(v);
}
}  // namespace

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, double beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              to_blas(M, "M"), to_blas(N, "N"), to_blas(K, "K"), static_cast<float>(alpha), A,
              to_blas(std::max<int64_t>(lda, 1), "lda"), B, to_blas(std::max<int64_t>(ldb, 1), "ldb"),
              static_cast<float>(beta), C, to_blas(std::max<int64_t>(ldc, 1), "ldc"));
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              to_blas(M, "M"), to_blas(N, "N"), to_blas(K, "K"), alpha, A,
              to_blas(std::max<int64_t>(lda, 1), "lda"), B, to_blas(std::max<int64_t>(ldb, 1), "ldb"), beta,
              C, to_blas(std::max<int64_t>(ldc, 1), "ldc"));
}

namespace {
// How BLAS can read a (rows, cols) matrix with strides (s0, s1): row-major with
// leading dim s0, or transposed with leading dim s1; else it must be copied.
struct Operand {
  bool trans = false;
  int64_t ld = 0;
  bool ok = false;
};
Operand classify(int64_t rows, int64_t cols, int64_t s0, int64_t s1) {
  Operand o;
  if ((s1 == 1 || cols == 1) && s0 >= std::max<int64_t>(cols, 1)) {
    o.ld = std::max<int64_t>(s0, cols);
    o.ok = true;
  } else if ((s0 == 1 || rows == 1) && s1 >= std::max<int64_t>(rows, 1)) {
    o.trans = true;
    o.ld = std::max<int64_t>(s1, rows);
    o.ok = true;
  }
  if (rows == 1 && cols == 1) {
    o.trans = false;
    o.ld = 1;
    o.ok = true;
  }
  return o;
}
}  // namespace

void bmm(const Tensor& a_in, const Tensor& b_in, const Tensor& out) {
  const int64_t Bn = out.size(0), M = out.size(1), N = out.size(2), K = a_in.size(2);
  if (Bn == 0 || M == 0 || N == 0) return;
  if (K == 0) {
    fill(out, 0.0);
    return;
  }
  Tensor a = a_in, b = b_in;
  Operand oa = classify(M, K, a.stride(1), a.stride(2));
  if (!oa.ok) {
    a = a.contiguous();
    oa = classify(M, K, a.stride(1), a.stride(2));
  }
  Operand ob = classify(K, N, b.stride(1), b.stride(2));
  if (!ob.ok) {
    b = b.contiguous();
    ob = classify(K, N, b.stride(1), b.stride(2));
  }
  const int64_t sa = a.size(0) == 1 ? 0 : a.stride(0);
  const int64_t sb = b.size(0) == 1 ? 0 : b.stride(0);
  dispatch_float(out.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    T* po = out.data<T>();
    auto one = [&](int64_t i) {
      gemm(oa.trans, ob.trans, M, N, K, 1.0, pa + i * sa, oa.ld, pb + i * sb, ob.ld, 0.0, po + i * M * N, N);
    };
    // One big product: let BLAS thread it. Many small ones: thread over the batch.
    const double flops = static_cast<double>(M) * N * K;
    if (Bn == 1 || flops >= 64.0 * 64 * 64 * 8) {
      for (int64_t i = 0; i < Bn; ++i) one(i);
    } else {
      detail::parallel_for(Bn, 1, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) one(i);
      });
    }
  });
}

}  // namespace attn::kernels::cpu
