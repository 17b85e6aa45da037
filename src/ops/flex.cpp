// flex_attention's parts that do not depend on the modifiers: argument
// checks, the thread pool, autograd recording, and Captured tensors (their
// reads, bounds and the registry of live ones). The loops are templates in
// include/attn/flex_impl.h.
#include <algorithm>

#include "attn/flex.h"
#include "autograd/node.h"
#include "core/parallel.h"
#include "kernels/cpu/attention.h"
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

void tile_product(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                  int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  kernels::cpu::attention_tile_gemm(M, N, K, alpha, A, lda, B, ldb, accumulate, C, ldc);
}

float exp_shift_sum(float* x, int64_t n, float m) { return kernels::cpu::attention_exp_sub_sum(x, n, m); }

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
  auto& s = *state_;
  s.source = tensor;
  s.data = tensor.detach().contiguous();
  s.ptr = s.data.raw_data();
  s.dtype = dt;
  s.dim = tensor.dim();
  s.sizes = tensor.shape();
  s.strides.assign(static_cast<size_t>(s.dim), 1);
  for (int64_t d = s.dim - 2; d >= 0; --d)
    s.strides[static_cast<size_t>(d)] = s.strides[static_cast<size_t>(d + 1)] * tensor.size(d + 1);
  detail::g_live.push_back(state_);
}

const Tensor& Captured::tensor() const { return state_->source; }

double BlockMask::density() const {
  if (states.empty()) return 0.0;
  return static_cast<double>(std::count_if(states.begin(), states.end(), [](uint8_t s) { return s != Empty; })) /
         static_cast<double>(states.size());
}

}  // namespace attn::nn::functional::flex
