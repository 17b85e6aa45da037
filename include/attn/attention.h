// Scaled dot-product attention, as torch.nn.functional.scaled_dot_product_attention
// plus FlashAttention's extras.
//
// Legend: B = leading batch dims (any number, flattened), Hq / Hk = query /
// key-value heads, L = queries, S = keys, E = q/k head dim, Ev = v head dim.
//   q: (B..., Hq, L, E)   k: (B..., Hk, S, E)   v: (B..., Hk, S, Ev)
//   out: (B..., Hq, L, Ev)   lse: (B..., Hq, L)
// 2-d inputs (L, E) have no head dim (H = 1).
//
// Scores, in this order: s = scale * q.k (scale defaults to 1/sqrt(E));
// s = softcap * tanh(s / softcap) when softcap > 0; s += alibi bias
// -slope[h] * |i + d - j|; s += attn_mask when it is float. Then keys are
// masked out (score -inf) by a bool attn_mask (**true = attend**, as PyTorch's
// SDPA), by is_causal (j > i + d), by window (j < i + d - left or
// j > i + d + right) and by key_lengths (j >= key_lengths[b]). The diagonal
// offset d is 0 with CausalAlign::TopLeft (PyTorch's is_causal) and S - L with
// CausalAlign::BottomRight (FlashAttention's); it aligns causal, window and
// ALiBi alike. Dropout applies to the normalised probabilities.
//
// A query row whose keys are all masked gives output 0, LSE -inf and zero
// gradients, never NaN (as FlashAttention and PyTorch's newer kernels; the
// composed softmax(QK^T)V of PyTorch 1.13 gives NaN there).
//
// float32 runs the fused kernel (memory O(L * E) beyond the inputs); float64
// runs the composed reference, which is also the fused kernel's test oracle.
#pragma once

#include <cstdint>
#include <optional>
#include <tuple>

#include "attn/functional.h"
#include "attn/generator.h"
#include "attn/tensor.h"

namespace attn::nn::functional {

enum class CausalAlign { TopLeft, BottomRight };

// (left, right) keys around the aligned diagonal; -1 is unbounded, as
// FlashAttention's window_size.
struct Window {
  int64_t left = -1, right = -1;
  Window() = default;
  Window(int64_t l, int64_t r) : left(l), right(r) {}
  bool active() const { return left >= 0 || right >= 0; }
};

struct SdpaOptions {
  // bool (true = attend) or float (added to the scores), broadcastable to (B..., Hq, L, S).
  ATTN_ARG(Tensor, attn_mask) = {};
  ATTN_ARG(double, dropout_p) = 0.0;
  ATTN_ARG(bool, is_causal) = false;
  ATTN_ARG(CausalAlign, causal_align) = CausalAlign::TopLeft;
  ATTN_ARG(std::optional<double>, scale) = std::nullopt;  // 1/sqrt(E)
  // Hq a multiple of Hk; query head h reads key-value head h / (Hq / Hk). K/V are never copied per head.
  ATTN_ARG(bool, enable_gqa) = false;
  ATTN_ARG(Window, window) = {};
  // Sparse patterns on top of the window (local) band, for linear cost in L:
  // global_tokens g: keys j < g are seen by every query and queries i < g see
  // every key (Longformer / BigBird's global tokens); stride s: also the keys
  // whose aligned distance i + d - j is a multiple of s (Sparse Transformer's
  // strided pattern). Both still obey is_causal, key_lengths and attn_mask.
  ATTN_ARG(int64_t, global_tokens) = 0;
  ATTN_ARG(int64_t, stride) = 0;
  ATTN_ARG(Tensor, alibi_slopes) = {};  // (Hq) or (B..., Hq), float
  ATTN_ARG(double, softcap) = 0.0;      // 0: off
  ATTN_ARG(Tensor, key_lengths) = {};   // int64 (B...): keys at j >= key_lengths[b] are padding
  ATTN_ARG(Generator*, generator) = nullptr;  // dropout draws (the default generator when null)
  // Added to the diagonal offset d above: query i is aligned with key
  // i + d + diagonal_offset. A block of a longer sequence passes its first
  // query's position minus its first key's, so that causal, window, stride
  // and ALiBi keep their meaning over the whole sequence (ring attention).
  ATTN_ARG(int64_t, diagonal_offset) = 0;
};

// The attention output (B..., Hq, L, Ev).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const SdpaOptions& options = {});
// (output, lse): lse (B..., Hq, L) is the log-sum-exp of each row's scores
// (-inf for a fully masked row); not differentiable.
std::tuple<Tensor, Tensor> scaled_dot_product_attention_with_lse(const Tensor& q, const Tensor& k,
                                                                 const Tensor& v, const SdpaOptions& options = {});
// FlashAttention's backward as a function: the gradients (dq, dk, dv) of
// the attention of q over k, v for grad_out (B..., Hq, L, Ev), from an output
// and lse (B..., Hq, L) that may come from a longer computation whose blocks
// were merged through their LSEs: with the merged output and lse, each
// block's call gives that block's share of the gradients, and the shares add
// up to the whole (ring attention's backward). float32 (the fused kernel); no
// dropout; a float attn_mask gets no gradient; nothing is recorded.
std::tuple<Tensor, Tensor, Tensor> scaled_dot_product_attention_backward(const Tensor& grad_out, const Tensor& q,
                                                                         const Tensor& k, const Tensor& v,
                                                                         const Tensor& out, const Tensor& lse,
                                                                         const SdpaOptions& options = {});
// The attention probabilities (B..., Hq, L, S) before dropout, computed tile by
// tile from the scores and a saved lse (not differentiable). average_heads:
// their mean over the head dim, (B..., L, S), without the per-head tensor.
Tensor scaled_dot_product_attention_weights(const Tensor& q, const Tensor& k, const Tensor& lse,
                                            const SdpaOptions& options = {}, bool average_heads = false);
// The composed reference: the same semantics built from matmul, softmax and
// masks, differentiable through autograd (any float dtype).
Tensor scaled_dot_product_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                                              const SdpaOptions& options = {});

// ---- Linear attention (Katharopoulos et al. 2020) ------------------------------------
struct LinearAttentionOptions {
  ATTN_ARG(bool, causal) = false;
  ATTN_ARG(double, eps) = 1e-6;    // added to the normaliser
  ATTN_ARG(int64_t, chunk) = 64;   // causal: queries per chunk (exact for any value)
};
// out_i = phi(q_i)^T sum_j phi(k_j) v_j^T / (phi(q_i)^T sum_j phi(k_j) + eps),
// phi(x) = elu(x) + 1, over all keys j, or j <= i when causal. q (..., L, E),
// k (..., S, E), v (..., S, Ev) -> (..., L, Ev). Time and memory O(L E Ev)
// (causal: plus O(L * chunk * E) for the chunks' own triangles), never L x S.
// Differentiable (composed from matmul, tril and elu).
Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, const LinearAttentionOptions& options = {});

// ---- Position encodings that plug into attention ------------------------------------

// ALiBi slopes for num_heads heads (Press et al. 2022, their reference code):
// a geometric sequence 2^(-8 i / n) for n a power of two; otherwise those of the
// nearest lower power of two, then every other slope of the next one. Pass as
// SdpaOptions::alibi_slopes. (num_heads), float32 unless dtype says otherwise.
Tensor alibi_slopes(int64_t num_heads, DType dtype = kFloat32);

// Relative distances (Shaw, Uszkoreit, Vaswani 2018) without an index
// tensor: relative_position_expand gives out[..., i, j] = r[..., i,
// clip(j - i, -K, K) + K] for r (..., L, 2K + 1), K = max_distance, out
// (..., L, S); relative_position_sum is its adjoint, p (..., L, S) ->
// (..., L, 2K + 1), summing each row's entries per clipped distance. Each is
// the other's backward (differentiable, any float dtype).
Tensor relative_position_expand(const Tensor& r, int64_t S, int64_t max_distance);
Tensor relative_position_sum(const Tensor& p, int64_t max_distance);

// Rotary position embedding (RoPE, Su et al.): rotates pairs of features of a
// query or key by the angle pos * base^(-2i / D). HalfSplit pairs feature i
// with i + D/2 (GPT-NeoX, Llama); Interleaved pairs 2i with 2i + 1 (GPT-J, the paper).
enum class RopeLayout { HalfSplit, Interleaved };
struct RotaryOptions {
  ATTN_ARG(double, base) = 10000.0;
  ATTN_ARG(RopeLayout, layout) = RopeLayout::HalfSplit;
  ATTN_ARG(int64_t, offset) = 0;   // position of the first row (decoding after a cache)
  ATTN_ARG(Tensor, positions) = {};  // int64 (L): explicit positions instead of offset + row
};
// x: (..., L, D), D even; the positions run along dim -2. Differentiable.
Tensor rotary_embedding(const Tensor& x, const RotaryOptions& options = {});

}  // namespace attn::nn::functional
