// attn::dist's process group: argument checks, the bounded wait, and the
// collectives over the transport of comm.h.
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <thread>

#include "attn/autograd.h"
#include "attn/dist.h"
#include "attn/ops.h"
#include "dist/comm.h"

namespace attn::dist {

using detail::Request;

bool available() { return detail::transport_available(); }

namespace {

std::string describe(const Tensor& t) { return std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape()); }

void check_tensor(const char* op, const Tensor& t) {
  ATTN_CHECK(t.defined(), "attn::dist::", op, ": the tensor is undefined");
  ATTN_CHECK(t.is_contiguous(), "attn::dist::", op, ": the tensor must be contiguous, got ", describe(t),
             " with strides ", shape_str(t.strides()), " (call .contiguous() and copy back)");
}

detail::Type reduce_type(const char* op, const Tensor& t, ReduceOp r) {
  switch (t.dtype()) {
    case kFloat32: return detail::Type::F32;
    case kFloat64: return detail::Type::F64;
    case kInt64:
      ATTN_CHECK(r != ReduceOp::Mean, "attn::dist::", op, ": Mean needs a floating tensor, got int64");
      return detail::Type::I64;
    default: break;
  }
  throw Error(std::string("attn::dist::") + op + ": reductions take float32, float64 or int64 tensors, got " +
              dtype_name(t.dtype()));
}

int64_t nbytes(const Tensor& t) { return t.numel() * static_cast<int64_t>(itemsize(t.dtype())); }

// Blocks until r completes; throws (and marks the group broken) once the
// group's timeout has passed. Spins briefly, then yields and sleeps, so that
// ranks sharing cores leave them to each other.
void wait(Request& r) {
  if (r.done) return;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto deadline = start + std::chrono::duration<double>(r.group->timeout);
  for (int64_t spins = 0;; ++spins) {
    if (detail::test(r)) break;
    if (spins < 200) continue;
    if (spins < 2000) {
      std::this_thread::yield();
      continue;
    }
    const auto now = clock::now();
    if (now > deadline) {
      r.group->broken = true;
      r.group->why_broken = r.op + " timed out";
      throw Error("attn::dist::" + r.op + ": timed out after " + std::to_string(static_cast<int>(r.group->timeout)) +
                  " s on rank " + std::to_string(r.group->rank) + " of " + std::to_string(r.group->size) +
                  " waiting for the other ranks (one may have died, hung, or called the collectives in another "
                  "order); the group is now unusable");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(spins < 20000 ? 20 : 200));
  }
  r.done = true;
  if (r.then) {
    auto f = std::move(r.then);
    r.then = nullptr;
    f();
  }
  r.keep.clear();
}

}  // namespace

// ---- Work ---------------------------------------------------------------------------

bool Work::is_completed() {
  if (!impl_) return true;
  if (impl_->done) return true;
  if (!detail::test(*impl_)) return false;
  dist::wait(*impl_);
  return true;
}

void Work::wait() {
  if (impl_) dist::wait(*impl_);
}

// ---- ProcessGroup --------------------------------------------------------------------

const detail::Group& ProcessGroup::group(const char* op) const {
  ATTN_CHECK(impl_ != nullptr, "attn::dist::", op, ": the process group is not initialised (use attn::dist::init())");
  ATTN_CHECK(!impl_->broken, "attn::dist::", op, ": the process group is unusable since an earlier operation "
             "failed (", impl_->why_broken, ")");
  return *impl_;
}

int ProcessGroup::rank() const { return group("rank").rank; }
int ProcessGroup::size() const { return group("size").size; }
double ProcessGroup::timeout() const { return group("timeout").timeout; }

namespace {
std::shared_ptr<Request> make_request(const std::shared_ptr<detail::Group>& g, const char* op,
                                      std::vector<Tensor> keep) {
  auto r = std::make_shared<Request>();
  r->group = g;
  r->op = op;
  r->keep = std::move(keep);
  return r;
}
}  // namespace

Work ProcessGroup::all_reduce_async(const Tensor& t, ReduceOp op) {
  const auto& g = group("all_reduce");
  check_tensor("all_reduce", t);
  const detail::Type type = reduce_type("all_reduce", t, op);
  auto r = make_request(impl_, "all_reduce", {t});
  if (g.size == 1) {
    r->done = true;
    return Work(r);
  }
  detail::start_all_reduce(*r, t.raw_data(), t.numel(), type, op == ReduceOp::Max ? detail::Op::Max : detail::Op::Sum);
  if (op == ReduceOp::Mean) {
    const double inv = 1.0 / g.size;
    r->then = [t = Tensor(t), inv]() mutable {
      NoGradGuard ng;
      t.mul_(inv);
    };
  }
  return Work(r);
}

void ProcessGroup::all_reduce(const Tensor& t, ReduceOp op) { all_reduce_async(t, op).wait(); }

Work ProcessGroup::broadcast_async(const Tensor& t, int root) {
  const auto& g = group("broadcast");
  check_tensor("broadcast", t);
  ATTN_CHECK(root >= 0 && root < g.size, "attn::dist::broadcast: root ", root, " is not a rank of a group of ", g.size);
  auto r = make_request(impl_, "broadcast", {t});
  if (g.size == 1) {
    r->done = true;
    return Work(r);
  }
  detail::start_broadcast(*r, t.raw_data(), nbytes(t), root);
  return Work(r);
}

void ProcessGroup::broadcast(const Tensor& t, int root) { broadcast_async(t, root).wait(); }

Tensor ProcessGroup::all_gather_into_tensor(const Tensor& t) {
  const auto& g = group("all_gather");
  check_tensor("all_gather", t);
  Shape s = t.shape();
  if (s.empty()) s = {1};
  s[0] *= g.size;
  Tensor out = Tensor::make(s, t.dtype());
  auto r = make_request(impl_, "all_gather", {t, out});
  if (g.size == 1) {
    std::memcpy(out.raw_data(), t.raw_data(), static_cast<size_t>(nbytes(t)));
    return out;
  }
  detail::start_all_gather(*r, t.raw_data(), out.raw_data(), nbytes(t));
  dist::wait(*r);
  return out;
}

std::vector<Tensor> ProcessGroup::all_gather(const Tensor& t) {
  Tensor all = all_gather_into_tensor(t);
  const int P = size();
  std::vector<Tensor> out;
  Tensor rows = all.reshape({P, -1});
  for (int i = 0; i < P; ++i) out.push_back(rows.select(0, i).reshape(t.shape()));
  return out;
}

Tensor ProcessGroup::reduce_scatter(const Tensor& t, ReduceOp op) {
  const auto& g = group("reduce_scatter");
  check_tensor("reduce_scatter", t);
  const detail::Type type = reduce_type("reduce_scatter", t, op);
  ATTN_CHECK(t.dim() >= 1 && t.size(0) % g.size == 0, "attn::dist::reduce_scatter: dim 0 of the input must be a "
             "multiple of the group's size (", g.size, "), got ", describe(t));
  Shape s = t.shape();
  s[0] /= g.size;
  Tensor out = Tensor::make(s, t.dtype());
  if (g.size == 1) {
    NoGradGuard ng;
    out.copy_(t);
  } else {
    auto r = make_request(impl_, "reduce_scatter", {t, out});
    detail::start_reduce_scatter(*r, t.raw_data(), out.raw_data(), out.numel(), type,
                                 op == ReduceOp::Max ? detail::Op::Max : detail::Op::Sum);
    dist::wait(*r);
  }
  if (op == ReduceOp::Mean) {
    NoGradGuard ng;
    out.mul_(1.0 / g.size);
  }
  return out;
}

Work ProcessGroup::isend(const Tensor& t, int dst, int tag) {
  const auto& g = group("send");
  check_tensor("send", t);
  ATTN_CHECK(dst >= 0 && dst < g.size && dst != g.rank, "attn::dist::send: destination ", dst,
             " must be another rank of the group (rank ", g.rank, " of ", g.size, ")");
  ATTN_CHECK(tag >= 0, "attn::dist::send: tag must be >= 0, got ", tag);
  auto r = make_request(impl_, "send", {t});
  detail::start_send(*r, t.raw_data(), nbytes(t), dst, tag);
  return Work(r);
}

Work ProcessGroup::irecv(const Tensor& t, int src, int tag) {
  const auto& g = group("recv");
  check_tensor("recv", t);
  ATTN_CHECK(src >= 0 && src < g.size && src != g.rank, "attn::dist::recv: source ", src,
             " must be another rank of the group (rank ", g.rank, " of ", g.size, ")");
  ATTN_CHECK(tag >= 0, "attn::dist::recv: tag must be >= 0, got ", tag);
  auto r = make_request(impl_, "recv", {t});
  detail::start_recv(*r, t.raw_data(), nbytes(t), src, tag);
  return Work(r);
}

void ProcessGroup::send(const Tensor& t, int dst, int tag) { isend(t, dst, tag).wait(); }
void ProcessGroup::recv(const Tensor& t, int src, int tag) { irecv(t, src, tag).wait(); }

void ProcessGroup::barrier() {
  const auto& g = group("barrier");
  if (g.size == 1) return;
  auto r = make_request(impl_, "barrier", {});
  detail::start_barrier(*r);
  dist::wait(*r);
}

ProcessGroup init(const InitOptions& options) {
  double timeout = options.timeout();
  if (const char* env = std::getenv("ATTN_DIST_TIMEOUT")) {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    ATTN_CHECK(end != env && *end == '\0' && v > 0, "attn::dist::init: ATTN_DIST_TIMEOUT must be a positive number "
               "of seconds, got '", env, "'");
    timeout = v;
  }
  ATTN_CHECK(timeout > 0, "attn::dist::init: timeout must be > 0 seconds, got ", timeout);
  return ProcessGroup(detail::transport_init(timeout));
}

}  // namespace attn::dist
