// scaled_dot_product_attention: the fused float32 kernel against the composed
// reference in float64 (forward, LSE and every gradient) over a sweep of
// option combinations and odd sizes; the reference against finite
// differences; fully masked rows; dropout; attention weights; determinism
// across thread counts; bad input.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <random>

#include "support/op_table.h"

namespace attn {
namespace {

using testing::compare;
using testing::Comparison;

struct Config {
  int64_t B = 1, Hq = 1, Hk = 1, L = 1, S = 1, E = 1, Ev = 1;
  bool causal = false;
  F::CausalAlign align = F::CausalAlign::TopLeft;
  F::Window window;
  double softcap = 0;
  bool alibi = false;
  // 0 none, 1 bool (L, S), 2 bool padding (B, 1, 1, S), 3 float (B, 1, L, S) with grad, 4 float with -inf;
  // read with a key stride other than 1: 5 bool (S, L) transposed, 6 bool (L, 1) broadcast over the keys,
  // 7 float (S, L) transposed
  int mask = 0;
  bool key_lengths = false;
  int64_t length_base = 3;  // key lengths (b * 7 + length_base) % (S + 1)
  int64_t global_tokens = 0, stride = 0;
  std::string label() const {
    return detail::str("B", B, " Hq", Hq, " Hk", Hk, " L", L, " S", S, " E", E, " Ev", Ev, causal ? " causal" : "",
                       align == F::CausalAlign::BottomRight ? " bottom-right" : "", " window(", window.left, ",",
                       window.right, ") softcap ", softcap, alibi ? " alibi" : "", " mask ", mask,
                       key_lengths ? detail::str(" key_lengths from ", length_base) : "", " global ", global_tokens, " stride ", stride);
  }
};

Config cfg(int64_t B, int64_t Hq, int64_t Hk, int64_t L, int64_t S, int64_t E, int64_t Ev) {
  Config c;
  c.B = B, c.Hq = Hq, c.Hk = Hk, c.L = L, c.S = S, c.E = E, c.Ev = Ev;
  return c;
}

struct Results {
  Tensor out, lse, dq, dk, dv, dmask;
};

// Runs attention on inputs drawn from `seed` converted to `dt`.
Results run(const Config& c, DType dt, uint64_t seed, bool reference = false) {
  Generator g(seed);
  auto draw = [&](Shape s) { return randn(s, kFloat64, &g).to(dt).detach().requires_grad_(true); };
  Tensor q = draw({c.B, c.Hq, c.L, c.E}), k = draw({c.B, c.Hk, c.S, c.E}), v = draw({c.B, c.Hk, c.S, c.Ev});
  F::SdpaOptions o;
  o.is_causal(c.causal).causal_align(c.align).window(c.window).softcap(c.softcap).enable_gqa(c.Hq != c.Hk);
  o.global_tokens(c.global_tokens).stride(c.stride);
  if (c.alibi) o.alibi_slopes((rand({c.Hq}, kFloat64, &g) * 0.5).to(dt));
  Tensor mask;
  if (c.mask == 1) mask = rand({c.L, c.S}, kFloat64, &g) > 0.25;
  if (c.mask == 2) mask = (rand({c.B, 1, 1, c.S}, kFloat64, &g) > 0.3);
  if (c.mask == 3) mask = randn({c.B, 1, c.L, c.S}, kFloat64, &g).to(dt).detach().requires_grad_(true);
  if (c.mask == 4) mask = masked_fill(randn({c.L, c.S}, kFloat64, &g), rand({c.L, c.S}, kFloat64, &g) > 0.7, -INFINITY).to(dt);
  if (c.mask == 5) mask = (rand({c.S, c.L}, kFloat64, &g) > 0.25).transpose(0, 1);
  if (c.mask == 6) mask = rand({c.L, 1}, kFloat64, &g) > 0.2;
  if (c.mask == 7) mask = randn({c.S, c.L}, kFloat64, &g).to(dt).transpose(0, 1);
  if (mask.defined()) o.attn_mask(mask);
  if (c.key_lengths) {
    std::vector<int64_t> kl;
    for (int64_t b = 0; b < c.B; ++b) kl.push_back((b * 7 + c.length_base) % (c.S + 1));
    o.key_lengths(from_vector(kl));
  }
  Results r;
  if (reference) {
    r.out = F::scaled_dot_product_attention_reference(q, k, v, o);
  } else {
    auto [out, lse] = F::scaled_dot_product_attention_with_lse(q, k, v, o);
    r.out = out;
    r.lse = lse;
  }
  Tensor gout = randn(r.out.shape(), kFloat64, &g).to(dt);
  (r.out * gout).sum().backward();
  r.dq = q.grad(), r.dk = k.grad(), r.dv = v.grad();
  if (c.mask == 3) r.dmask = mask.grad();
  return r;
}

// float32 fused vs float64 reference. A float32 sum of n products is within
// n*u*sum|terms| of the exact one (u = eps32/2, Higham's gamma_n); each
// quantity below is such a sum, of length n, and its terms are bounded by a
// multiple c of the largest reference entry (at least 1, the scale of the
// inputs, which are N(0, 1)). The backward also recomputes probabilities
// from the float32 LSE, rounded to u*|lse|, which adds |lse| to n for the
// gradients, and softcap rounds every score to 2u*cap (4*cap added to n).
// The constants c were measured over the sweeps (ATTN_PRINT_TOLERANCES=1
// prints the fraction of each tolerance used; the largest is printed at the
// end) and set to the power of two that leaves at least 2x headroom.
struct Tolerance {
  double c;         // terms bounded by c * max(1, max |reference|)
  bool lse;         // recomputed from the float32 LSE (a gradient)
  const char* n;    // the sum's length
  const char* why;
};
const std::map<std::string, Tolerance>& fused_tolerances() {
  static const std::map<std::string, Tolerance> t = {
      {"out", {4, false, "S", "sum over the keys of p_ij v_j; p <= 1 and sums to 1"}},
      {"lse", {2, false, "S", "max + log of a sum of S exponentials <= 1"}},
      {"dv", {2, true, "L", "sum over the queries of p_ij dO_i"}},
      {"dq", {4, true, "S + E", "sum over the keys of dS_ij k_j, dS from two E-term dots"}},
      {"dk", {4, true, "L + E", "sum over the queries of dS_ij q_i, dS from two E-term dots"}},
      {"dmask", {8, true, "E", "dS_ij itself, two E-term dots"}},
  };
  return t;
}

Tensor finite_or_zero(const Tensor& t) { return where(eq(t, t) & lt(abs(t), full({}, INFINITY, t.dtype())), t, 0.0); }
double max_abs(const Tensor& t) { return amax(abs(finite_or_zero(t).to(kFloat64)).reshape({-1}), {0}).item<double>(); }

double worst_used = 0;  // the largest fraction of a tolerance used, over the run

void expect_close(const std::string& what, const Tensor& got, const Tensor& ref, const Config& c, double lse) {
  ASSERT_TRUE(got.defined()) << what;
  const Tolerance& t = fused_tolerances().at(what);
  const double n = what == "out" || what == "lse" ? c.S
                   : what == "dv"                 ? c.L
                   : what == "dq"                 ? c.S + c.E
                   : what == "dk"                 ? c.L + c.E
                                                  : c.E;
  const double u = std::numeric_limits<float>::epsilon() / 2;
  const double scale = std::max(1.0, amax(abs(ref.to(kFloat64)).reshape({-1}), {0}).item<double>());
  const double atol = u * t.c * (n + 2 + 4 * c.softcap + (t.lse ? lse : 0.0)) * scale;
  Comparison cmp = compare(what, got, ref, 0.0, atol);
  EXPECT_TRUE(cmp.ok) << cmp.message << " [tolerance u * " << t.c << " * (" << t.n << " + 2 + 4 softcap + "
                      << (t.lse ? "|lse|" : "0") << ") * max(1, max|ref|) = " << atol << ": " << t.why << "]";
  worst_used = std::max(worst_used, cmp.max_abs / atol);
  if (std::getenv("ATTN_PRINT_TOLERANCES")) std::printf("%s %s: %.3g of the tolerance\n", c.label().c_str(), what.c_str(), cmp.max_abs / atol);
}


// Returns whether the case was non-trivial (some output non-zero).
bool check_fused_against_reference(const Config& c, uint64_t seed) {
  SCOPED_TRACE(c.label());
  Results f = run(c, kFloat32, seed), r = run(c, kFloat64, seed);
  const double lse = max_abs(r.lse);
  expect_close("out", f.out, r.out, c, lse);
  // LSE: -inf exactly where the reference has -inf
  EXPECT_TRUE(equal(eq(f.lse, full({}, -INFINITY)), eq(r.lse, full({}, -INFINITY, kFloat64))));
  expect_close("lse", finite_or_zero(f.lse), finite_or_zero(r.lse), c, lse);
  expect_close("dq", f.dq, r.dq, c, lse);
  expect_close("dk", f.dk, r.dk, c, lse);
  expect_close("dv", f.dv, r.dv, c, lse);
  if (c.mask == 3) expect_close("dmask", f.dmask, r.dmask, c, lse);
  for (const Tensor* t : {&f.out, &f.dq, &f.dk, &f.dv})
    EXPECT_TRUE(equal(eq(*t, *t), ones(t->shape(), kBool))) << "NaN in the fused results";
  return amax(abs(r.out).reshape({-1}), {0}).item<double>() > 0;
}

TEST(Attention, SparsePatternsMatchReference) {
  // Local + global tokens and local + strided, alone and with the other
  // options, over sizes that span several key tiles (so the global keys form
  // their own segment ahead of the band, and strided keys fall in every tile).
  std::mt19937 rng(77);
  auto pick = [&](std::initializer_list<int64_t> xs) { return *(xs.begin() + rng() % xs.size()); };
  int nontrivial = 0;
  for (int t = 0; t < 64; ++t) {
    Config c;
    c.B = pick({1, 2});
    c.Hk = pick({1, 2});
    c.Hq = c.Hk * pick({1, 2});
    c.L = pick({1, 40, 300, 600});
    c.S = t % 2 ? c.L : pick({1, 70, 530});
    c.E = pick({3, 16});
    c.Ev = pick({2, 8});
    c.causal = rng() % 2;
    c.align = rng() % 2 ? F::CausalAlign::BottomRight : F::CausalAlign::TopLeft;
    c.window = F::Window(pick({0, 7, 64}), pick({-1, 0, 9}));
    if (t % 3 != 1) c.global_tokens = pick({1, 3, 300});
    if (t % 3 != 0) c.stride = pick({1, 5, 64, 700});
    c.alibi = rng() % 4 == 0;
    c.softcap = rng() % 4 == 0 ? 2.5 : 0.0;
    c.mask = static_cast<int>(rng() % 5);  // 3: a float mask whose gradient comes from every pass
    c.key_lengths = rng() % 4 == 0;
    nontrivial += check_fused_against_reference(c, 900 + t);
  }
  EXPECT_GT(nontrivial, 52);
  // With g global tokens and a window w, query i (>= g) sees exactly the keys
  // j < g and |i - j| <= w: the weights say so.
  Generator gen(5);
  Tensor q = randn({1, 1, 50, 8}, kFloat32, &gen), k = randn({1, 1, 50, 8}, kFloat32, &gen);
  F::SdpaOptions o = F::SdpaOptions().window(F::Window(2, 2)).global_tokens(3);
  auto [out, lse] = F::scaled_dot_product_attention_with_lse(q, k, k, o);
  Tensor w = F::scaled_dot_product_attention_weights(q, k, lse, o).reshape({50, 50});
  for (int64_t i : {0, 2, 20, 49})
    for (int64_t j = 0; j < 50; ++j) {
      const bool seen = i < 3 || j < 3 || std::abs(i - j) <= 2;
      EXPECT_EQ(w.select(0, i).select(0, j).item<float>() > 0, seen) << i << " " << j;
    }
}

TEST(Attention, FusedMatchesReferenceOverOptionSweep) {
  std::mt19937 rng(2026);
  auto pick = [&](std::initializer_list<int64_t> xs) { return *(xs.begin() + rng() % xs.size()); };
  int n = 0, nontrivial = 0;
  for (int t = 0; t < 160; ++t) {
    Config c;
    c.B = pick({1, 2});
    c.Hk = pick({1, 2});
    c.Hq = c.Hk * pick({1, 1, 3});
    c.L = pick({1, 2, 17, 64, 65, 130});
    c.S = pick({1, 3, 64, 127, 129, 200});
    c.E = pick({1, 3, 8, 16});
    c.Ev = pick({1, 5, 8});
    c.causal = rng() % 2;
    c.align = rng() % 2 ? F::CausalAlign::BottomRight : F::CausalAlign::TopLeft;
    if (rng() % 3 == 0) c.window = F::Window(pick({-1, 0, 5, 40}), pick({-1, 0, 3, 50}));
    c.softcap = rng() % 4 == 0 ? 2.5 : 0.0;
    c.alibi = rng() % 4 == 0;
    c.mask = static_cast<int>(rng() % 8);
    c.key_lengths = rng() % 5 == 0;
    nontrivial += check_fused_against_reference(c, 100 + t);
    ++n;
  }
  std::printf("option sweep: %d configurations, %d with some unmasked output; at most %.2f of a tolerance used\n", n,
              nontrivial, worst_used);
  EXPECT_GT(nontrivial, n * 3 / 4);
}

TEST(Attention, OddSizes) {
  // The sizes the issue names: L=1, S=1, E=1, E=3, E=129, L=1000, S=777.
  const std::vector<Config> cs = {
      cfg(1, 2, 2, 1, 50, 8, 8),  cfg(1, 2, 2, 50, 1, 8, 8),      cfg(2, 1, 1, 33, 40, 1, 1),
      cfg(1, 2, 1, 33, 40, 3, 7), cfg(1, 1, 1, 20, 30, 129, 129), cfg(1, 1, 1, 1000, 777, 16, 16),
  };
  // A window whose band starts inside a key tile, with several key tiles.
  Config w = cfg(1, 2, 1, 600, 700, 16, 8);
  w.window = F::Window(100, 20);
  check_fused_against_reference(w, 6);
  w.align = F::CausalAlign::BottomRight;
  w.mask = 3;
  check_fused_against_reference(w, 5);
  for (Config c : cs) {
    check_fused_against_reference(c, 7);
    c.causal = true;
    check_fused_against_reference(c, 8);
    c.align = F::CausalAlign::BottomRight;
    c.mask = 3;
    check_fused_against_reference(c, 9);
  }
}

TEST(Attention, WideKeyChunksWithEveryUnbandedOption) {
  // Without a band the forward folds two packed key tiles (512 keys) into
  // the softmax at once; keys past one tile (300, 513: a last chunk of one
  // key, 777), with each option that is not a band.
  int checked = 0;
  for (int64_t S : {300, 513, 777}) {
    for (int variant = 0; variant < 8; ++variant) {
      Config c = cfg(2, 2, variant == 7 ? 1 : 2, 37, S, 16, 8);
      if (variant <= 3) c.mask = variant + 1;
      if (variant == 4) c.key_lengths = true;
      if (variant == 5) c.alibi = true;
      if (variant == 6) c.softcap = 2.5;
      check_fused_against_reference(c, 40 + S + variant);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 24);
}

TEST(Attention, BackwardOnModifiersAtTileEdges) {
  // With a (batch, kv head) task per thread the backward runs flex's loop with
  // the SDPA options as modifiers, skipping the 64-key tiles no row sees and
  // the mask calls of tiles every row sees whole. Global tokens and key
  // lengths just below, at and past a tile edge, with windows, causal and
  // masks, and windows wide enough to make whole tiles visible, at one and
  // two threads.
  const int before = get_num_threads();
  int checked = 0;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (int64_t edge : {63, 64, 65}) {
      for (int variant = 0; variant < 8; ++variant) {
        Config c = cfg(2, variant % 2 ? 4 : 2, 2, 200, 260, 16, 8);
        if (variant == 0) c.global_tokens = edge, c.causal = true, c.window = F::Window(8, 0);
        if (variant == 1) c.global_tokens = edge, c.window = F::Window(4, 4), c.mask = 1;
        if (variant == 2) c.key_lengths = true, c.length_base = edge, c.causal = true, c.align = F::CausalAlign::BottomRight;
        if (variant == 3) c.global_tokens = edge, c.key_lengths = true, c.length_base = edge, c.mask = 4, c.alibi = true;
        if (variant == 4) c.window = F::Window(edge + 63, edge + 64);  // at 63: bands that end on a tile's edge
        if (variant >= 5) c.mask = variant, c.global_tokens = edge, c.causal = variant == 6;  // masks read across keys
        check_fused_against_reference(c, 70 + edge + variant);
        ++checked;
      }
    }
  }
  set_num_threads(before);
  EXPECT_EQ(checked, 48);
}

TEST(Attention, VisionShapesAndNarrowColumnChunks) {
  // Shapes of the vision models (Swin's 49-token windows with 32-wide heads,
  // ViT-B's 197 tokens with 64-wide heads) and keys / head dims that leave a
  // tile's last column chunk 1, 2 or 3 vectors wide (the product runs only
  // the vectors a chunk needs); one key tile, packed narrower than a full one.
  const std::vector<Config> cs = {
      cfg(4, 3, 3, 49, 49, 32, 32), cfg(1, 2, 2, 197, 197, 64, 64), cfg(2, 2, 1, 40, 40, 24, 40),
      cfg(1, 2, 2, 33, 20, 48, 17), cfg(1, 1, 1, 70, 100, 32, 48),
  };
  for (Config c : cs) {
    check_fused_against_reference(c, 11);
    c.mask = 3;  // an additive float mask, as Swin's bias and shift mask
    check_fused_against_reference(c, 12);
    c.mask = 0;
    c.window = F::Window(10, 5);  // a band that starts inside the one key tile
    check_fused_against_reference(c, 13);
    c.window = F::Window();
    c.causal = true;
    check_fused_against_reference(c, 14);
  }
}

TEST(Attention, InferenceReadsStridedHeadsInPlace) {
  // Without a gradient to record, the forward reads q, k and v where they
  // are: the head views of one projection buffer, Swin's window views (5-d,
  // heads between windows and tokens), broadcast heads, a cache narrowed to
  // its length, a single query (the direct path). Same arithmetic as on dense
  // copies (the path that records a gradient): equal bit for bit.
  Generator g(41);
  auto dense_out = [](const Tensor& q, const Tensor& k, const Tensor& v, const F::SdpaOptions& o) {
    Tensor qc = q.contiguous().requires_grad_(true), kc = k.contiguous().requires_grad_(true);
    Tensor vc = v.contiguous().requires_grad_(true);
    return F::scaled_dot_product_attention(qc, kc, vc, o).detach();
  };
  struct Case {
    std::string what;
    Tensor q, k, v;
    F::SdpaOptions o;
  };
  std::vector<Case> cases;
  {  // (B, L, 3, H, D) projection: rows 3 H D apart, heads D apart
    Tensor buf = randn({2, 37, 3, 4, 16}, kFloat32, &g);
    auto part = [&](int64_t i) { return buf.select(2, i).transpose(1, 2); };
    cases.push_back({"projection heads", part(0), part(1), part(2), F::SdpaOptions()});
    cases.push_back({"projection heads, causal + window", part(0), part(1), part(2),
                     F::SdpaOptions().is_causal(true).window(F::Window(9, 0))});
  }
  {  // Swin: (B, nW, N, 3, heads, hd) -> (B, nW, heads, N, hd), a float mask per window and head
    Tensor t = randn({2, 4, 49, 3, 3, 32}, kFloat32, &g).permute({3, 0, 1, 4, 2, 5});
    Tensor mask = randn({4, 3, 49, 49}, kFloat32, &g);
    cases.push_back({"swin windows", t.select(0, 0), t.select(0, 1), t.select(0, 2), F::SdpaOptions().attn_mask(mask)});
  }
  {  // grouped query heads from one buffer: 4 query heads, 2 kv heads
    Tensor buf = randn({1, 70, 8, 16}, kFloat32, &g);
    Tensor q = buf.narrow(2, 0, 4).transpose(1, 2), k = buf.narrow(2, 4, 2).transpose(1, 2);
    Tensor v = buf.narrow(2, 6, 2).transpose(1, 2);
    cases.push_back({"gqa", q, k, v, F::SdpaOptions().enable_gqa(true)});
  }
  {  // broadcast heads (stride 0) and a cache's storage narrowed to its length
    Tensor q = randn({2, 3, 20, 8}, kFloat32, &g);
    Tensor k = randn({2, 1, 50, 8}, kFloat32, &g).expand({2, 3, 50, 8});
    Tensor cache = randn({2, 3, 64, 8}, kFloat32, &g);
    cases.push_back({"broadcast k, cached v", q, k, cache.narrow(2, 0, 50), F::SdpaOptions()});
    cases.push_back({"one query (direct)", q.narrow(2, 5, 1), cache.narrow(2, 0, 33), cache.narrow(2, 0, 33),
                     F::SdpaOptions()});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_FALSE(c.q.is_contiguous() && c.k.is_contiguous() && c.v.is_contiguous());
    Tensor got;
    {
      NoGradGuard ng;
      got = F::scaled_dot_product_attention(c.q, c.k, c.v, c.o);
    }
    Tensor want = dense_out(c.q, c.k, c.v, c.o);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_TRUE(equal(got, want)) << "max |diff| " << amax(abs(got - want).reshape({-1}), {0}).item<double>();
    // and both near the float64 reference
    F::SdpaOptions o64 = c.o;
    if (c.o.attn_mask().defined()) o64.attn_mask(c.o.attn_mask().to(kFloat64));
    Tensor ref = F::scaled_dot_product_attention(c.q.to(kFloat64), c.k.to(kFloat64), c.v.to(kFloat64), o64);
    EXPECT_LT(amax(abs(got.to(kFloat64) - ref).reshape({-1}), {0}).item<double>(), 1e-5);
  }
}

TEST(Attention, ReferenceMatchesFiniteDifferences) {
  Config c1 = cfg(1, 2, 1, 3, 4, 2, 3);
  c1.causal = true, c1.softcap = 1.5, c1.alibi = true, c1.mask = 3;
  Config c2 = cfg(2, 1, 1, 4, 3, 2, 2);
  c2.align = F::CausalAlign::BottomRight, c2.window = F::Window(1, 0), c2.mask = 4, c2.key_lengths = true;
  for (const Config& c : {c1, c2}) {
    SCOPED_TRACE(c.label());
    Generator g(5);
    Tensor q = randn({c.B, c.Hq, c.L, c.E}, kFloat64, &g), k = randn({c.B, c.Hk, c.S, c.E}, kFloat64, &g);
    Tensor v = randn({c.B, c.Hk, c.S, c.Ev}, kFloat64, &g);
    Tensor m = c.mask == 3 ? randn({c.B, 1, c.L, c.S}, kFloat64, &g)
                           : masked_fill(randn({c.L, c.S}, kFloat64, &g), rand({c.L, c.S}, kFloat64, &g) > 0.7, -INFINITY);
    F::SdpaOptions o;
    o.is_causal(c.causal).causal_align(c.align).window(c.window).softcap(c.softcap).enable_gqa(c.Hq != c.Hk);
  o.global_tokens(c.global_tokens).stride(c.stride);
    if (c.alibi) o.alibi_slopes(full({c.Hq}, 0.3, kFloat64));
    if (c.key_lengths) o.key_lengths(from_vector({2, 3}));
    Tensor w = randn({c.B, c.Hq, c.L, c.Ev}, kFloat64, &g);
    std::vector<Tensor> in = {q, k, v, m};
    auto loss = [&](const std::vector<Tensor>& x) {
      F::SdpaOptions oo = o;
      oo.attn_mask(x[3]);
      return (F::scaled_dot_product_attention_reference(x[0], x[1], x[2], oo) * w).sum();
    };
    std::vector<Tensor> leaves;
    for (const Tensor& t : in) leaves.push_back(t.clone().detach().requires_grad_(true));
    loss(leaves).backward();
    for (size_t a = 0; a < in.size(); ++a) {
      Tensor num = zeros(in[a].shape(), kFloat64);
      for (int64_t e = 0; e < in[a].numel(); ++e) {
        std::vector<Tensor> xs;
        for (const Tensor& t : in) xs.push_back(t.clone());
        double* p = xs[a].data<double>();
        if (std::isinf(p[e])) continue;  // masked-out entries have no derivative
        const double x0 = p[e];
        p[e] = x0 + 1e-6;
        const double lp = loss(xs).item<double>();
        p[e] = x0 - 1e-6;
        const double lm = loss(xs).item<double>();
        num.data<double>()[e] = (lp - lm) / 2e-6;
      }
      Comparison cmp = compare("input " + std::to_string(a), leaves[a].grad(), num, 1e-5, 1e-6);
      EXPECT_TRUE(cmp.ok) << cmp.message;
    }
  }
}

TEST(Attention, FullyMaskedRowsGiveZerosNotNaN) {
  Generator g(1);
  Tensor q = randn({1, 2, 4, 8}, kFloat32, &g).requires_grad_(true), k = randn({1, 2, 6, 8}, kFloat32, &g).requires_grad_(true);
  Tensor v = randn({1, 2, 6, 8}, kFloat32, &g).requires_grad_(true);
  Tensor mask = ones({4, 6}, kBool);
  mask.select(0, 2).fill_(0);  // query 2 attends to nothing
  auto [out, lse] = F::scaled_dot_product_attention_with_lse(q, k, v, F::SdpaOptions().attn_mask(mask));
  EXPECT_EQ(amax(abs(out.select(2, 2)).reshape({-1}), {0}).item<float>(), 0.0f);
  EXPECT_TRUE(std::isinf(lse[0][0][2].item<float>()));
  out.sum().backward();
  EXPECT_EQ(amax(abs(q.grad().select(2, 2)).reshape({-1}), {0}).item<float>(), 0.0f);
  EXPECT_TRUE(equal(eq(q.grad(), q.grad()), ones(q.shape(), kBool)));
  // Huge logits stay finite.
  Tensor big = F::scaled_dot_product_attention(q.detach() * 1e4, k.detach(), v.detach());
  EXPECT_TRUE(equal(eq(big, big), ones(big.shape(), kBool)));
}

TEST(Attention, DropoutIsSeededSharedAndUnbiased) {
  // Uniform attention over S keys with v = identity: out[i][j] = z_ij / S.
  const int64_t L = 256, S = 256;
  Tensor q = zeros({1, 1, L, 4}), k = zeros({1, 1, S, 4}), v = eye(S).reshape({1, 1, S, S});
  Generator g1(77), g2(77);
  const double p = 0.3;
  Tensor a = F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().dropout_p(p).generator(&g1));
  Tensor b = F::scaled_dot_product_attention(q, k, v, F::SdpaOptions().dropout_p(p).generator(&g2));
  EXPECT_TRUE(equal(a, b));
  const double kept = (a > 0.0).to(kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 1 - p, 0.01);
  EXPECT_NEAR((a * static_cast<double>(S)).mean().item<double>(), 1.0, 0.02);
  // The reference draws the very same mask.
  Generator g3(77);
  Tensor r = F::scaled_dot_product_attention_reference(q.to(kFloat64), k.to(kFloat64), v.to(kFloat64),
                                                       F::SdpaOptions().dropout_p(p).generator(&g3));
  EXPECT_TRUE(allclose(a.to(kFloat64), r, 1e-6, 1e-7));
  // And the backward regenerates it: gradients match the reference's.
  Generator g4(5), g5(5);
  auto grads = [&](DType dt, Generator* gen) {
    Generator d(9);
    Tensor qq = randn({1, 2, 33, 8}, kFloat64, &d).to(dt).requires_grad_(true);
    Tensor kk = randn({1, 2, 40, 8}, kFloat64, &d).to(dt).requires_grad_(true);
    Tensor vv = randn({1, 2, 40, 8}, kFloat64, &d).to(dt).requires_grad_(true);
    auto [o, lse] = F::scaled_dot_product_attention_with_lse(qq, kk, vv, F::SdpaOptions().dropout_p(0.4).generator(gen));
    (o * randn(o.shape(), kFloat64, &d).to(dt)).sum().backward();
    return std::vector<Tensor>{o, qq.grad(), kk.grad(), vv.grad(), lse};
  };
  const char* names[] = {"out", "dq", "dk", "dv"};
  auto f32 = grads(kFloat32, &g4), f64 = grads(kFloat64, &g5);
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE("dropout");
    expect_close(names[i], f32[i], f64[i], cfg(1, 2, 2, 33, 40, 8, 8), max_abs(f64[4]));
  }
  // The strided pattern runs its strided keys in a second, regrouped pass:
  // the same draws reach them there.
  auto strided = [&](DType dt, Generator* gen) {
    Generator d(10);
    Tensor qq = randn({1, 2, 150, 8}, kFloat64, &d).to(dt).requires_grad_(true);
    Tensor kk = randn({1, 2, 150, 8}, kFloat64, &d).to(dt).requires_grad_(true);
    Tensor vv = randn({1, 2, 150, 8}, kFloat64, &d).to(dt).requires_grad_(true);
    F::SdpaOptions o = F::SdpaOptions().dropout_p(0.3).generator(gen).is_causal(true);
    auto [out, lse] =
        F::scaled_dot_product_attention_with_lse(qq, kk, vv, o.window(F::Window(4, 0)).stride(7).global_tokens(2));
    (out * randn(out.shape(), kFloat64, &d).to(dt)).sum().backward();
    return std::vector<Tensor>{out, qq.grad(), kk.grad(), vv.grad(), lse};
  };
  Generator g6(8), g7(8);
  auto s32 = strided(kFloat32, &g6), s64 = strided(kFloat64, &g7);
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE("strided dropout");
    expect_close(names[i], s32[i], s64[i], cfg(1, 2, 2, 150, 150, 8, 8), max_abs(s64[4]));
  }
}

TEST(Attention, WeightsFromTheSavedLse) {
  Generator g(2);
  Tensor q = randn({2, 3, 70, 8}, kFloat32, &g), k = randn({2, 3, 150, 8}, kFloat32, &g), v = randn({2, 3, 150, 4}, kFloat32, &g);
  F::SdpaOptions o = F::SdpaOptions().is_causal(true).causal_align(F::CausalAlign::BottomRight);
  auto [out, lse] = F::scaled_dot_product_attention_with_lse(q, k, v, o);
  Tensor w = F::scaled_dot_product_attention_weights(q, k, lse, o);
  EXPECT_EQ(w.shape(), (Shape{2, 3, 70, 150}));
  EXPECT_TRUE(allclose(sum(w, {-1}), ones({2, 3, 70}), 1e-5, 1e-5));
  EXPECT_TRUE(allclose(matmul(w, v), out, 1e-4, 1e-5));  // the weights reproduce the output
  auto [o64, l64] = F::scaled_dot_product_attention_with_lse(q.to(kFloat64), k.to(kFloat64), v.to(kFloat64), o);
  EXPECT_TRUE(allclose(F::scaled_dot_product_attention_weights(q.to(kFloat64), k.to(kFloat64), l64, o), w.to(kFloat64), 1e-4, 1e-6));
  // Averaged over heads without the per-head tensor, with GQA and a padding mask.
  Tensor kg = randn({2, 1, 150, 8}, kFloat32, &g), vg = randn({2, 1, 150, 4}, kFloat32, &g);
  F::SdpaOptions og = F::SdpaOptions().enable_gqa(true).attn_mask(rand({2, 1, 1, 150}, kFloat32, &g) > 0.3);
  auto [og_out, lg] = F::scaled_dot_product_attention_with_lse(q, kg, vg, og);
  Tensor avg = F::scaled_dot_product_attention_weights(q, kg, lg, og, true);
  EXPECT_EQ(avg.shape(), (Shape{2, 70, 150}));
  Tensor per_head = F::scaled_dot_product_attention_weights(q, kg, lg, og);
  EXPECT_TRUE(allclose(avg, mean(per_head, {1}), 1e-6, 1e-7));
  auto [o64g, l64g] = F::scaled_dot_product_attention_with_lse(q.to(kFloat64), kg.to(kFloat64), vg.to(kFloat64), og);
  EXPECT_TRUE(allclose(F::scaled_dot_product_attention_weights(q.to(kFloat64), kg.to(kFloat64), l64g, og, true),
                       avg.to(kFloat64), 1e-4, 1e-6));
  Tensor q2 = randn({5, 8}, kFloat32, &g), k2 = randn({6, 8}, kFloat32, &g);  // no head dim: nothing to average
  auto [o2, l2] = F::scaled_dot_product_attention_with_lse(q2, k2, k2);
  EXPECT_TRUE(equal(F::scaled_dot_product_attention_weights(q2, k2, l2, {}, true),
                    F::scaled_dot_product_attention_weights(q2, k2, l2)));
}

// Runs c at 1 and at 2 threads and expects every result bit-identical.
void expect_bit_identical_across_threads(const Config& c, uint64_t seed) {
  SCOPED_TRACE(c.label());
  const int before = get_num_threads();
  set_num_threads(1);
  Results a = run(c, kFloat32, seed);
  set_num_threads(2);
  Results b = run(c, kFloat32, seed);
  set_num_threads(before);
  EXPECT_TRUE(equal(a.out, b.out));
  EXPECT_TRUE(equal(a.lse, b.lse));
  EXPECT_TRUE(equal(a.dq, b.dq));
  EXPECT_TRUE(equal(a.dk, b.dk));
  EXPECT_TRUE(equal(a.dv, b.dv));
  EXPECT_TRUE(equal(a.dmask, b.dmask));
}

TEST(Attention, BitIdenticalAtOneAndTwoThreads) {
  Config c = cfg(2, 4, 2, 130, 200, 16, 8);
  c.causal = true, c.align = F::CausalAlign::BottomRight, c.alibi = true, c.mask = 3, c.key_lengths = true;
  expect_bit_identical_across_threads(c, 3);
}

TEST(Attention, StridedPatternIsBitIdenticalAtOneAndTwoThreads) {
  Config c = cfg(2, 2, 1, 300, 300, 16, 8);  // several kv heads: one task per head
  c.causal = true, c.window = F::Window(10, 0), c.stride = 16, c.mask = 3, c.global_tokens = 3;
  expect_bit_identical_across_threads(c, 5);
  c.B = 1;  // a single kv head: the key-tile and query-tile passes
  expect_bit_identical_across_threads(c, 6);
}

TEST(Attention, SingleKvHeadBackwardIsBitIdenticalAtOneAndTwoThreads) {
  // Batch 1 with one kv head takes the two-pass backward.
  Config c = cfg(1, 3, 1, 200, 300, 16, 8);
  c.causal = true, c.mask = 3, c.softcap = 2.0;
  check_fused_against_reference(c, 12);
  expect_bit_identical_across_threads(c, 4);
}

// Keys and values that are views of a larger buffer, as a KV cache's
// (B, H, capacity, D) storage narrowed to its length, are read in place when
// no gradient is recorded: the same bits as their contiguous copies, for few
// queries (the direct score path) and many (packed K^T), with GQA, masks,
// ALiBi, key lengths and bottom-right causal alignment; and the reference's
// values.
TEST(Attention, ReadsStridedCacheViewsInPlace) {
  Generator g(11);
  int cases = 0;
  for (int64_t L : {1, 3, 8, 20})
    for (int variant = 0; variant < 4; ++variant) {
      const int64_t B = 2, Hq = variant % 2 ? 4 : 2, Hk = 2, S = 37 + L, cap = 96, E = 16, Ev = variant == 3 ? 8 : 16;
      Tensor kbuf = randn({B, Hk, cap, E}, kFloat32, &g), vbuf = randn({B, Hk, cap, Ev}, kFloat32, &g);
      Tensor k = kbuf.narrow(2, 0, S), v = vbuf.narrow(2, 0, S);
      ASSERT_FALSE(k.is_contiguous());
      Tensor q = randn({B, Hq, L, E}, kFloat32, &g);
      F::SdpaOptions o;
      o.is_causal(true).causal_align(F::CausalAlign::BottomRight).enable_gqa(Hq != Hk);
      if (variant == 1) o.attn_mask(rand({B, 1, 1, S}, kFloat32, &g) > 0.2);
      if (variant == 2) o.alibi_slopes(rand({Hq}, kFloat32, &g)).key_lengths(full({B}, static_cast<double>(S - 3), kInt64));
      if (variant == 3) o.attn_mask(randn({B, 1, L, S}, kFloat32, &g)).is_causal(false);
      NoGradGuard ng;
      Tensor got = F::scaled_dot_product_attention(q, k, v, o);
      Tensor dense = F::scaled_dot_product_attention(q, k.contiguous(), v.contiguous(), o);
      EXPECT_TRUE(equal(got, dense)) << "L " << L << " variant " << variant;
      F::SdpaOptions o64 = o;
      if (o.attn_mask().defined() && o.attn_mask().dtype() != kBool) o64.attn_mask(o.attn_mask().to(kFloat64));
      if (o.alibi_slopes().defined()) o64.alibi_slopes(o.alibi_slopes().to(kFloat64));
      Tensor ref = F::scaled_dot_product_attention_reference(q.to(kFloat64), k.to(kFloat64), v.to(kFloat64), o64);
      Comparison c = compare("strided cache L" + std::to_string(L), got, ref, 0.0, 1e-5);
      EXPECT_TRUE(c.ok) << c.message;
      ++cases;
    }
  EXPECT_EQ(cases, 16);
}

TEST(Attention, UnbatchedAndExtraBatchDims) {
  Generator g(4);
  Tensor q = randn({5, 8}, kFloat32, &g), k = randn({7, 8}, kFloat32, &g), v = randn({7, 3}, kFloat32, &g);
  EXPECT_TRUE(allclose(F::scaled_dot_product_attention(q, k, v), F::scaled_dot_product_attention_reference(q, k, v), 1e-5, 1e-6));
  Tensor q5 = randn({2, 3, 2, 5, 8}, kFloat32, &g), k5 = randn({2, 3, 2, 7, 8}, kFloat32, &g), v5 = randn({2, 3, 2, 7, 3}, kFloat32, &g);
  EXPECT_TRUE(allclose(F::scaled_dot_product_attention(q5, k5, v5), F::scaled_dot_product_attention_reference(q5, k5, v5), 1e-5, 1e-6));
  // Per-batch ALiBi slopes over two batch dims.
  F::SdpaOptions o = F::SdpaOptions().alibi_slopes(rand({2, 3, 2}, kFloat32, &g)).is_causal(true);
  EXPECT_TRUE(allclose(F::scaled_dot_product_attention(q5, k5, v5, o),
                       F::scaled_dot_product_attention_reference(q5, k5, v5, o), 1e-5, 1e-6));
}

TEST(Attention, BadInput) {
  Tensor q = randn({1, 4, 5, 8}), k = randn({1, 2, 6, 8}), v = randn({1, 2, 6, 8});
  auto msg = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(msg([&] { F::scaled_dot_product_attention(q, k, v); }).find("enable_gqa"), std::string::npos);
  EXPECT_NE(msg([&] { F::scaled_dot_product_attention(q, randn({1, 4, 6, 7}), randn({1, 4, 6, 8})); }).find("last dims (E)"), std::string::npos);
  EXPECT_NE(msg([&] { F::scaled_dot_product_attention(q, q, q.to(kFloat64)); }).find("float32 but value is float64"), std::string::npos);
  EXPECT_NE(msg([&] { F::scaled_dot_product_attention(q, q, q, F::SdpaOptions().attn_mask(ones({5, 4}, kBool))); }).find("broadcast"), std::string::npos);
  EXPECT_NE(msg([&] { F::scaled_dot_product_attention(q, q, q, F::SdpaOptions().attn_mask(ones({5, 5}, kInt64))); }).find("attn_mask must be bool"), std::string::npos);
  EXPECT_NE(msg([&] { F::scaled_dot_product_attention(q, q, q, F::SdpaOptions().dropout_p(2)); }).find("dropout_p"), std::string::npos);
  EXPECT_NE(msg([&] { F::scaled_dot_product_attention(q, q, q, F::SdpaOptions().key_lengths(from_vector({9}))); }).find("outside [0, 5]"), std::string::npos);
  EXPECT_NE(msg([&] { F::scaled_dot_product_attention(q, q, q, F::SdpaOptions().alibi_slopes(ones({3}))); }).find("alibi_slopes"), std::string::npos);
  EXPECT_NE(msg([&] { F::scaled_dot_product_attention(q, q, q, F::SdpaOptions().window(F::Window(-2, 0))); }).find("window"), std::string::npos);
  EXPECT_NE(msg([&] { F::scaled_dot_product_attention(randn({5}), randn({5}), randn({5})); }).find("at least 2"), std::string::npos);
  EXPECT_EQ(msg([&] { F::scaled_dot_product_attention(q, q, q); }).rfind("scaled_dot_product_attention", 0), std::string::npos);
}


// diagonal_offset places a block inside a longer sequence: the block of
// queries [q0, q0 + l) over keys [k0, k0 + s) of a causal, windowed, strided,
// ALiBi attention, computed alone with diagonal_offset(q0 - k0), has the
// scores of the whole attention restricted to the block (its LSE over the
// block's keys), fused and float64 reference alike.
TEST(Attention, DiagonalOffsetIsABlockOfTheWholeSequence) {
  Generator g(77);
  const int64_t N = 40, q0 = 24, l = 9, k0 = 8, s = 13;
  Tensor q = randn({1, 2, N, 8}, kFloat64, &g), k = randn({1, 2, N, 8}, kFloat64, &g);
  Tensor v = randn({1, 2, N, 8}, kFloat64, &g);
  Tensor slopes = F::alibi_slopes(2, kFloat64);
  auto opts = [&] {
    return F::SdpaOptions().is_causal(true).window(F::Window(20, 2)).stride(5).alibi_slopes(slopes);
  };
  // The whole sequence's attention restricted to keys [k0, k0 + s) through a
  // key mask: the same scores and masks as the block's.
  Tensor pos = arange(0, N).to(kFloat32);
  Tensor keys = logical_and(ge(pos, full({}, k0)), lt(pos, full({}, k0 + s)));
  auto [whole, whole_lse] = F::scaled_dot_product_attention_with_lse(q, k, v, opts().attn_mask(keys));
  for (DType dt : {kFloat64, kFloat32}) {
    auto [blk, blk_lse] = F::scaled_dot_product_attention_with_lse(
        q.narrow(2, q0, l).to(dt), k.narrow(2, k0, s).to(dt), v.narrow(2, k0, s).to(dt),
        opts().alibi_slopes(slopes.to(dt)).diagonal_offset(q0 - k0));
    const double tol = dt == kFloat64 ? 1e-12 : 1e-5;
    EXPECT_LT(max(abs(blk.to(kFloat64) - whole.narrow(2, q0, l))).item<double>(), tol) << dtype_name(dt);
    Tensor a = blk_lse.to(kFloat64), b = whole_lse.narrow(2, q0, l);
    auto ninf = [](const Tensor& t) { return eq(t, full({}, -INFINITY, kFloat64)); };
    EXPECT_TRUE(equal(ninf(a), ninf(b))) << dtype_name(dt);
    Tensor fin = logical_not(ninf(b));
    EXPECT_LT(max(abs(where(fin, a, 0.0) - where(fin, b, 0.0))).item<double>(), tol) << dtype_name(dt);
  }
}

// The backward function, from the forward's own output and LSE, gives the
// gradients autograd gives; from a merged output and LSE, the shares of two
// key blocks add up to the whole attention's gradients.
TEST(Attention, BackwardFunctionMatchesAutogradAndSplitsOverKeyBlocks) {
  Generator g(78);
  Tensor q = randn({2, 4, 12, 8}, {}, &g).requires_grad_(), k = randn({2, 2, 20, 8}, {}, &g).requires_grad_();
  Tensor v = randn({2, 2, 20, 6}, {}, &g).requires_grad_(), dout = randn({2, 4, 12, 6}, {}, &g);
  auto o = F::SdpaOptions().is_causal(true).causal_align(F::CausalAlign::BottomRight).enable_gqa(true).softcap(4.0);
  auto [out, lse] = F::scaled_dot_product_attention_with_lse(q, k, v, o);
  out.backward(dout);
  auto near = [](const Tensor& a, const Tensor& b) { return max(abs(a - b)).item<double>(); };
  auto [dq, dk, dv] = F::scaled_dot_product_attention_backward(dout, q, k, v, out.detach(), lse, o);
  EXPECT_LT(near(dq, q.grad()), 1e-5);
  EXPECT_LT(near(dk, k.grad()), 1e-5);
  EXPECT_LT(near(dv, v.grad()), 1e-5);
  // Keys [0, 7) and [7, 20): bottom-right alignment puts query i at key i + 8.
  Tensor dq_sum = zeros_like(q);
  std::vector<Tensor> dks, dvs;
  for (auto [k0, n] : {std::pair<int64_t, int64_t>{0, 7}, {7, 13}}) {
    auto ob = F::SdpaOptions().is_causal(true).enable_gqa(true).softcap(4.0).diagonal_offset(8 - k0);
    auto [a, b, c] = F::scaled_dot_product_attention_backward(dout, q, k.narrow(2, k0, n), v.narrow(2, k0, n),
                                                             out.detach(), lse, ob);
    dq_sum = dq_sum + a;
    dks.push_back(b);
    dvs.push_back(c);
  }
  EXPECT_LT(near(dq_sum, q.grad()), 1e-5);
  EXPECT_LT(near(cat(dks, 2), k.grad()), 1e-5);
  EXPECT_LT(near(cat(dvs, 2), v.grad()), 1e-5);
  EXPECT_THROW(F::scaled_dot_product_attention_backward(dout, q, k, v, out.detach(), lse.narrow(2, 0, 3), o), Error);
  EXPECT_THROW(F::scaled_dot_product_attention_backward(dout.to(kFloat64), q.to(kFloat64), k.to(kFloat64),
                                                        v.to(kFloat64), out.to(kFloat64), lse.to(kFloat64), o),
               Error);
}

// Under BatchShardGuard, each share of a batch draws the dropout masks of its
// rows in the whole batch (dropout and SDPA's fused and reference dropout),
// and the generator advances as for the whole batch.
TEST(Attention, BatchShardDrawsTheWholeBatchsDropout) {
  Generator data(79);
  Tensor q = randn({6, 2, 10, 8}, {}, &data), k = randn({6, 2, 14, 8}, {}, &data), v = randn({6, 2, 14, 8}, {}, &data);
  Tensor x = randn({6, 5, 7}, {}, &data);
  for (DType dt : {kFloat32, kFloat64}) {
    auto o = [](Generator& gen) { return F::SdpaOptions().dropout_p(0.3).generator(&gen); };
    Generator whole_gen(5);
    Tensor whole = F::scaled_dot_product_attention(q.to(dt), k.to(dt), v.to(dt), o(whole_gen));
    Tensor whole_drop = F::dropout(x.to(dt), 0.4, true, &whole_gen);
    for (auto [begin, rows] : {std::pair<int64_t, int64_t>{0, 2}, {2, 3}, {5, 1}}) {
      Generator gen(5);
      BatchShardGuard guard(begin, rows, 6);
      Tensor part = F::scaled_dot_product_attention(q.narrow(0, begin, rows).to(dt), k.narrow(0, begin, rows).to(dt),
                                                    v.narrow(0, begin, rows).to(dt), o(gen));
      EXPECT_LT(max(abs(part - whole.narrow(0, begin, rows))).item<double>(), 1e-5) << begin;
      Tensor drop = F::dropout(x.narrow(0, begin, rows).to(dt), 0.4, true, &gen);
      EXPECT_TRUE(equal(drop, whole_drop.narrow(0, begin, rows))) << begin;
      EXPECT_EQ(gen.offset(), whole_gen.offset());
    }
  }
  EXPECT_THROW(BatchShardGuard(4, 3, 6), Error);
  EXPECT_FALSE(batch_shard().active());
}

}  // namespace
}  // namespace attn
