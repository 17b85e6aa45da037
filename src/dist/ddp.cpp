// DistributedDataParallel: rank 0's weights at start, then gradients
// averaged over the ranks in buckets launched during backward (PyTorch's
// reducer, simplified: one flat buffer per bucket, buckets started in index
// order so every rank issues the same collectives in the same order).
#include "attn/autograd.h"
#include "attn/dist.h"
#include "attn/ops.h"

namespace attn::dist {

struct DistributedDataParallel::Reducer {
  struct Bucket {
    std::vector<int64_t> params;   // indices into Reducer::params
    std::vector<int64_t> offsets;  // element offset of each in flat
    Tensor flat;
    int64_t numel = 0;
    int64_t pending = 0;           // gradients not yet final in this backward
    Work work;
  };

  DistributedDataParallel& owner;
  std::vector<Tensor> params;
  std::vector<int64_t> bucket_of;
  std::vector<Bucket> buckets;
  std::vector<int64_t> hooks;
  bool in_backward = false;
  size_t next_launch = 0;

  explicit Reducer(DistributedDataParallel& o) : owner(o) {}

  void start_backward() {
    in_backward = true;
    next_launch = 0;
    for (auto& b : buckets) {
      b.pending = static_cast<int64_t>(b.params.size());
      b.work = Work();
    }
  }

  void launch(Bucket& b) {
    NoGradGuard ng;
    for (size_t i = 0; i < b.params.size(); ++i) {
      const Tensor& p = params[static_cast<size_t>(b.params[i])];
      Tensor dst = b.flat.narrow(0, b.offsets[i], p.numel());
      Tensor g = p.grad();
      if (g.defined())
        dst.copy_(g.reshape({p.numel()}));
      else
        dst.zero_();
    }
    b.work = owner.group_.all_reduce_async(b.flat, ReduceOp::Sum);
  }

  // Starts every bucket whose turn has come and whose gradients are final;
  // tests the earlier ones so that MPI moves them along meanwhile.
  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) launch(buckets[next_launch++]);
    for (size_t i = 0; i < next_launch; ++i) buckets[i].work.is_completed();
  }

  void on_grad(int64_t index) {
    if (!owner.sync_) return;
    if (!in_backward) {
      start_backward();
      autograd::queue_callback([this] { finish(); });
    }
    Bucket& b = buckets[static_cast<size_t>(bucket_of[static_cast<size_t>(index)])];
    --b.pending;
    launch_ready();
  }

  // At the end of backward: start what is left (parameters without a
  // gradient this time send zeros or their earlier sum), wait, write the means.
  void finish() {
    in_backward = false;
    while (next_launch < buckets.size()) launch(buckets[next_launch++]);
    NoGradGuard ng;
    const double inv = 1.0 / owner.group_.size();
    for (auto& b : buckets) {
      b.work.wait();
      b.flat.mul_(inv);
      for (size_t i = 0; i < b.params.size(); ++i) {
        const Tensor& p = params[static_cast<size_t>(b.params[i])];
        Tensor mean = b.flat.narrow(0, b.offsets[i], p.numel()).reshape(p.shape());
        Tensor g = p.grad();
        if (g.defined())
          g.copy_(mean);
        else
          p.set_grad(mean.clone());
      }
      b.work = Work();
    }
  }
};

DistributedDataParallel::DistributedDataParallel(nn::Module& module, ProcessGroup group,
                                                 const DistributedDataParallelOptions& options)
    : module_(module), group_(std::move(group)), reducer_(std::make_unique<Reducer>(*this)) {
  constexpr const char* op = "DistributedDataParallel";
  ATTN_CHECK(options.bucket_cap_mb() > 0, op, ": bucket_cap_mb must be > 0, got ", options.bucket_cap_mb());
  (void)group_.size();  // throws on an uninitialised group
  for (const Tensor& p : module_.parameters()) ATTN_CHECK(p.is_contiguous(), op, ": parameters must be contiguous");
  {
    NoGradGuard ng;
    for (const Tensor& p : module_.parameters()) group_.broadcast(p, 0);
    if (options.broadcast_buffers())
      for (const Tensor& b : module_.buffers()) {
        if (!b.is_contiguous()) continue;  // a view into another buffer is broadcast with it
        group_.broadcast(b, 0);
      }
  }
  Reducer& r = *reducer_;
  for (const Tensor& p : module_.parameters())
    if (p.requires_grad()) r.params.push_back(p);
  const double cap = options.bucket_cap_mb() * 1024.0 * 1024.0;
  r.bucket_of.assign(r.params.size(), -1);
  // Reverse order (backward produces the last layers' gradients first); a
  // new bucket at the cap or where the dtype changes.
  for (int64_t i = static_cast<int64_t>(r.params.size()) - 1; i >= 0; --i) {
    const Tensor& p = r.params[static_cast<size_t>(i)];
    const double bytes = static_cast<double>(p.numel()) * static_cast<double>(itemsize(p.dtype()));
    bool fresh = r.buckets.empty();
    if (!fresh) {
      const auto& last = r.buckets.back();
      const Tensor& first = r.params[static_cast<size_t>(last.params.front())];
      const double used = static_cast<double>(last.numel) * static_cast<double>(itemsize(first.dtype()));
      fresh = first.dtype() != p.dtype() || used + bytes > cap;
    }
    if (fresh) r.buckets.emplace_back();
    auto& b = r.buckets.back();
    b.params.push_back(i);
    b.offsets.push_back(b.numel);
    b.numel += p.numel();
    r.bucket_of[static_cast<size_t>(i)] = static_cast<int64_t>(r.buckets.size()) - 1;
  }
  for (auto& b : r.buckets) b.flat = zeros({b.numel}, r.params[static_cast<size_t>(b.params.front())].dtype());
  for (size_t i = 0; i < r.params.size(); ++i) {
    const int64_t index = static_cast<int64_t>(i);
    r.hooks.push_back(autograd::register_post_accumulate_grad_hook(
        r.params[i], [&r, index](const Tensor&) { r.on_grad(index); }));
  }
}

DistributedDataParallel::~DistributedDataParallel() {
  for (size_t i = 0; i < reducer_->params.size(); ++i)
    autograd::remove_post_accumulate_grad_hook(reducer_->params[i], reducer_->hooks[i]);
}

std::vector<std::vector<int64_t>> DistributedDataParallel::bucket_indices() const {
  // Reducer indices count only parameters that require grad; map them back.
  std::vector<int64_t> all;
  const auto ps = module_.parameters();
  for (size_t i = 0; i < ps.size(); ++i)
    if (ps[i].requires_grad()) all.push_back(static_cast<int64_t>(i));
  std::vector<std::vector<int64_t>> out;
  for (const auto& b : reducer_->buckets) {
    out.emplace_back();
    for (int64_t i : b.params) out.back().push_back(all[static_cast<size_t>(i)]);
  }
  return out;
}

}  // namespace attn::dist
