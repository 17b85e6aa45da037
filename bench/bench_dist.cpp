// attn::dist under mpirun: all_reduce bandwidth by message size, and ring
// attention on a long sequence against one process running the fused SDPA
// on the whole of it (time and per-rank peak memory).
//
//   mpirun -np 2 build/bin/bench_dist allreduce
//   build/bin/bench_dist ring --seq 65536            (one process: the fused SDPA)
//   mpirun -np 4 build/bin/bench_dist ring --seq 65536 [--no-zigzag]
//
// Rank 0 prints; times are medians over the repetitions, each the slowest
// rank's (a barrier before, a max-reduce after).
#include <mpi.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "attn/attn.h"
#include "attn/dist.h"

namespace {

using namespace attn;
namespace F = attn::nn::functional;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The slowest rank's time.
double slowest(dist::ProcessGroup& pg, double s) {
  Tensor t = full({1}, s, kFloat64);
  pg.all_reduce(t, dist::ReduceOp::Max);
  return t.item<double>();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // kB on Linux
}

// Median time of `reps` runs of f, each the slowest rank's.
template <class Fn>
double timed(dist::ProcessGroup& pg, int reps, Fn&& f) {
  f();  // warm-up
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    pg.barrier();
    const auto t0 = Clock::now();
    f();
    times.push_back(slowest(pg, seconds_since(t0)));
  }
  return median(times);
}

// attn's ring all_reduce beside OpenMPI's own, blocking (MPI_Allreduce, its
// tuned algorithms) and non-blocking (MPI_Iallreduce completed by
// MPI_Test, what a bounded wait can use), on the same buffer in one run.
int allreduce(dist::ProcessGroup& pg) {
  const int P = pg.size();
  if (pg.rank() == 0) {
    std::printf("all_reduce (sum, float32) over %d ranks: algbw = bytes / time (GB/s); attn's busbw = algbw * 2 (P - 1) / P\n", P);
    std::printf("%12s %12s %10s %10s %14s %15s\n", "bytes", "attn (us)", "attn", "busbw", "MPI_Allreduce",
                "MPI_Iallreduce");
  }
  for (int64_t bytes = 4096; bytes <= (int64_t{256} << 20); bytes *= 4) {
    Tensor t = ones({bytes / 4});
    float* data = t.data<float>();
    const int n = static_cast<int>(bytes / 4);
    const int reps = static_cast<int>(std::clamp<int64_t>((int64_t{1} << 30) / bytes, 5, 200));
    const double ours = timed(pg, reps, [&] { pg.all_reduce(t); });
    const double mpi = timed(pg, reps, [&] { MPI_Allreduce(MPI_IN_PLACE, data, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); });
    const double nb = timed(pg, reps, [&] {
      MPI_Request req;
      MPI_Iallreduce(MPI_IN_PLACE, data, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
      for (int done = 0; !done;) MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    });
    auto bw = [&](double s) { return static_cast<double>(bytes) / s / 1e9; };
    if (pg.rank() == 0)
      std::printf("%12lld %12.1f %10.2f %10.2f %14.2f %15.2f\n", static_cast<long long>(bytes), ours * 1e6, bw(ours),
                  bw(ours) * 2.0 * (P - 1) / P, bw(mpi), bw(nb));
  }
  return 0;
}

int ring(dist::ProcessGroup& pg, int64_t L, int64_t H, int64_t E, bool causal, bool zigzag, int reps) {
  const int P = pg.size(), rank = pg.rank();
  if (L % (2 * P) != 0) throw Error("bench_dist ring: --seq must be a multiple of 2P");
  const int64_t Lr = L / P;
  // Each rank draws only its own rows (memory O(L / P)).
  Generator g(100 + static_cast<uint64_t>(rank));
  Tensor q = randn({1, H, Lr, E}, {}, &g).requires_grad_(), k = randn({1, H, Lr, E}, {}, &g).requires_grad_();
  Tensor v = randn({1, H, Lr, E}, {}, &g).requires_grad_(), dout = randn({1, H, Lr, E}, {}, &g);
  const auto opt = F::SdpaOptions().is_causal(causal);
  std::vector<double> fwd, both;
  for (int r = 0; r < reps; ++r) {
    pg.barrier();
    auto t0 = Clock::now();
    Tensor out = P == 1 ? F::scaled_dot_product_attention(q, k, v, opt)
                        : dist::ring_attention(q, k, v, opt, pg, dist::RingOptions().zigzag(zigzag));
    const double f = seconds_since(t0);
    out.backward(dout);
    const double b = seconds_since(t0);
    fwd.push_back(slowest(pg, f));
    both.push_back(slowest(pg, b));
    q.set_grad({}), k.set_grad({}), v.set_grad({});
  }
  Tensor rss = full({1}, peak_rss_mb(), kFloat64);
  pg.all_reduce(rss, dist::ReduceOp::Max);
  // Attention FLOPs: 4 L^2 E H forward (QK^T and PV), 2.5x that with backward; half when causal.
  const double flops = 4.0 * static_cast<double>(L) * static_cast<double>(L) * static_cast<double>(E * H) *
                       (causal ? 0.5 : 1.0);
  if (rank == 0)
    std::printf("%s L=%lld H=%lld E=%lld %s over %d rank%s%s: forward %.2f s (%.1f GFLOPS), forward+backward "
                "%.2f s (%.1f GFLOPS); peak RSS per rank %.0f MB (max over ranks)\n",
                P == 1 ? "sdpa" : "ring_attention", static_cast<long long>(L), static_cast<long long>(H),
                static_cast<long long>(E), causal ? "causal" : "non-causal", P, P == 1 ? "" : "s",
                P == 1 ? "" : (zigzag ? " (zigzag)" : " (contiguous)"), median(fwd), flops / median(fwd) / 1e9,
                median(both), 3.5 * flops / median(both) / 1e9, rss.item<double>());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    dist::ProcessGroup pg = dist::init();
    const std::string mode = argc > 1 ? argv[1] : "";
    int64_t L = 65536, H = 2, E = 64;
    bool causal = true, zigzag = true;
    int reps = 1;
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> int64_t {
        if (i + 1 >= argc) throw Error("bench_dist: " + a + " needs a value");
        return std::stoll(argv[++i]);
      };
      if (a == "--seq") L = next();
      else if (a == "--heads") H = next();
      else if (a == "--dim") E = next();
      else if (a == "--reps") reps = static_cast<int>(next());
      else if (a == "--non-causal") causal = false;
      else if (a == "--no-zigzag") zigzag = false;
      else throw Error("bench_dist: unknown option " + a);
    }
    if (mode == "allreduce") return allreduce(pg);
    if (mode == "ring") return ring(pg, L, H, E, causal, zigzag, reps);
    std::fprintf(stderr, "usage: [mpirun -np P] bench_dist allreduce | ring [--seq L] [--heads H] [--dim E] "
                         "[--non-causal] [--no-zigzag] [--reps N]\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dist: %s\n", e.what());
    return 1;
  }
}
