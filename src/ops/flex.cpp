// flex_attention's parts that do not depend on the modifiers: argument
// checks, the thread pool, autograd recording, and Captured tensors (their
// reads, bounds and the registry of live ones). The loops are templates in
// include/attn/flex_impl.h.
#include <algorithm>
#include <cmath>
#include <limits>

#include "attn/flex.h"
#include "autograd/node.h"
#include "core/parallel.h"
#include "kernels/cpu/attention/parts.h"
#include "kernels/cpu/kernels.h"
#include "ops/internal.h"

namespace attn::nn::functional::flex {

namespace detail {

namespace {
thread_local std::vector<std::weak_ptr<CapturedState>> g_live;
thread_local bool g_bad = false;
}  // namespace

std::vector<std::shared_ptr<CapturedState>> live_captured() {
  std::vector<std::shared_ptr<CapturedState>> out;
  std::erase_if(g_live, [](const auto& w) { return w.expired(); });
  for (auto& w : g_live)
    if (auto s = w.lock()) out.push_back(std::move(s));
  return out;
}

const Tensor& state_tensor(const CapturedState& s) { return s.source; }
bool state_wants_grad(const CapturedState& s) { return s.source.requires_grad() && is_floating(s.source.dtype()); }

void mark_bad_read() { g_bad = true; }
bool take_bad_read() {
  const bool b = g_bad;
  g_bad = false;
  return b;
}
void bad_read() {
  throw Error("flex_attention: a modifier read a Captured tensor outside its shape (or with the wrong number of "
              "indices), or read Captured tensors more than 8 times in one call");
}

Geometry check(const Tensor& q, const Tensor& k, const Tensor& v, const FlexOptions& o) {
  constexpr const char* op = "flex_attention";
  ops::check_float(op, "query", q);
  ops::check_same_dtype(op, "query", q, "key", k);
  ops::check_same_dtype(op, "query", q, "value", v);
  ATTN_CHECK(q.dim() >= 3 && k.dim() == q.dim() && v.dim() == q.dim(), op,
             ": query, key and value must be (B..., H, rows, E) with the same number of dims, got ",
             shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  Geometry g;
  for (int64_t d = 0; d < q.dim() - 3; ++d) {
    ATTN_CHECK(k.size(d) == q.size(d) && v.size(d) == q.size(d), op, ": the batch dims of ", shape_str(q.shape()),
               ", ", shape_str(k.shape()), " and ", shape_str(v.shape()), " must match");
    g.B *= q.size(d);
  }
  g.Hq = q.size(-3), g.Hk = k.size(-3), g.L = q.size(-2), g.S = k.size(-2), g.E = q.size(-1), g.Ev = v.size(-1);
  ATTN_CHECK(k.size(-1) == g.E && v.size(-3) == g.Hk && v.size(-2) == g.S, op, ": query ", shape_str(q.shape()),
             ", key ", shape_str(k.shape()), " and value ", shape_str(v.shape()), " do not fit together");
  if (g.Hq != g.Hk) {
    ATTN_CHECK(o.enable_gqa(), op, ": query has ", g.Hq, " heads and key/value ", g.Hk,
               "; set enable_gqa to share key/value heads");
    ATTN_CHECK(g.Hk > 0 && g.Hq % g.Hk == 0, op, ": query heads (", g.Hq, ") must be a multiple of key/value heads (",
               g.Hk, ")");
  }
  g.G = g.Hk > 0 ? g.Hq / g.Hk : 1;
  g.scale = o.scale().value_or(g.E > 0 ? 1.0 / std::sqrt(static_cast<double>(g.E)) : 1.0);
  g.out_shape = q.shape();
  g.out_shape.back() = g.Ev;
  g.lse_shape.assign(q.shape().begin(), q.shape().end() - 1);
  if (const Tensor& rv = o.relative_values(); rv.defined()) {
    ATTN_CHECK(rv.dim() == 2 && rv.size(0) % 2 == 1 && rv.size(1) == g.Ev, op,
               ": relative_values must be (2K + 1, Ev) = (odd, ", g.Ev, "), got ", shape_str(rv.shape()));
    ATTN_CHECK(rv.dtype() == q.dtype(), op, ": relative_values must be ", dtype_name(q.dtype()), ", got ",
               dtype_name(rv.dtype()));
    g.R = rv.size(0);
  }
  if (const BlockMask* m = o.block_mask()) {
    ATTN_CHECK((m->B == 1 || m->B == g.B) && (m->H == 1 || m->H == g.Hq) && m->L == g.L && m->S == g.S, op,
               ": the block mask was made for (B ", m->B, ", H ", m->H, ", L ", m->L, ", S ", m->S, "), this call is (B ",
               g.B, ", H ", g.Hq, ", L ", g.L, ", S ", g.S, ")");
  }
  return g;
}

void run_tasks(int64_t n, const std::function<void(int64_t)>& task) {
  ::attn::detail::parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) task(t);
  });
}

void run_tasks_dynamic(int64_t n, const std::function<void(int64_t)>& task) {
  if (n <= 0) return;
#pragma omp parallel if (n > 1 && !omp_in_parallel())
  {
    ::attn::detail::DenormalGuard guard;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < n; ++t) task(t);
  }
}

// float32: the fused kernel's parts; float64: BLAS and plain loops (the
// float64 path is for gradient checks, not speed).
void product(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
             int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (trans_a)
    kernels::cpu::gemm(true, false, M, N, K, alpha, A, lda, B, ldb, accumulate ? 1.0 : 0.0, C, ldc);
  else
    kernels::cpu::parts::tile_gemm(M, N, K, alpha, A, lda, B, ldb, accumulate, C, ldc);
}
void product(bool trans_a, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
             const double* B, int64_t ldb, bool accumulate, double* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  kernels::cpu::gemm(trans_a, false, M, N, K, alpha, A, lda, B, ldb, accumulate ? 1.0 : 0.0, C, ldc);
}

void pack_kt(const float* K, int64_t S, int64_t E, int64_t tile, float* dst) {
  kernels::cpu::parts::pack_kt(K, S, E, E, tile, dst);
}
void pack_kt(const double* K, int64_t S, int64_t E, int64_t tile, double* dst) {
  for (int64_t j = 0; j < S; ++j)
    for (int64_t x = 0; x < E; ++x) dst[((j / tile) * E + x) * tile + j % tile] = K[j * E + x];
}

void online_softmax(float* s, int64_t rows, int64_t cols, int64_t lds, float* m, float* l, float* acc, int64_t Ev) {
  kernels::cpu::parts::online_softmax(s, rows, cols, lds, m, l, acc, Ev);
}
void online_softmax(double* s, int64_t rows, int64_t cols, int64_t lds, double* m, double* l, double* acc,
                    int64_t Ev) {
  constexpr double ninf = -std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    double* sr = s + r * lds;
    double mx = m[r];
    for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, sr[c]);
    if (mx == ninf) {
      std::fill(sr, sr + cols, 0.0);
      continue;
    }
    const double corr = std::exp(m[r] - mx);  // 0 when nothing was seen before
    for (int64_t e = 0; e < Ev; ++e) acc[r * Ev + e] *= corr;
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += (sr[c] = std::exp(sr[c] - mx));
    l[r] = l[r] * corr + sum;
    m[r] = mx;
  }
}

void finish_rows(const float* acc, const float* m, const float* l, int64_t rows, int64_t Ev, float* out, float* lse) {
  kernels::cpu::parts::finish_rows(acc, m, l, rows, Ev, out, lse);
}
void finish_rows(const double* acc, const double* m, const double* l, int64_t rows, int64_t Ev, double* out,
                 double* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    double* o = out + r * Ev;
    if (m[r] == -std::numeric_limits<double>::infinity() || l[r] == 0.0) {
      std::fill(o, o + Ev, 0.0);
      lse[r] = -std::numeric_limits<double>::infinity();
      continue;
    }
    for (int64_t e = 0; e < Ev; ++e) o[e] = acc[r * Ev + e] / l[r];
    lse[r] = m[r] + std::log(l[r]);
  }
}

void probs_from_lse(float* s, int64_t rows, int64_t cols, int64_t lds, const float* lse) {
  kernels::cpu::parts::probs_from_lse(s, rows, cols, lds, lse);
}
void probs_from_lse(double* s, int64_t rows, int64_t cols, int64_t lds, const double* lse) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      double& x = s[r * lds + c];
      x = lse[r] == -std::numeric_limits<double>::infinity() ? 0.0 : std::exp(x - lse[r]);
    }
}

void score_grad(const float* p, float* dp, const float* fprime, const float* D, int64_t rows, int64_t cols, int64_t ld,
                float scale) {
  kernels::cpu::parts::score_grad(p, dp, fprime, D, rows, cols, ld, scale);
}
void score_grad(const double* p, double* dp, const double* fprime, const double* D, int64_t rows, int64_t cols,
                int64_t ld, double scale) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t x = r * ld + c;
      dp[x] = p[x] == 0.0 ? 0.0 : p[x] * (dp[x] - D[r]) * (fprime ? fprime[x] : 1.0) * scale;
    }
}

bool should_record(const std::vector<Tensor>& inputs) { return autograd::should_record(inputs); }

void record(const std::vector<Tensor>& inputs, Tensor& out,
            std::function<std::vector<Tensor>(const Tensor& grad)> backward) {
  autograd::record("FlexAttentionBackward", inputs, out,
                   [bw = std::move(backward)](const Tensor& grad, const std::vector<bool>&) { return bw(grad); });
}

}  // namespace detail

Captured::Captured(const Tensor& tensor) : state_(std::make_shared<detail::CapturedState>()) {
  ATTN_CHECK(tensor.defined(), "flex::Captured: the tensor is undefined");
  const DType dt = tensor.dtype();
  ATTN_CHECK(dt == kFloat32 || dt == kFloat64 || dt == kInt64 || dt == kBool,
             "flex::Captured: float32, float64, int64 or bool tensors, got ", dtype_name(dt));
  ATTN_CHECK(tensor.dim() <= detail::CapturedState::kMaxDim, "flex::Captured: at most ",
             detail::CapturedState::kMaxDim, " dims, got ", tensor.dim());
  auto& s = *state_;
  s.source = tensor;
  s.data = tensor.detach().to(kFloat64).contiguous();  // int64 ids are exact below 2^53
  s.values = s.data.data<double>();
  s.data32 = s.data.to(kFloat32);
  s.values32 = s.data32.data<float>();
  s.dim = static_cast<int>(tensor.dim());
  int64_t stride = 1;
  for (int d = s.dim - 1; d >= 0; --d) {
    s.sizes[d] = tensor.size(d);
    s.strides[d] = stride;
    stride *= tensor.size(d);
  }
  detail::g_live.push_back(state_);
}

const Tensor& Captured::tensor() const { return state_->source; }

double BlockMask::density() const {
  if (states.empty()) return 0.0;
  return static_cast<double>(std::count_if(states.begin(), states.end(), [](uint8_t s) { return s != Empty; })) /
         static_cast<double>(states.size());
}

}  // namespace attn::nn::functional::flex
