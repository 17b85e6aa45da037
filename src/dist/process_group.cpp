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

// Whether r has completed: a composite operation advances its parts.
bool poll(Request& r) { return r.advance ? r.advance() : detail::test(r); }

// Blocks until r completes; throws (and marks the group broken) once the
// group's timeout has passed. Spins briefly, then yields and sleeps, so that
// ranks sharing cores leave them to each other.
void wait(Request& r) {
  if (r.done) return;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto deadline = start + std::chrono::duration<double>(r.group->timeout);
  for (int64_t spins = 0;; ++spins) {
    if (poll(r)) break;
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

// Reduces n elements of `from` into `into` (sum or max).
template <class T>
void reduce_into(T* into, const T* from, int64_t n, bool max) {
  if (max) {
    for (int64_t i = 0; i < n; ++i) into[i] = into[i] < from[i] ? from[i] : into[i];
  } else {
    for (int64_t i = 0; i < n; ++i) into[i] += from[i];
  }
}

// The ring all-reduce (as NCCL's and Gloo's): the buffer is cut into P
// chunks; in P - 1 steps each rank passes a chunk to rank + 1 and adds the
// one from rank - 1 (reduce-scatter), then in P - 1 more passes the finished
// chunks on (all-gather). Each rank sends and receives 2 (P - 1) / P of the
// buffer whatever P, and chunk c is always summed in the same order (ranks
// c + 1, c + 2, ..., c), so the result is the same on every rank and in
// every run. Driven by non-blocking send/recv, so waits stay bounded.
struct RingAllReduce {
  std::shared_ptr<detail::Group> group;
  char* base = nullptr;
  size_t elem = 4;
  detail::Type type = detail::Type::F32;
  bool max = false;
  int P = 1, rank = 0, step = 0, tag = 0;
  std::vector<int64_t> bounds;  // chunk c is elements [bounds[c], bounds[c + 1])
  std::vector<char> tmp;
  std::shared_ptr<Request> send, recv;
  int recv_chunk = 0;

  int mod(int c) const { return ((c % P) + P) % P; }
  int64_t len(int c) const { return bounds[c + 1] - bounds[c]; }
  char* at(int c) const { return base + static_cast<size_t>(bounds[c]) * elem; }

  void start() {
    const bool scatter = step < P - 1;
    const int j = scatter ? step : step - (P - 1);
    const int out = scatter ? mod(rank - j) : mod(rank + 1 - j);
    recv_chunk = scatter ? mod(rank - j - 1) : mod(rank - j);
    send = std::make_shared<Request>();
    recv = std::make_shared<Request>();
    send->group = recv->group = group;
    send->op = recv->op = "all_reduce";
    const int t = tag + step;
    detail::start_recv(*recv, scatter ? tmp.data() : at(recv_chunk), len(recv_chunk) * static_cast<int64_t>(elem),
                       mod(rank - 1), t, /*internal=*/true);
    detail::start_send(*send, at(out), len(out) * static_cast<int64_t>(elem), mod(rank + 1), t, /*internal=*/true);
  }

  bool advance() {
    for (;;) {
      if (step == 2 * (P - 1)) return true;
      if (!send) start();
      const bool r_done = recv->done || (recv->done = detail::test(*recv));
      const bool s_done = send->done || (send->done = detail::test(*send));
      if (!r_done || !s_done) return false;
      if (step < P - 1) {
        const int64_t n = len(recv_chunk);
        switch (type) {
          case detail::Type::F32:
            reduce_into(reinterpret_cast<float*>(at(recv_chunk)), reinterpret_cast<const float*>(tmp.data()), n, max);
            break;
          case detail::Type::F64:
            reduce_into(reinterpret_cast<double*>(at(recv_chunk)), reinterpret_cast<const double*>(tmp.data()), n,
                        max);
            break;
          default:
            reduce_into(reinterpret_cast<int64_t*>(at(recv_chunk)), reinterpret_cast<const int64_t*>(tmp.data()), n,
                        max);
            break;
        }
      }
      ++step;
      send.reset();
      recv.reset();
    }
  }
};

// Tags of a collective's messages: its number among the group's collectives
// (the same on every rank, since all call them in the same order) times the
// steps it may take, so that collectives in flight at once never take each
// other's messages.
int collective_tag(detail::Group& g, int steps) {
  const int64_t slots = std::max<int64_t>(1, detail::max_tag() / std::max(1, steps) - 1);
  return static_cast<int>((g.collectives++ % slots) * steps);
}

}  // namespace

// ---- Work ---------------------------------------------------------------------------

bool Work::is_completed() {
  if (!impl_) return true;
  if (impl_->done) return true;
  if (!poll(*impl_)) return false;
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
  auto ring = std::make_shared<RingAllReduce>();
  ring->group = impl_;
  ring->base = static_cast<char*>(t.raw_data());
  ring->elem = itemsize(t.dtype());
  ring->type = type;
  ring->max = op == ReduceOp::Max;
  ring->P = g.size, ring->rank = g.rank;
  ring->tag = collective_tag(*impl_, 2 * (g.size - 1));
  int64_t biggest = 0;
  for (int c = 0; c <= g.size; ++c) ring->bounds.push_back(t.numel() * c / g.size);
  for (int c = 0; c < g.size; ++c) biggest = std::max(biggest, ring->len(c));
  ring->tmp.resize(static_cast<size_t>(biggest) * ring->elem);
  r->advance = [ring] { return ring->advance(); };
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

// The checks of send and recv: `peer` another rank, a usable tag.
std::shared_ptr<Request> ProcessGroup::peer_request(const char* op, const Tensor& t, int peer, int tag) const {
  const auto& g = group(op);
  check_tensor(op, t);
  ATTN_CHECK(peer >= 0 && peer < g.size && peer != g.rank, "attn::dist::", op, ": ", op[0] == 's' ? "destination " : "source ",
             peer, " must be another rank of the group (rank ", g.rank, " of ", g.size, ")");
  ATTN_CHECK(tag >= 0 && tag <= detail::max_tag(), "attn::dist::", op, ": tag must be in [0, ", detail::max_tag(),
             "], got ", tag);
  return make_request(impl_, op, {t});
}

Work ProcessGroup::isend(const Tensor& t, int dst, int tag) {
  auto r = peer_request("send", t, dst, tag);
  detail::start_send(*r, t.raw_data(), nbytes(t), dst, tag);
  return Work(r);
}

Work ProcessGroup::irecv(const Tensor& t, int src, int tag) {
  auto r = peer_request("recv", t, src, tag);
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
