// Internal: the parts fused attention loops are built from (float32), each
// with one job. The built-in SDPA kernel (kernels/cpu/attention.cpp) and
// flex_attention's templated loops (include/attn/flex_impl.h) share them.
//
//   tile_gemm          the register-blocked tile product (Q K^T, P V, dS K, ...)
//   pack_kt            K^T of one head, one contiguous (E, tile) block per key tile
//   row_max            a row's maximum
//   exp_sub_sum        exp(x - m) in place with its sum (the softmax numerator)
//   online_softmax     a tile's rows folded into the running max, sum and output
//   finish_rows        the epilogue: output / sum and the LSE
//   probs_from_lse     P = exp(S - lse) for the backward (0 where masked)
//   score_grad         dS = P (dP - D) f' scale (f' the score modifier's derivative)
//   merge_by_lse       two passes' outputs over disjoint keys merged through their LSEs
//
// The built-in SDPA's score and mask stage (bands, masks, the stride's
// layout, dropout) is in pattern.h.
//
// Tiles are row-major with a leading dimension; -inf marks a masked score.
#pragma once

#include <cstdint>
#include <vector>

namespace attn::kernels::cpu::parts {

// C (M, N) = alpha * A (M, K) @ B (K, N) (+ C when accumulate), row-major with
// leading dims, register-blocked for tiles of a few hundred.
void tile_gemm(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
               bool accumulate, float* C, int64_t ldc);

// dst (ceil(S / tile), E, tile) = K (S, E; rows ldk apart) of one head
// transposed per key tile (the last tile's missing columns are left as they are).
void pack_kt(const float* K, int64_t S, int64_t E, int64_t ldk, int64_t tile, float* dst);

// max(x[0..n)), -inf for n = 0.
float row_max(const float* x, int64_t n);

// x[i] = exp(x[i] - m) for i < n; returns the sum. -inf entries give 0.
float exp_sub_sum(float* x, int64_t n, float m);

// For each row r < rows of the score tile s (cols wide, leading dim lds):
// folds it into the running max m[r] and sum l[r], rescaling acc's row r
// (Ev wide, leading dim Ev) when the max moves; s's row becomes exp(s - m)
// (0 where -inf) ready for acc += s V. A row with nothing visible so far stays
// at m = -inf and its tile row becomes 0.
void online_softmax(float* s, int64_t rows, int64_t cols, int64_t lds, float* m, float* l, float* acc, int64_t Ev);

// out[r] = acc[r] / l[r] and lse[r] = m[r] + log l[r]; rows with nothing
// visible give 0 and -inf. out's rows are Ev apart.
void finish_rows(const float* acc, const float* m, const float* l, int64_t rows, int64_t Ev, float* out, float* lse);

// s[r][c] = exp(s[r][c] - lse[r]) (0 where s is -inf or lse[r] is -inf).
void probs_from_lse(float* s, int64_t rows, int64_t cols, int64_t lds, const float* lse);

// dp[r][c] = p[r][c] (dp[r][c] - D[r]) * fprime[r][c] * scale, 0 where p is 0;
// fprime null means 1. All tiles share the leading dim ld.
void score_grad(const float* p, float* dp, const float* fprime, const float* D, int64_t rows, int64_t cols, int64_t ld,
                float scale);

// O, LSE (BH, L rows) merged with a second pass over other keys, Ob, LSEb,
// whose row x of head h is row rows[x] of O: O = (O e^LSE + Ob e^LSEb) /
// (e^LSE + e^LSEb), LSE = log(e^LSE + e^LSEb). Rows where one side saw
// nothing (LSE -inf) take the other.
void merge_by_lse(float* O, float* LSE, const float* Ob, const float* LSEb, int64_t BH, int64_t L, int64_t Ev,
                  const std::vector<int64_t>& rows);

}  // namespace attn::kernels::cpu::parts
