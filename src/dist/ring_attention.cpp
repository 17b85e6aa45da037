// Ring attention: each rank keeps its queries, the K/V blocks travel around
// the ring (rank r sends to r + 1 and receives from r - 1) while the fused
// kernel works on the block at hand, and the partial outputs merge through
// their LSEs. Backward walks the ring the same way with the merged output
// and LSE, so each block's call yields that block's exact share of dQ, dK
// and dV; the dK/dV accumulators travel with their block and reach its owner
// after a full turn.
#include <algorithm>
#include <cmath>
#include <limits>

#include "attn/autograd.h"
#include "attn/dist.h"
#include "attn/ops.h"
#include "autograd/node.h"

namespace attn::dist {

namespace F = nn::functional;

namespace {

constexpr const char* kOp = "ring_attention";

// A run of a rank's rows: global position `start`, local row `row`, `len` rows.
struct Segment {
  int64_t start, row, len;
};

std::vector<Segment> segments(int rank, int P, int64_t rows, bool zigzag) {
  if (!zigzag) return {{rank * rows, 0, rows}};
  const int64_t c = rows / 2;
  return {{rank * c, 0, c}, {(2 * P - 1 - rank) * c, c, c}};
}

struct Plan {
  int P = 1, rank = 0;
  int64_t Lr = 0, Sr = 0, gdiag = 0;
  bool zigzag = false;
  std::vector<Segment> qseg;
  F::SdpaOptions base;  // the caller's options less key_lengths and alignment
  Tensor key_lengths;   // global, or undefined
  F::Window window;
  bool causal = false;
  int64_t stride = 0;
};

// Options for queries `qs` against keys `ks` (global positions), or nullopt
// when no key of the pair can be seen.
std::optional<F::SdpaOptions> pair_options(const Plan& p, const Segment& qs, const Segment& ks) {
  const int64_t d = p.gdiag + qs.start - ks.start;  // local query i aligns with local key i + d
  const int64_t qlast = qs.len - 1, klast = ks.len - 1;
  if (p.causal && 0 > qlast + d) return std::nullopt;                     // every key after every query
  if (p.stride == 0 && p.window.right >= 0 && 0 > qlast + d + p.window.right) return std::nullopt;
  if (p.stride == 0 && p.window.left >= 0 && klast < d - p.window.left) return std::nullopt;
  F::SdpaOptions o = p.base;
  o.causal_align(F::CausalAlign::TopLeft).diagonal_offset(d);
  if (p.key_lengths.defined()) {
    const Tensor g = p.key_lengths.contiguous();
    Tensor kl = Tensor::make(g.shape(), kInt64);
    int64_t seen = 0;
    for (int64_t b = 0; b < g.numel(); ++b) {
      kl.data<int64_t>()[b] = std::clamp<int64_t>(g.data<int64_t>()[b] - ks.start, 0, ks.len);
      seen = std::max(seen, kl.data<int64_t>()[b]);
    }
    if (seen == 0) return std::nullopt;
    o.key_lengths(kl);
  }
  return o;
}

// Merges a block's (out, lse) into the running (acc, acc_lse), rows of one
// query segment, float32 contiguous: the LSE-weighted mean of the two; a
// side with LSE -inf (nothing seen yet) has weight 0, and two of them stay 0.
void merge(Tensor& acc, Tensor& acc_lse, const Tensor& out, const Tensor& lse) {
  const int64_t rows = acc_lse.numel(), Ev = acc.size(-1);
  float* a = acc.data<float>();
  float* al = acc_lse.data<float>();
  const Tensor oc = out.contiguous(), lc = lse.contiguous();
  const float* o = oc.data<float>();
  const float* l = lc.data<float>();
  constexpr double ninf = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < rows; ++i) {
    const double x = al[i], y = l[i];
    const double m = std::max(x, y);
    if (m == ninf) continue;
    const double wx = x == ninf ? 0.0 : std::exp(x - m), wy = y == ninf ? 0.0 : std::exp(y - m);
    const double s = wx + wy;
    const float fx = static_cast<float>(wx / s), fy = static_cast<float>(wy / s);
    float* ar = a + i * Ev;
    const float* orow = o + i * Ev;
    for (int64_t e = 0; e < Ev; ++e) ar[e] = fx * ar[e] + fy * orow[e];
    al[i] = static_cast<float>(m + std::log(s));
  }
}

Tensor neg_int(const Tensor& t) {
  Tensor c = t.contiguous().clone();
  for (int64_t i = 0; i < c.numel(); ++i) c.data<int64_t>()[i] = -c.data<int64_t>()[i];
  return c;
}

Tensor rows(const Tensor& t, const Segment& s) { return t.narrow(-2, s.row, s.len); }

// Starts sending `send` to rank + 1 and receiving into `recv` from rank - 1.
void pass_on(ProcessGroup& g, const Plan& p, const std::vector<Tensor>& send, const std::vector<Tensor>& recv,
             std::vector<Work>& work, int tag) {
  const int next = (p.rank + 1) % p.P, prev = (p.rank + p.P - 1) % p.P;
  for (size_t i = 0; i < send.size(); ++i) {
    work.push_back(g.irecv(recv[i], prev, tag + static_cast<int>(i)));
    work.push_back(g.isend(send[i], next, tag + static_cast<int>(i)));
  }
}

// Moves the block just received into `cur`; `nxt` becomes the buffer to
// receive into next, a fresh one in place of the caller's own tensor (which
// the ring reads but never writes).
void advance(Tensor& cur, Tensor& nxt, const Tensor& input) {
  std::swap(cur, nxt);
  if (nxt.raw_data() == input.raw_data()) nxt = Tensor::make(nxt.shape(), kFloat32);
}

void wait_all(std::vector<Work>& work) {
  for (auto& w : work) w.wait();
  work.clear();
}

// Walks the ring: at step t this rank holds the K/V block of rank r - t
// and passes it on to r + 1 (received into the spare buffers meanwhile)
// while visit(query segment index, key segment, k, v, options) runs on every
// pair of segments with something visible; then `send(t, work)` may start
// more transfers, all are waited for, and `arrived(t)` takes what came.
template <class Visit, class Send, class Arrived>
void ring_walk(const Plan& p, ProcessGroup& g, const Tensor& k, const Tensor& v, Visit&& visit, Send&& send,
               Arrived&& arrived) {
  Tensor cur_k = k.contiguous(), cur_v = v.contiguous();
  Tensor nxt_k = Tensor::make(cur_k.shape(), kFloat32), nxt_v = Tensor::make(cur_v.shape(), kFloat32);
  std::vector<Work> work;
  for (int t = 0; t < p.P; ++t) {
    const int owner = (p.rank - t + p.P) % p.P;
    if (t + 1 < p.P) pass_on(g, p, {cur_k, cur_v}, {nxt_k, nxt_v}, work, 0);
    for (size_t qi = 0; qi < p.qseg.size(); ++qi)
      for (const Segment& ks : segments(owner, p.P, p.Sr, p.zigzag))
        if (auto o = pair_options(p, p.qseg[qi], ks)) visit(qi, ks, cur_k, cur_v, *o);
    send(t, work);
    wait_all(work);
    arrived(t);
    if (t + 1 < p.P) {
      advance(cur_k, nxt_k, k);
      advance(cur_v, nxt_v, v);
    }
  }
}

struct Forward {
  Tensor out, lse;  // (B..., Hq, Lr, Ev), (B..., Hq, Lr)
};

Forward ring_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Plan& p, ProcessGroup& g) {
  NoGradGuard ng;
  std::vector<Tensor> acc, acc_lse;
  for (const Segment& s : p.qseg) {
    Shape os = q.shape();
    os.back() = v.size(-1);
    os[os.size() - 2] = s.len;
    acc.push_back(zeros(os));
    os.pop_back();
    acc_lse.push_back(full(os, -std::numeric_limits<double>::infinity()));
  }
  ring_walk(
      p, g, k, v,
      [&](size_t qi, const Segment& ks, const Tensor& ck, const Tensor& cv, const F::SdpaOptions& o) {
        auto [bo, bl] = F::scaled_dot_product_attention_with_lse(rows(q, p.qseg[qi]), rows(ck, ks), rows(cv, ks), o);
        merge(acc[qi], acc_lse[qi], bo, bl);
      },
      [](int, std::vector<Work>&) {}, [](int) {});
  return {cat(acc, -2), cat(acc_lse, -1)};
}

// (dq, dk, dv) of the rank's rows.
std::vector<Tensor> ring_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Forward& f, const Plan& p, ProcessGroup& g) {
  NoGradGuard ng;
  Tensor dq = zeros(q.shape());
  Tensor cur_dk = zeros(k.shape()), cur_dv = zeros(v.shape());
  Tensor nxt_dk = Tensor::make(k.shape(), kFloat32), nxt_dv = Tensor::make(v.shape(), kFloat32);
  ring_walk(
      p, g, k, v,
      [&](size_t qi, const Segment& ks, const Tensor& ck, const Tensor& cv, const F::SdpaOptions& o) {
        const Segment& qs = p.qseg[qi];
        auto [bq, bk, bv] = F::scaled_dot_product_attention_backward(
            rows(dout, qs), rows(q, qs), rows(ck, ks), rows(cv, ks), rows(f.out, qs), f.lse.narrow(-1, qs.row, qs.len),
            o);
        rows(dq, qs).add_(bq);
        rows(cur_dk, ks).add_(bk);
        rows(cur_dv, ks).add_(bv);
      },
      // The accumulators follow their block; after the last step they go home.
      [&](int, std::vector<Work>& work) {
        if (p.P > 1) pass_on(g, p, {cur_dk, cur_dv}, {nxt_dk, nxt_dv}, work, 2);
      },
      [&](int) {
        if (p.P == 1) return;
        std::swap(cur_dk, nxt_dk);
        std::swap(cur_dv, nxt_dv);
      });
  return {dq, cur_dk, cur_dv};
}

}  // namespace

Tensor ring_attention(const Tensor& q, const Tensor& k, const Tensor& v, const F::SdpaOptions& options,
                      ProcessGroup& group, const RingOptions& ring) {
  const int P = group.size(), rank = group.rank();
  for (const auto& [name, t] : {std::pair{"query", &q}, {"key", &k}, {"value", &v}}) {
    ATTN_CHECK(t->defined() && t->dtype() == kFloat32, kOp, ": ", name, " must be float32 (the fused kernel)",
               t->defined() ? std::string(", got ") + dtype_name(t->dtype()) : std::string());
    ATTN_CHECK(t->dim() >= 3, kOp, ": ", name, " must be (B..., H, rows, E), got ", shape_str(t->shape()));
  }
  ATTN_CHECK(!options.attn_mask().defined(), kOp, ": attn_mask is not supported (a dense mask has no sharded "
             "form); pass key_lengths for padding, is_causal or window for structure");
  ATTN_CHECK(options.dropout_p() == 0.0, kOp, ": dropout is not supported, got dropout_p = ", options.dropout_p());
  ATTN_CHECK(options.global_tokens() == 0, kOp, ": global_tokens is not supported");
  ATTN_CHECK(options.diagonal_offset() == 0, kOp, ": diagonal_offset is set by ring_attention itself");
  Plan p;
  p.P = P, p.rank = rank, p.zigzag = ring.zigzag();
  p.Lr = q.size(-2), p.Sr = k.size(-2);
  if (p.zigzag)
    ATTN_CHECK(p.Lr % 2 == 0 && p.Sr % 2 == 0, kOp, ": zigzag needs an even number of rows per rank (two equal "
               "chunks), got ", p.Lr, " queries and ", p.Sr, " keys");
  // Every rank must hold the same number of rows, and the same shapes.
  {
    const std::vector<int64_t> mine = {p.Lr, p.Sr, q.numel(), k.numel(), v.numel()};
    std::vector<int64_t> neg(mine.size());
    for (size_t i = 0; i < mine.size(); ++i) neg[i] = -mine[i];
    Tensor both = from_vector(mine, {5}), lo = from_vector(neg, {5});
    group.all_reduce(both, ReduceOp::Max);  // the largest of each
    group.all_reduce(lo, ReduceOp::Max);    // minus the smallest
    ATTN_CHECK(equal(neg_int(lo), both), kOp, ": every rank must pass the same shapes (equal shards); rank ", rank,
               " has query ", shape_str(q.shape()), " and key ", shape_str(k.shape()));
  }
  p.gdiag = options.causal_align() == F::CausalAlign::BottomRight ? P * (p.Sr - p.Lr) : 0;
  p.causal = options.is_causal();
  p.window = options.window();
  p.stride = options.stride();
  p.key_lengths = options.key_lengths();
  p.base = options;
  p.base.key_lengths(Tensor());
  p.qseg = segments(rank, P, p.Lr, p.zigzag);
  // Checks the options against the local shapes once (a clear error before any message moves).
  (void)F::scaled_dot_product_attention(q.narrow(-2, 0, 0).detach(), k.narrow(-2, 0, 0).detach(),
                                        v.narrow(-2, 0, 0).detach(), p.base);

  auto f = std::make_shared<Forward>(ring_forward(q.detach(), k.detach(), v.detach(), p, group));
  Tensor out = f->out.detach();  // an alias: the node keeps f, and must not keep its own output
  if (autograd::should_record({&q, &k, &v})) {
    Tensor qd = q.detach(), kd = k.detach(), vd = v.detach();
    ProcessGroup g = group;
    autograd::record("RingAttentionBackward", {q, k, v}, out,
                     [f, qd, kd, vd, p, g](const Tensor& grad, const std::vector<bool>&) mutable {
                       return ring_backward(grad.contiguous(), qd, kd, vd, *f, p, g);
                     });
  }
  return out;
}

}  // namespace attn::dist
