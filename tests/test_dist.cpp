// attn::dist, run by ctest under `mpirun -np 2` and `-np 4` and as a single
// process without a launcher: collectives against their closed-form results,
// DistributedDataParallel against the gradients of the whole batch on one
// process, and ring attention against scaled_dot_product_attention on the
// gathered sequence (values and gradients, contiguous and zigzag shards).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "attn/attn.h"
#include "attn/dist.h"

namespace {

using namespace attn;
namespace F = attn::nn::functional;
namespace dist = attn::dist;

dist::ProcessGroup& pg() {
  static dist::ProcessGroup g = dist::init();
  return g;
}

// Built without MPI (the sanitizer builds): the entry points say so, and the
// rest of the suite has nothing to run.
class Dist : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!dist::available()) GTEST_SKIP() << "attn was built without MPI";
  }
};

TEST(DistStub, SaysWhenBuiltWithoutMpi) {
  if (dist::available()) GTEST_SKIP() << "built with MPI";
  try {
    dist::init();
    ADD_FAILURE() << "init() should throw without MPI";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attn was built without MPI"), std::string::npos) << e.what();
  }
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return max(abs(a.to(kFloat64) - b.to(kFloat64))).item<double>();
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  Tensor x = a.contiguous(), y = b.contiguous();
  return x.shape() == y.shape() && x.dtype() == y.dtype() &&
         std::memcmp(x.raw_data(), y.raw_data(), static_cast<size_t>(x.numel()) * itemsize(x.dtype())) == 0;
}

// ---- collectives ------------------------------------------------------------------------

TEST_F(Dist, RankAndSize) {
  EXPECT_TRUE(dist::available());
  EXPECT_GE(pg().size(), 1);
  EXPECT_GE(pg().rank(), 0);
  EXPECT_LT(pg().rank(), pg().size());
}

TEST_F(Dist, AllReduce) {
  const int P = pg().size(), r = pg().rank();
  // Rank r holds r + 1 + i; the sum over ranks is P(P + 1)/2 + P i.
  for (DType dt : {kFloat32, kFloat64, kInt64}) {
    Tensor t = (arange(0, 5) + static_cast<double>(r + 1)).to(dt);
    pg().all_reduce(t, dist::ReduceOp::Sum);
    Tensor want = (arange(0, 5) * static_cast<double>(P) + P * (P + 1) / 2.0).to(dt);
    EXPECT_TRUE(equal(t, want)) << dtype_name(dt);
    Tensor m = full({3}, r).to(dt);
    pg().all_reduce(m, dist::ReduceOp::Max);
    EXPECT_TRUE(equal(m, full({3}, P - 1).to(dt))) << dtype_name(dt);
  }
  Tensor mean = full({4}, r, kFloat64);
  pg().all_reduce(mean, dist::ReduceOp::Mean);
  EXPECT_TRUE(equal(mean, full({4}, (P - 1) / 2.0, kFloat64)));
  // Non-blocking, two in flight at once.
  Tensor a = full({1000}, 1.0), b = full({7}, 2.0, kFloat64);
  dist::Work wa = pg().all_reduce_async(a), wb = pg().all_reduce_async(b, dist::ReduceOp::Mean);
  wb.wait();
  wa.wait();
  EXPECT_TRUE(wa.is_completed());
  EXPECT_TRUE(equal(a, full({1000}, P)));
  EXPECT_TRUE(equal(b, full({7}, 2.0, kFloat64)));
  // Random values, chunks of uneven length: the float64 sum to rounding, and
  // the same bits on every rank (each chunk is summed in one order).
  Generator gen(40 + static_cast<uint64_t>(r));
  Tensor x = randn({1001}, {}, &gen);
  Tensor x64 = x.to(kFloat64);
  pg().all_reduce(x64);
  pg().all_reduce(x, dist::ReduceOp::Sum);
  EXPECT_LT(max_abs_diff(x, x64), 1e-5);
  auto every = pg().all_gather(x);
  for (int i = 1; i < P; ++i) EXPECT_TRUE(bitwise_equal(every[0], every[i])) << "rank " << i;
  // Empty and 0-d tensors.
  Tensor e = zeros({0});
  pg().all_reduce(e);
  Tensor s = full({}, 1.0);
  pg().all_reduce(s);
  EXPECT_EQ(s.item<float>(), static_cast<float>(P));
}

TEST_F(Dist, BroadcastGatherScatter) {
  const int P = pg().size(), r = pg().rank();
  Tensor t = full({2, 3}, r, kInt64);
  pg().broadcast(t, P - 1);
  EXPECT_TRUE(equal(t, full({2, 3}, P - 1, kInt64)));
  Tensor bits = full({5}, r == 0 ? 1.0 : 0.0).to(kBool);  // any dtype travels
  pg().broadcast(bits, 0);
  EXPECT_TRUE(equal(bits, ones({5}, kBool)));

  auto parts = pg().all_gather(full({2}, r * 10.0));
  ASSERT_EQ(parts.size(), static_cast<size_t>(P));
  for (int i = 0; i < P; ++i) EXPECT_TRUE(equal(parts[i], full({2}, i * 10.0)));
  Tensor cat_ = pg().all_gather_into_tensor(full({1, 3}, r, kFloat64));
  EXPECT_EQ(cat_.shape(), (Shape{P, 3}));
  for (int i = 0; i < P; ++i) EXPECT_TRUE(equal(cat_.select(0, i), full({3}, i, kFloat64)));

  // reduce_scatter: rank r's input row i is r * 100 + i; rank r gets
  // sum over ranks of (q * 100 + r) for its row.
  Tensor in = (arange(0, P) + r * 100.0).to(kFloat32).reshape({P, 1}).expand({P, 2}).contiguous();
  Tensor mine = pg().reduce_scatter(in);
  const double want = 100.0 * P * (P - 1) / 2.0 + static_cast<double>(P) * r;
  EXPECT_TRUE(equal(mine, full({1, 2}, want)));
  Tensor mean = pg().reduce_scatter(in.to(kFloat64), dist::ReduceOp::Mean);
  EXPECT_NEAR(mean.select(0, 0).select(0, 0).item<double>(), want / P, 1e-12);
}

TEST_F(Dist, SendRecvRing) {
  const int P = pg().size(), r = pg().rank();
  if (P == 1) GTEST_SKIP() << "one process: no peer";
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  Tensor out = full({64}, r), in = zeros({64});
  dist::Work rw = pg().irecv(in, prev, 7);
  dist::Work sw = pg().isend(out, next, 7);
  sw.wait();
  rw.wait();
  EXPECT_TRUE(equal(in, full({64}, prev)));
  // Blocking, in an order that cannot deadlock: even ranks send first.
  Tensor x = full({3}, r, kFloat64), y = zeros({3}, kFloat64);
  if (r % 2 == 0) {
    pg().send(x, next, 1);
    pg().recv(y, prev, 1);
  } else {
    pg().recv(y, prev, 1);
    pg().send(x, next, 1);
  }
  EXPECT_TRUE(equal(y, full({3}, prev, kFloat64)));
  pg().barrier();
}

TEST_F(Dist, ClearErrors) {
  const int P = pg().size(), r = pg().rank();
  auto throws_with = [](auto&& f, const std::string& what) {
    try {
      f();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "no attn::Error (expected '" << what << "')";
  };
  throws_with([] { pg().all_reduce(zeros({4, 4}).transpose(0, 1)); }, "contiguous");
  throws_with([] { pg().all_reduce(ones({2}, kBool)); }, "float32, float64 or int64");
  throws_with([] { pg().all_reduce(ones({2}, kInt64), dist::ReduceOp::Mean); }, "floating");
  throws_with([P] { pg().broadcast(zeros({1}), P); }, "root");
  throws_with([r] { pg().send(zeros({1}), r); }, "another rank");
  throws_with([] { pg().reduce_scatter(zeros({})); }, "multiple");
  throws_with([] { dist::ProcessGroup none; none.barrier(); }, "not initialised");
}

// ---- DistributedDataParallel ------------------------------------------------------------

struct Net : nn::Module {
  nn::Linear a{nn::LinearOptions(6, 16)}, b{nn::LinearOptions(16, 16)}, c{nn::LinearOptions(16, 3)},
      unused{nn::LinearOptions(3, 3)};
  Net() {
    register_module("a", a);
    register_module("b", b);
    register_module("c", c);
    register_module("unused", unused);
  }
  // `use_extra`: also run the last layer (on some ranks only).
  Tensor forward(const Tensor& x, bool use_extra = false) {
    Tensor h = c.forward(F::gelu(b.forward(relu(a.forward(x)))));
    return use_extra ? unused.forward(h) : h;
  }
};

Tensor loss_of(Net& net, const Tensor& x, const Tensor& y, bool use_extra = false) {
  return F::mse_loss(net.forward(x, use_extra), y);
}

// The global batch of 8 samples, the same on every rank; rank r trains on rows [r n, (r + 1) n).
std::pair<Tensor, Tensor> batch(uint64_t seed, int64_t n) {
  Generator g(seed);
  return {randn({n, 6}, kFloat64, &g), randn({n, 3}, kFloat64, &g)};
}

TEST_F(Dist, DataParallelAveragesGradients) {
  const int P = pg().size(), r = pg().rank();
  Net net;
  net.to(kFloat64);
  {
    NoGradGuard ng;  // ranks start apart: DDP must make them equal
    for (auto& p : net.parameters()) p.add_(ones_like(p), static_cast<double>(r));
  }
  dist::DistributedDataParallel ddp(net, pg(), dist::DistributedDataParallelOptions().bucket_cap_mb(0.001));
  // Rank 0's weights everywhere: gather and compare bit for bit.
  for (auto& p : net.parameters()) {
    auto all = pg().all_gather(p.detach().contiguous());
    for (int i = 1; i < P; ++i) EXPECT_TRUE(bitwise_equal(all[0], all[i]));
  }
  // Several buckets covering every parameter once, last layers first.
  auto buckets = ddp.bucket_indices();
  EXPECT_GT(buckets.size(), 1u);
  std::vector<int64_t> flat;
  for (auto& b : buckets) flat.insert(flat.end(), b.begin(), b.end());
  ASSERT_EQ(flat.size(), net.parameters().size());
  for (size_t i = 0; i < flat.size(); ++i) EXPECT_EQ(flat[i], static_cast<int64_t>(flat.size() - 1 - i));

  const int64_t n = 3;
  auto [x, y] = batch(11, n * P);
  // The reference: the whole batch's gradient on one process (grad() fires no hooks).
  auto params = net.parameters();
  std::vector<Tensor> used(params.begin(), params.begin() + 6);
  auto want = autograd::grad({loss_of(net, x, y)}, used);
  for (auto& p : params) p.set_grad({});
  Tensor loss = loss_of(net, x.narrow(0, r * n, n), y.narrow(0, r * n, n));
  loss.backward();
  for (size_t i = 0; i < used.size(); ++i) {
    ASSERT_TRUE(params[i].grad().defined());
    EXPECT_LT(max_abs_diff(params[i].grad(), want[i]), 1e-12) << i;
    auto all = pg().all_gather(params[i].grad().contiguous());
    for (int k = 1; k < P; ++k) EXPECT_TRUE(bitwise_equal(all[0], all[k])) << "rank " << k << " param " << i;
  }
  // The parameter no rank used: zeros, the same everywhere.
  EXPECT_TRUE(equal(params[7].grad(), zeros_like(params[7])));
}

TEST_F(Dist, DataParallelUnusedOnSomeRanksAndNoSync) {
  const int P = pg().size(), r = pg().rank();
  Net net;
  net.to(kFloat64);
  dist::DistributedDataParallel ddp(net, pg());
  auto params = net.parameters();
  const int64_t n = 2;
  auto [x1, y1] = batch(21, n * P);
  auto [x2, y2] = batch(22, n * P);
  // Reference: each rank's loss is the mean over its rows; the mean over the
  // ranks of the gradients of (micro-batch 1 + micro-batch 2), rank 0 also
  // running the extra layer in micro-batch 2.
  std::vector<Tensor> sum(params.size());
  for (int q = 0; q < P; ++q) {
    Tensor l = loss_of(net, x1.narrow(0, q * n, n), y1.narrow(0, q * n, n)) +
               loss_of(net, x2.narrow(0, q * n, n), y2.narrow(0, q * n, n).narrow(1, 0, 3), q == 0);
    auto g = autograd::grad({l}, params);
    for (size_t i = 0; i < params.size(); ++i)
      if (g[i].defined()) sum[i] = sum[i].defined() ? sum[i] + g[i] : g[i];
  }
  {
    auto guard = ddp.no_sync();
    loss_of(net, x1.narrow(0, r * n, n), y1.narrow(0, r * n, n)).backward();
  }
  // Local, not averaged, after the no_sync backward.
  auto local = autograd::grad({loss_of(net, x1.narrow(0, r * n, n), y1.narrow(0, r * n, n))}, {params[0]});
  EXPECT_LT(max_abs_diff(params[0].grad(), local[0]), 1e-12);
  loss_of(net, x2.narrow(0, r * n, n), y2.narrow(0, r * n, n), r == 0).backward();
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor want = sum[i].defined() ? sum[i] / static_cast<double>(P) : zeros_like(params[i]);
    EXPECT_LT(max_abs_diff(params[i].grad(), want), 1e-12) << i;
  }
}

TEST_F(Dist, DataParallelIsDeterministic) {
  const int P = pg().size(), r = pg().rank();
  std::vector<Tensor> first;
  for (int run = 0; run < 2; ++run) {
    Generator g(5);
    default_generator().manual_seed(5);
    nn::TransformerEncoderLayer layer(nn::TransformerEncoderLayerOptions(16, 4).dim_feedforward(32).dropout(0.0));
    dist::DistributedDataParallel ddp(layer, pg(), dist::DistributedDataParallelOptions().bucket_cap_mb(0.002));
    Tensor x = randn({4 * P, 5, 16}, {}, &g).narrow(0, 4 * r, 4);
    pow(layer.forward(x), 2.0).mean().backward();
    auto ps = layer.parameters();
    for (size_t i = 0; i < ps.size(); ++i) {
      if (run == 0)
        first.push_back(ps[i].grad().clone());
      else
        EXPECT_TRUE(bitwise_equal(first[i], ps[i].grad())) << i;
    }
  }
}

// ---- ring attention -------------------------------------------------------------------

struct RingCase {
  const char* name;
  int64_t B, Hq, Hk, L, S, E, Ev;  // L, S: the whole sequence
  F::SdpaOptions opt;
  bool zigzag = false;
  bool padded = false;  // key_lengths
};

// Rank r's rows of a (…, N, D) tensor of the whole sequence.
Tensor shard(const Tensor& t, int r, int P, bool zigzag) {
  const int64_t N = t.size(-2);
  if (!zigzag) return t.narrow(-2, r * (N / P), N / P).contiguous();
  const int64_t c = N / (2 * P);
  return cat({t.narrow(-2, r * c, c), t.narrow(-2, (2 * P - 1 - r) * c, c)}, -2).contiguous();
}

void check_ring(RingCase c) {
  const int P = pg().size(), r = pg().rank();
  Generator g(1234);
  Tensor q = randn({c.B, c.Hq, c.L, c.E}, {}, &g), k = randn({c.B, c.Hk, c.S, c.E}, {}, &g);
  Tensor v = randn({c.B, c.Hk, c.S, c.Ev}, {}, &g), dout = randn({c.B, c.Hq, c.L, c.Ev}, {}, &g);
  if (c.padded) {  // batch 1 has no keys at all: its rows give 0, never NaN
    std::vector<int64_t> kl = {c.S / 2 + 1, 0, c.S};
    kl.resize(static_cast<size_t>(c.B), c.S);
    c.opt.key_lengths(from_vector(kl, {c.B}));
  }
  // The reference: the fused SDPA on the whole sequence, on one process.
  Tensor qa = q.clone().requires_grad_(), ka = k.clone().requires_grad_(), va = v.clone().requires_grad_();
  Tensor want = F::scaled_dot_product_attention(qa, ka, va, c.opt);
  want.backward(dout);

  Tensor qs = shard(q, r, P, c.zigzag).requires_grad_(), ks = shard(k, r, P, c.zigzag).requires_grad_();
  Tensor vs = shard(v, r, P, c.zigzag).requires_grad_();
  Tensor out = dist::ring_attention(qs, ks, vs, c.opt, pg(), dist::RingOptions().zigzag(c.zigzag));
  ASSERT_EQ(out.shape(), shard(want.detach(), r, P, c.zigzag).shape()) << c.name;
  out.backward(shard(dout, r, P, c.zigzag));
  // max_abs_diff is NaN (and fails) where the ring gives NaN.
  auto tol = [](const Tensor& ref) { return 2e-5 * std::max(1.0, max(abs(ref)).item<double>()); };
  const Tensor wo = shard(want.detach(), r, P, c.zigzag), wq = shard(qa.grad(), r, P, c.zigzag);
  const Tensor wk = shard(ka.grad(), r, P, c.zigzag), wv = shard(va.grad(), r, P, c.zigzag);
  EXPECT_LT(max_abs_diff(out.detach(), wo), tol(wo)) << c.name << " out";
  EXPECT_LT(max_abs_diff(qs.grad(), wq), tol(wq)) << c.name << " dq";
  EXPECT_LT(max_abs_diff(ks.grad(), wk), tol(wk)) << c.name << " dk";
  EXPECT_LT(max_abs_diff(vs.grad(), wv), tol(wv)) << c.name << " dv";
  // The ring reads the caller's shards and never writes them.
  EXPECT_TRUE(equal(ks.detach(), shard(k, r, P, c.zigzag)) && equal(vs.detach(), shard(v, r, P, c.zigzag)) &&
              equal(qs.detach(), shard(q, r, P, c.zigzag)))
      << c.name;
}

TEST_F(Dist, RingAttentionEqualsSdpa) {
  const int64_t P = pg().size();
  const int64_t n = 4 * P * 8;  // divisible into 2P chunks
  Tensor slopes = F::alibi_slopes(4);
  std::vector<RingCase> cases = {
      {"full", 2, 4, 4, n, n, 16, 16, F::SdpaOptions()},
      {"causal", 2, 4, 4, n, n, 16, 8, F::SdpaOptions().is_causal(true)},
      {"causal zigzag", 2, 4, 4, n, n, 16, 16, F::SdpaOptions().is_causal(true), true},
      {"gqa causal zigzag", 1, 4, 2, n, n, 8, 8, F::SdpaOptions().is_causal(true).enable_gqa(true), true},
      {"window", 1, 2, 2, n, n, 8, 8, F::SdpaOptions().window(F::Window(5, 3))},
      {"causal window zigzag", 1, 2, 2, n, n, 8, 8, F::SdpaOptions().is_causal(true).window(F::Window(9, 0)), true},
      {"alibi causal", 1, 4, 4, n, n, 8, 8, F::SdpaOptions().is_causal(true).alibi_slopes(slopes)},
      {"alibi zigzag softcap", 1, 4, 4, n, n, 8, 8, F::SdpaOptions().alibi_slopes(slopes).softcap(5.0), true},
      {"stride causal", 1, 2, 2, n, n, 8, 8, F::SdpaOptions().is_causal(true).window(F::Window(3, 0)).stride(4)},
      {"key padding (a batch with none)", 3, 2, 2, n, n, 8, 8, F::SdpaOptions().scale(0.3), false, true},
      {"key padding causal zigzag", 3, 2, 2, n, n, 8, 8, F::SdpaOptions().is_causal(true), true, true},
      {"cross, bottom-right causal", 1, 2, 2, n / 2, n, 8, 8,
       F::SdpaOptions().is_causal(true).causal_align(F::CausalAlign::BottomRight)},
  };
  for (const auto& c : cases) check_ring(c);
}

TEST_F(Dist, RingAttentionErrors) {
  Tensor q = zeros({1, 2, 4, 8}), d = q.to(kFloat64);
  auto ring = [&](const F::SdpaOptions& o, const Tensor& x) { return dist::ring_attention(x, x, x, o, pg()); };
  EXPECT_THROW(ring(F::SdpaOptions(), d), Error);
  EXPECT_THROW(ring(F::SdpaOptions().attn_mask(ones({4, 4}, kBool)), q), Error);
  EXPECT_THROW(ring(F::SdpaOptions().dropout_p(0.1), q), Error);
  EXPECT_THROW(ring(F::SdpaOptions().global_tokens(1), q), Error);
  EXPECT_THROW(dist::ring_attention(zeros({1, 2, 3, 8}), zeros({1, 2, 3, 8}), zeros({1, 2, 3, 8}), {}, pg(),
                                    dist::RingOptions().zigzag(true)),
               Error);
}

}  // namespace
