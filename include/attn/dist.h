// Training beyond one process, over MPI (as torch.distributed with its MPI
// backend): a process group and its collectives, data-parallel training
// (DistributedDataParallel), and ring attention for a sequence sharded across
// processes (context parallelism).
//
//   attn::dist::ProcessGroup pg = attn::dist::init();   // under mpirun, or alone: a group of one
//   attn::dist::DistributedDataParallel ddp(model, pg);  // rank 0's weights everywhere
//   auto loss = ...; loss.backward();                    // gradients averaged over the ranks
//
// attn is built with MPI when CMake finds it (option ATTN_WITH_MPI; Debian's
// libopenmpi-dev); without it, available() is false and init() throws
// "attn was built without MPI".
//
// Errors return as attn::Error, they never abort the process: every wait is
// bounded by the group's timeout (InitOptions::timeout), so a rank that died
// or hangs makes the others throw ("... timed out after 30 s ...") instead of
// waiting forever. A group that timed out is broken: every later call throws.
// Collectives must be called by every rank in the same order, as in MPI.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "attn/attention.h"
#include "attn/functional.h"
#include "attn/nn/module.h"
#include "attn/tensor.h"

namespace attn::dist {

namespace detail {
struct Group;
struct Request;
}  // namespace detail

// Whether attn was built with MPI.
bool available();

// Sum, Mean (the sum divided by the group's size; torch's ReduceOp.AVG) and
// Max, for float32, float64 and int64 tensors (Mean: floating only).
enum class ReduceOp { Sum, Mean, Max };

struct InitOptions {
  // Seconds any one operation may wait for the other ranks before it throws
  // (torch's timeout). The environment variable ATTN_DIST_TIMEOUT, when set,
  // overrides it.
  ATTN_ARG(double, timeout) = 300.0;
};

// A non-blocking operation in flight (torch's Work). The tensors it reads or
// writes must not be touched until it completes; it keeps them alive.
class Work {
 public:
  Work() = default;
  // True once the operation has finished (drives MPI's progress).
  bool is_completed();
  // Blocks until the operation has finished, then applies what remains of it
  // (the division of a Mean). Throws attn::Error on timeout or failure.
  void wait();

 private:
  friend class ProcessGroup;
  explicit Work(std::shared_ptr<detail::Request> r) : impl_(std::move(r)) {}
  std::shared_ptr<detail::Request> impl_;
};

// The processes of one job (MPI_COMM_WORLD). Copies share the group. Tensors
// passed to collectives must be contiguous; results are written in place.
class ProcessGroup {
 public:
  ProcessGroup() = default;
  int rank() const;
  int size() const;
  double timeout() const;

  // Every rank's `tensor` becomes the reduction of all ranks' tensors.
  void all_reduce(const Tensor& tensor, ReduceOp op = ReduceOp::Sum);
  Work all_reduce_async(const Tensor& tensor, ReduceOp op = ReduceOp::Sum);
  // Every rank's `tensor` becomes rank `root`'s (same shape and dtype everywhere).
  void broadcast(const Tensor& tensor, int root = 0);
  Work broadcast_async(const Tensor& tensor, int root = 0);
  // Every rank's tensors, in rank order (each rank passes the same shape).
  std::vector<Tensor> all_gather(const Tensor& tensor);
  // The same, concatenated along dim 0 (torch's all_gather_into_tensor).
  Tensor all_gather_into_tensor(const Tensor& tensor);
  // `input`'s dim 0 is size() equal chunks; rank r receives the reduction of
  // every rank's chunk r (torch's reduce_scatter_tensor).
  Tensor reduce_scatter(const Tensor& input, ReduceOp op = ReduceOp::Sum);
  // Point to point; `tag` tells apart messages between the same two ranks.
  void send(const Tensor& tensor, int dst, int tag = 0);
  void recv(const Tensor& tensor, int src, int tag = 0);
  Work isend(const Tensor& tensor, int dst, int tag = 0);
  Work irecv(const Tensor& tensor, int src, int tag = 0);
  void barrier();

 private:
  friend ProcessGroup init(const InitOptions&);
  explicit ProcessGroup(std::shared_ptr<detail::Group> g) : impl_(std::move(g)) {}
  const detail::Group& group(const char* op) const;
  std::shared_ptr<detail::Request> peer_request(const char* op, const Tensor& t, int peer, int tag) const;
  std::shared_ptr<detail::Group> impl_;
};

// The group of this job's processes: under mpirun / mpiexec every process it
// started; a process started without a launcher is a group of one. MPI is
// initialised on the first call and finalised at exit.
ProcessGroup init(const InitOptions& options = {});

// ---- Data parallel (torch.nn.parallel.DistributedDataParallel) ----------------------

struct DistributedDataParallelOptions {
  // Gradients are sent in buckets of about this size (PyTorch's default, 25 MB).
  ATTN_ARG(double, bucket_cap_mb) = 25.0;
  // Broadcast rank 0's buffers at construction (parameters always are).
  ATTN_ARG(bool, broadcast_buffers) = true;
};

// Wraps a module for data-parallel training: every rank holds the same
// weights (rank 0's, broadcast at construction), runs forward and backward on
// its own share of the batch, and after backward every parameter's grad() is
// the mean of the ranks' gradients. The gradients travel in buckets (the
// parameters in reverse order, as backward produces them), each all-reduced
// as soon as all of its gradients are final, while backward goes on; buckets
// are started in the same order on every rank, so the result is the same on
// every rank and in every run. A parameter that gets no gradient on a rank
// contributes zeros. The module must outlive the wrapper and keep its
// parameters (no new ones after wrapping).
class DistributedDataParallel {
 public:
  DistributedDataParallel(nn::Module& module, ProcessGroup group, const DistributedDataParallelOptions& options = {});
  ~DistributedDataParallel();
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  nn::Module& module() { return module_; }
  const ProcessGroup& process_group() const { return group_; }
  // The buckets: indices into module().parameters() (for inspection and tests).
  std::vector<std::vector<int64_t>> bucket_indices() const;

  // For its scope, backward leaves the gradients local and accumulating (as
  // torch's no_sync()); the first backward after it averages the sums.
  class NoSyncGuard {
   public:
    explicit NoSyncGuard(DistributedDataParallel& d) : d_(d), prev_(d.sync_) { d_.sync_ = false; }
    ~NoSyncGuard() { d_.sync_ = prev_; }
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    DistributedDataParallel& d_;
    bool prev_;
  };
  NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  struct Reducer;

 private:
  nn::Module& module_;
  ProcessGroup group_;
  bool sync_ = true;
  std::unique_ptr<Reducer> reducer_;
};

// ---- Ring attention (context parallelism) ----------------------------------------------

struct RingOptions {
  // false: rank r holds rows [r L/P, (r + 1) L/P) of the sequence. true: the
  // sequence is cut into 2P equal chunks and rank r holds chunks r and
  // 2P - 1 - r, in that order, so that causal attention gives every rank the
  // same work.
  ATTN_ARG(bool, zigzag) = false;
};

// Attention over a sequence sharded across the group's ranks: each rank
// passes its rows of q (B..., Hq, Lr, E), k and v (B..., Hk, Sr, E / Ev) and
// gets its rows of the output (B..., Hq, Lr, Ev), equal to
// scaled_dot_product_attention on the gathered sequence. K/V blocks travel
// around the ring (non-blocking send/recv overlapped with the local fused
// attention); the partial outputs merge through their LSEs. Differentiable
// in q, k and v: backward sends each block's dK/dV around the ring back to
// its owner. Positions are global: is_causal (either alignment), window,
// stride, ALiBi, softcap, scale and GQA keep their meaning over the whole
// sequence, and key_lengths (B...) counts keys of the whole sequence. Not
// supported (an error says so): attn_mask, dropout, global_tokens. float32.
// Memory per rank O((Lr + Sr) E): no rank holds more than two K/V blocks.
Tensor ring_attention(const Tensor& q, const Tensor& k, const Tensor& v, const nn::functional::SdpaOptions& options,
                      ProcessGroup& group, const RingOptions& ring = {});

}  // namespace attn::dist
