// Position encodings for attention: ALiBi slopes and rotary embeddings,
// composed from differentiable ops.
#include <cmath>

#include "attn/attention.h"
#include "ops/internal.h"

namespace attn::nn::functional {

using namespace ::attn::ops;

namespace {
std::vector<double> slopes_of(int64_t n) {
  auto pow2 = [](int64_t m) {
    const double start = std::pow(2.0, -std::pow(2.0, -(std::log2(static_cast<double>(m)) - 3)));
    std::vector<double> v;
    for (int64_t i = 0; i < m; ++i) v.push_back(start * std::pow(start, static_cast<double>(i)));
    return v;
  };
  const double l = std::log2(static_cast<double>(n));
  if (l == std::floor(l)) return pow2(n);
  const int64_t closest = int64_t{1} << static_cast<int64_t>(std::floor(l));
  std::vector<double> v = pow2(closest), more = slopes_of(2 * closest);
  for (size_t i = 0; i < more.size() && static_cast<int64_t>(v.size()) < n; i += 2) v.push_back(more[i]);
  return v;
}
}  // namespace

Tensor alibi_slopes(int64_t num_heads, DType dtype) {
  ATTN_CHECK(num_heads > 0, "alibi_slopes: num_heads must be positive, got ", num_heads);
  ATTN_CHECK(dtype == kFloat32 || dtype == kFloat64, "alibi_slopes: dtype must be float32 or float64, got ",
             dtype_name(dtype));
  return from_vector(slopes_of(num_heads), {num_heads}).to(dtype);
}

Tensor relative_position_expand(const Tensor& r, int64_t S, int64_t K) {
  const char* op = "relative_position_expand";
  check_float(op, "r", r);
  ATTN_CHECK(K >= 0 && S >= 0, op, ": max_distance and S must be >= 0, got ", K, " and ", S);
  ATTN_CHECK(r.dim() >= 2 && r.size(-1) == 2 * K + 1, op, ": r must be (..., L, ", 2 * K + 1,
             ") for max_distance ", K, ", got ", shape_str(r.shape()));
  Shape shape = r.shape();
  shape.back() = S;
  Tensor out = Tensor::make(shape, r.dtype());
  k::relative_expand(r.detach().contiguous(), out, K);
  if (should_record({&r})) {
    record("RelativePositionExpandBackward", {r}, out, [K](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{relative_position_sum(g, K)};
    });
  }
  return out;
}

Tensor relative_position_sum(const Tensor& p, int64_t K) {
  const char* op = "relative_position_sum";
  check_float(op, "p", p);
  ATTN_CHECK(K >= 0, op, ": max_distance must be >= 0, got ", K);
  ATTN_CHECK(p.dim() >= 2, op, ": p must be (..., L, S), got ", shape_str(p.shape()));
  Shape shape = p.shape();
  const int64_t S = shape.back();
  shape.back() = 2 * K + 1;
  Tensor out = Tensor::make(shape, p.dtype());
  k::relative_reduce(p.detach().contiguous(), out, K);
  if (should_record({&p})) {
    record("RelativePositionSumBackward", {p}, out, [K, S](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{relative_position_expand(g, S, K)};
    });
  }
  return out;
}

Tensor rotary_embedding(const Tensor& x, const RotaryOptions& o) {
  check_float("rotary_embedding", "input", x);
  ATTN_CHECK(x.dim() >= 2, "rotary_embedding: input must be (..., L, D), got ", shape_str(x.shape()));
  const int64_t L = x.size(-2), D = x.size(-1), half = D / 2;
  ATTN_CHECK(D % 2 == 0, "rotary_embedding: the feature size D must be even, got ", D);
  ATTN_CHECK(o.base() > 0, "rotary_embedding: base must be positive, got ", o.base());
  std::vector<double> pos(static_cast<size_t>(L));
  if (o.positions().defined()) {
    check_dtype("rotary_embedding", "positions", o.positions(), kInt64);
    ATTN_CHECK(o.positions().dim() == 1 && o.positions().size(0) == L, "rotary_embedding: positions must be (", L,
               "), got ", shape_str(o.positions().shape()));
    Tensor p = o.positions().contiguous();
    for (int64_t i = 0; i < L; ++i) pos[i] = static_cast<double>(p.data<int64_t>()[i]);
  } else {
    for (int64_t i = 0; i < L; ++i) pos[i] = static_cast<double>(o.offset() + i);
  }
  // Angles in double, then the tables in x's dtype: (L, D/2).
  std::vector<double> c(static_cast<size_t>(L * half)), s(c.size());
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < half; ++j) {
      const double a = pos[i] * std::pow(o.base(), -2.0 * static_cast<double>(j) / static_cast<double>(D));
      c[i * half + j] = std::cos(a);
      s[i * half + j] = std::sin(a);
    }
  Tensor cs = from_vector(c, {L, half}).to(x.dtype()), sn = from_vector(s, {L, half}).to(x.dtype());
  if (o.layout() == RopeLayout::HalfSplit) {
    Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
    return cat({x1 * cs - x2 * sn, x2 * cs + x1 * sn}, -1);
  }
  Shape pairs(x.shape().begin(), x.shape().end() - 1);
  pairs.push_back(half);
  pairs.push_back(2);
  Tensor xp = x.reshape(pairs);
  Tensor xe = xp.select(-1, 0), xo = xp.select(-1, 1);
  return stack({xe * cs - xo * sn, xe * sn + xo * cs}, -1).reshape(x.shape());
}

}  // namespace attn::nn::functional
