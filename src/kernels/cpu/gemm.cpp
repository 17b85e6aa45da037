// GEMM through OpenBLAS, always single-threaded, or through the attention
// kernel's register-blocked tile product for the float32 shapes where that
// is faster (use_tile_product, use_panel_product): attn splits products into
// tiles fixed by the shape and spreads the tiles over its own pool, so a
// product is bit-identical at any thread count and BLAS never nests threads
// inside the pool.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "core/parallel.h"
#include "kernels/cpu/attention/parts.h"
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

namespace {
// attn threads GEMM itself (bmm below), so BLAS must run single-threaded. The
// OpenMP build of OpenBLAS re-reads omp_get_max_threads() on every call (an
// openblas_set_num_threads(1) does not stick), and is single-threaded inside
// an active parallel region; outside one, this guard makes the calling
// thread's OpenMP thread count 1 for the duration of the call.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : active_(!omp_in_parallel() && omp_get_max_threads() > 1) {
    if (active_) {
      prev_ = omp_get_max_threads();
      omp_set_num_threads(1);
    }
  }
  ~SingleThreadedBlas() {
    if (active_) omp_set_num_threads(prev_);
  }

 private:
  bool active_;
  int prev_ = 1;
};
}  // namespace

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, double beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  SingleThreadedBlas single;
  // A single row or column is a matrix-vector product: SGEMV reads the matrix
  // once where SGEMM would first copy it into packed panels (a decoding step
  // multiplies one token's vector by every weight matrix).
  if (M == 1 && K > 0) {
    // C (1, N) = op(A) (1, K) op(B) (K, N): y = op(B)^T x, x = A's row (op(A)^T's column when ta).
    const int64_t incx = ta ? std::max<int64_t>(lda, 1) : 1;
    cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, to_blas(tb ? N : K, "M"), to_blas(tb ? K : N, "N"),
                static_cast<float>(alpha), B, to_blas(std::max<int64_t>(ldb, 1), "ldb"), A, to_blas(incx, "incx"),
                static_cast<float>(beta), C, 1);
    return;
  }
  if (N == 1 && K > 0) {
    // C (M, 1) = op(A) (M, K) op(B) (K, 1): y = op(A) x, x = op(B)'s column.
    const int64_t incx = tb ? 1 : std::max<int64_t>(ldb, 1);
    cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, to_blas(ta ? K : M, "M"), to_blas(ta ? M : K, "N"),
                static_cast<float>(alpha), A, to_blas(std::max<int64_t>(lda, 1), "lda"), B, to_blas(incx, "incx"),
                static_cast<float>(beta), C, to_blas(std::max<int64_t>(ldc, 1), "ldc"));
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              to_blas(M, "M"), to_blas(N, "N"), to_blas(K, "K"), static_cast<float>(alpha), A,
              to_blas(std::max<int64_t>(lda, 1), "lda"), B, to_blas(std::max<int64_t>(ldb, 1), "ldb"),
              static_cast<float>(beta), C, to_blas(std::max<int64_t>(ldc, 1), "ldc"));
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  SingleThreadedBlas single;
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

namespace {
// Rows per call of the tile product: a block of A (rows x K) is read once per
// 64-column chunk of B, so it stays within ~256 KiB (L2).
int64_t tile_rows(int64_t K) { return std::clamp<int64_t>((65536 / std::max<int64_t>(K, 1)) / 6 * 6, 6, 96); }

// Whether a float32 product runs on the attention kernel's register-blocked
// tile product instead of BLAS: many rows against a small B, A row-major.
// Swin-T's token-wise linears at batch 8, F::linear with bias on this
// machine (2 threads, AVX-512), OpenBLAS -> tile product: (25088, 384) x
// (384, 96) 140 -> 179 GFLOPS, (25088, 96) x (96, 288) 154 -> 168,
// (6272, 768) x (768, 192) 185 -> 204; at 3136 rows OpenBLAS was as fast or
// faster (201 -> 191 for (3136, 96) x (96, 288)), hence the 4096. B is read
// as (K, N) rows; a transposed B (a Linear's (N, K) weight) is copied once
// per call, which the rows amortise.
bool use_tile_product(const Tensor& out, bool a_trans, int64_t M, int64_t N, int64_t K) {
  return out.dtype() == kFloat32 && !a_trans && M >= 4096 && K >= 16 && K <= 1024 && N >= 16;
}

// Fewer rows (32 ... 4095) against a Linear's weight (B transposed, K 256 ...
// 3072, N >= 256): the tile product over column panels of the weight, each
// packed as (K, 128) rows by the task that uses it. F::linear with bias,
// weights cold as in a model, OpenBLAS -> panels: (197, 768) x (768, 2304)
// 186 -> 194 GFLOPS (ViT-B's qkv at batch 1), (1576, 768) x (768, 2304)
// 199 -> 213, (512, 768) x (768, 2304) 198 -> 210, (1024, 768) x (768, 3072)
// 196 -> 210. Since the panels are packed by register transposes, also the
// long products and the few rows of Swin's last stage, medians of three
// alternating runs: (197, 3072) x (3072, 768) 5.56 -> 4.61 ms (ViT-B's second
// MLP product), (512, 3072) x (3072, 768) 13.28 -> 11.35, (1024, 3072) x
// (3072, 768) 24.47 -> 22.55, (49, 3072) x (3072, 768) 2.06 -> 1.52, (49,
// 768) x (768, 2304) 1.26 -> 1.20. Left to BLAS: K = 96 (193 -> 177 GFLOPS).
bool use_panel_product(const Tensor& out, bool a_trans, bool b_trans, int64_t M, int64_t N, int64_t K) {
  return out.dtype() == kFloat32 && !a_trans && b_trans && M >= 32 && M < 4096 && K >= 256 && K <= 3072 &&
         N >= 256;
}
}  // namespace

void bmm(const Tensor& a_in, const Tensor& b_in, const Tensor& out, const Tensor& bias) {
  const int64_t Bn = out.size(0), M = out.size(1), N = out.size(2), K = a_in.size(2);
  if (Bn == 0 || M == 0 || N == 0) return;
  if (K == 0 && !bias.defined()) {
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
  if (use_panel_product(out, oa.trans, ob.trans, M, N, K)) {
    // Column panels of B^T packed as (K, P) rows into a per-task buffer,
    // then all M rows against it: the packing reads the weight once, as
    // BLAS's would.
    const float* pa = static_cast<const float*>(a.raw_data());
    const float* pb = static_cast<const float*>(b.raw_data());
    float* po = out.data<float>();
    const float* pbias = bias.defined() ? bias.data<float>() : nullptr;
    // 128 columns a panel, or 64 where that leaves an odd count (384 or 1152
    // columns: 3 or 9 panels kept one of two threads idle for the last).
    const int64_t P = ((N + 127) / 128) % 2 == 1 ? 64 : 128;
    const int64_t panels = (N + P - 1) / P;
#pragma omp parallel if (Bn * panels > 1 && !omp_in_parallel())
    {
      detail::DenormalGuard dg;
      std::vector<float> buf(static_cast<size_t>(K * P));
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < Bn * panels; ++t) {
        const int64_t i = t / panels, n0 = (t % panels) * P, len = std::min(P, N - n0);
        parts::pack_kt(pb + i * sb + n0 * ob.ld, len, K, ob.ld, P, buf.data());
        float* C = po + i * M * N + n0;
        if (pbias)
          for (int64_t r = 0; r < M; ++r) std::copy(pbias + n0, pbias + n0 + len, C + r * N);
        parts::tile_gemm(M, len, K, 1.0f, pa + i * sa, oa.ld, buf.data(), P, pbias != nullptr, C, N);
      }
    }
    return;
  }
  if (use_tile_product(out, oa.trans, M, N, K)) {
    // B as (K, N) rows: as it is, or one transposed copy per distinct B
    const int64_t nb = sb == 0 ? 1 : Bn;
    Tensor bt;
    const float* pb = static_cast<const float*>(b.raw_data());
    int64_t ldb = ob.ld, sbt = sb;
    if (ob.trans) {
      bt = Tensor::make({nb, K, N}, kFloat32);
      float* d = bt.data<float>();
      detail::parallel_for(nb * K, 64, [&](int64_t s0, int64_t e0) {
        for (int64_t x = s0; x < e0; ++x) {
          const int64_t i = x / K, k = x % K;
          const float* src = pb + i * sb + k;  // column k of B^T (N, K) with leading dim ob.ld
          float* dst = d + (i * K + k) * N;
          for (int64_t n = 0; n < N; ++n) dst[n] = src[n * ob.ld];
        }
      });
      pb = d, ldb = N, sbt = sb == 0 ? 0 : K * N;
    }
    const float* pa = static_cast<const float*>(a.raw_data());
    float* po = out.data<float>();
    const float* pbias = bias.defined() ? bias.data<float>() : nullptr;
    const int64_t rows = tile_rows(K), blocks = (M + rows - 1) / rows;
    detail::parallel_for(Bn * blocks, 1, [&](int64_t s0, int64_t e0) {
      for (int64_t t = s0; t < e0; ++t) {
        const int64_t i = t / blocks, r0 = (t % blocks) * rows, len = std::min(rows, M - r0);
        float* C = po + (i * M + r0) * N;
        if (pbias)
          for (int64_t r = 0; r < len; ++r) std::copy(pbias, pbias + N, C + r * N);
        parts::tile_gemm(len, N, K, 1.0f, pa + i * sa + r0 * oa.ld, oa.ld, pb + i * sbt, ldb, pbias != nullptr, C, N);
      }
    });
    return;
  }
  // Tiles depend on the shape only: each output is cut along its longer dim
  // into 2 or 4 panels (about 256 rows or columns or more each), and every tile is
  // one single-threaded BLAS call. The same tiles are computed whatever the
  // thread count, so results are bit-identical at any thread count (OpenBLAS's
  // own threading is not: its per-element result depends on the partition).
  // Measured on 2 Zen 4 cores: 3-5% below 2-thread OpenBLAS at 1024^3.
  const bool split_m = M >= N;
  const int64_t dim = split_m ? M : N;
  const double flops = 2.0 * static_cast<double>(M) * N * K;
  int64_t panel = dim;
  // 2 or 4 panels, never 3: an odd count leaves a thread of two idle for a
  // third of the product (ViT-B's 768-wide outputs spent 12% of the time in
  // the barrier with 3). Row panels stay at 512 rows or more until 2048 rows:
  // BERT-base's (1024, 768) x (768, 768) products ran 7% faster in two
  // panels than in four of 256 rows, whose B panels OpenBLAS packs for too
  // few rows; column panels split at 1024 (GPT-2's 2304-wide qkv product is
  // 6% faster in four).
  const int64_t count = dim >= (split_m ? 8 : 4) * 256 ? 4 : 2;
  if (flops >= 2.0e6 && dim >= 32) panel = (dim + count - 1) / count;
  panel = (panel + 15) / 16 * 16;
  const int64_t panels = (dim + panel - 1) / panel;
  dispatch_float(out.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    T* po = out.data<T>();
    const T* pbias = bias.defined() ? bias.data<T>() : nullptr;
    // element (r, c) of op(X) with leading dim ld
    auto offset = [](const Operand& o, int64_t r, int64_t c) { return o.trans ? c * o.ld + r : r * o.ld + c; };
    auto tile = [&](int64_t t) {
      const int64_t i = t / panels, p = t % panels;
      const int64_t lo = p * panel, len = std::min(panel, dim - lo);
      const T* A = pa + i * sa;
      const T* B = pb + i * sb;
      T* C = po + i * M * N;
      const int64_t r0 = split_m ? lo : 0, r1 = split_m ? lo + len : M;
      const int64_t c0 = split_m ? 0 : lo, c1 = split_m ? N : lo + len;
      if (pbias)
        for (int64_t r = r0; r < r1; ++r) std::copy(pbias + c0, pbias + c1, C + r * N + c0);
      else if (K == 0)
        for (int64_t r = r0; r < r1; ++r) std::fill(C + r * N + c0, C + r * N + c1, T(0));
      if (K == 0) return;
      const double beta = pbias ? 1.0 : 0.0;
      if (split_m)
        gemm(oa.trans, ob.trans, len, N, K, 1.0, A + offset(oa, lo, 0), oa.ld, B, ob.ld, beta, C + lo * N, N);
      else
        gemm(oa.trans, ob.trans, M, len, K, 1.0, A, oa.ld, B + offset(ob, 0, lo), ob.ld, beta, C + lo, N);
    };
    detail::parallel_for(Bn * panels, 1, [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) tile(t);
    });
  });
}

}  // namespace attn::kernels::cpu
