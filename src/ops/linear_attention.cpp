// Linear attention (Katharopoulos et al. 2020) with the elu + 1 feature map,
// composed from differentiable ops. Causal attention runs chunk by chunk: a
// chunk's queries see the running sums of the earlier chunks' phi(k) v^T and
// phi(k), plus their own chunk through a lower-triangular product.
#include "attn/attention.h"
#include "ops/internal.h"

namespace attn::nn::functional {

using namespace ::attn::ops;

Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, const LinearAttentionOptions& o) {
  const char* op = "linear_attention";
  check_float(op, "query", q);
  check_float(op, "key", k);
  check_float(op, "value", v);
  check_same_dtype(op, "query", q, "key", k);
  check_same_dtype(op, "query", q, "value", v);
  ATTN_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), op,
             ": query, key and value must have the same number of dims (at least 2), got ", shape_str(q.shape()),
             ", ", shape_str(k.shape()), " and ", shape_str(v.shape()));
  ATTN_CHECK(q.size(-1) == k.size(-1) && k.size(-2) == v.size(-2), op, ": query ", shape_str(q.shape()), ", key ",
             shape_str(k.shape()), " and value ", shape_str(v.shape()),
             " must agree in E (query, key) and in S (key, value)");
  ATTN_CHECK(!o.causal() || q.size(-2) == k.size(-2), op, ": causal linear attention needs L == S, got ",
             q.size(-2), " and ", k.size(-2));
  ATTN_CHECK(o.chunk() > 0, op, ": chunk must be positive, got ", o.chunk());
  ATTN_CHECK(o.eps() >= 0, op, ": eps must be non-negative, got ", o.eps());
  Tensor fq = elu(q) + 1.0, fk = elu(k) + 1.0;
  if (!o.causal()) {
    Tensor kv = matmul(fk.transpose(-2, -1), v);         // (..., E, Ev)
    Tensor z = sum(fk, {-2}, true);                       // (..., 1, E)
    Tensor den = sum(fq * z, {-1}, true) + o.eps();       // (..., L, 1)
    return matmul(fq, kv) / den;
  }
  const int64_t L = q.size(-2), C = o.chunk();
  Shape state_kv(q.shape().begin(), q.shape().end() - 2), state_z = state_kv;
  state_kv.push_back(q.size(-1));
  state_kv.push_back(v.size(-1));
  state_z.push_back(1);
  state_z.push_back(q.size(-1));
  Tensor S = zeros(state_kv, q.dtype()), z = zeros(state_z, q.dtype());
  std::vector<Tensor> outs;
  for (int64_t c0 = 0; c0 < L; c0 += C) {
    const int64_t n = std::min(C, L - c0);
    Tensor qc = fq.narrow(-2, c0, n), kc = fk.narrow(-2, c0, n), vc = v.narrow(-2, c0, n);
    Tensor a = tril(matmul(qc, kc.transpose(-2, -1)));   // (..., n, n), j <= i within the chunk
    Tensor num = matmul(a, vc) + matmul(qc, S);
    Tensor den = sum(a, {-1}, true) + sum(qc * z, {-1}, true) + o.eps();
    outs.push_back(num / den);
    S = S + matmul(kc.transpose(-2, -1), vc);
    z = z + sum(kc, {-2}, true);
  }
  return outs.size() == 1 ? outs[0] : cat(outs, -2);
}

}  // namespace attn::nn::functional
