// The autograd engine: backward, gradient arguments, accumulation,
// retain_graph, NoGradGuard, detach, leaves, autograd::grad.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <cmath>

namespace attn {
namespace {

TEST(Autograd, ScalarBackward) {
  Tensor x = from_vector(std::vector<double>{1, 2, 3}).requires_grad_(true);
  Tensor y = (x * x).sum();  // dy/dx = 2x
  EXPECT_EQ(y.grad_fn_name(), "SumBackward");
  y.backward();
  EXPECT_TRUE(equal(x.grad(), from_vector(std::vector<double>{2, 4, 6})));
}

TEST(Autograd, NonScalarNeedsAGradient) {
  Tensor x = ones({3}, kFloat64).requires_grad_(true);
  Tensor y = x * 2.0;
  try {
    y.backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("only for scalar outputs"), std::string::npos) << e.what();
  }
  y.backward(from_vector(std::vector<double>{1, 10, 100}));
  EXPECT_TRUE(equal(x.grad(), from_vector(std::vector<double>{2, 20, 200})));
  EXPECT_THROW(y.backward(ones({2}, kFloat64), true), Error);     // wrong shape
  EXPECT_THROW((x * 3.0).backward(ones({3}, kFloat32)), Error);  // wrong dtype
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = ones({2}, kFloat64).requires_grad_(true);
  (x * 3.0).sum().backward();
  (x * 4.0).sum().backward();
  EXPECT_TRUE(equal(x.grad(), full({2}, 7.0, kFloat64)));
  x.set_grad({});
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, FreedGraphAndRetainGraph) {
  Tensor x = ones({2}, kFloat64).requires_grad_(true);
  Tensor y = exp(x).sum();
  y.backward({}, /*retain_graph=*/true);
  y.backward();  // the graph was kept for this second pass
  EXPECT_NEAR(x.grad()[0].item<double>(), 2 * std::exp(1.0), 1e-12);
  try {
    y.backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
  }
}

TEST(Autograd, SharedSubexpressionsSumTheirGradients) {
  Tensor x = from_vector(std::vector<double>{0.5, -1.5}).requires_grad_(true);
  Tensor a = x * 2.0;
  Tensor y = (a * a + a + sin(x)).sum();  // d/dx = 8x + 2 + cos x
  y.backward();
  for (int i = 0; i < 2; ++i) {
    const double v = x[i].item<double>();
    EXPECT_NEAR(x.grad()[i].item<double>(), 8 * v + 2 + std::cos(v), 1e-12);
  }
}

TEST(Autograd, NoGradGuardAndDetach) {
  Tensor x = ones({2}).requires_grad_(true);
  {
    NoGradGuard ng;
    Tensor y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(is_grad_enabled());
  }
  EXPECT_TRUE(is_grad_enabled());
  Tensor d = (x * 2.0).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  EXPECT_THROW(d.sum().backward(), Error);  // nothing requires grad
}

TEST(Autograd, RequiresGradRules) {
  Tensor x = ones({2}).requires_grad_(true);
  Tensor y = x * 2.0;
  EXPECT_FALSE(y.is_leaf());
  EXPECT_THROW(y.requires_grad_(false), Error);
  EXPECT_THROW(arange(3).requires_grad_(true), Error);
  EXPECT_THROW(x.fill_(1.0), Error);  // in-place on a leaf that requires grad
  NoGradGuard ng;
  x.fill_(3.0);  // allowed outside grad mode (an optimizer step)
  EXPECT_EQ(x.sum().item<float>(), 6.0f);
}

TEST(Autograd, GradFunctionDoesNotTouchLeaves) {
  Tensor x = from_vector(std::vector<double>{1, 2}).requires_grad_(true);
  Tensor w = from_vector(std::vector<double>{3, 4}).requires_grad_(true);
  Tensor h = x * w;
  Tensor y = (h * h).sum();
  auto g = autograd::grad({y}, {x, h});
  EXPECT_TRUE(equal(g[0], from_vector(std::vector<double>{2 * 3 * 3 * 1, 2 * 4 * 4 * 2})));
  EXPECT_TRUE(equal(g[1], from_vector(std::vector<double>{6, 16})));
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
}

TEST(Autograd, MultipleRoots) {
  Tensor x = ones({2}, kFloat64).requires_grad_(true);
  autograd::backward({(x * 2.0).sum(), (x * 5.0).sum()});
  EXPECT_TRUE(equal(x.grad(), full({2}, 7.0, kFloat64)));
}

TEST(Autograd, ViewsPropagateGradients) {
  Tensor x = arange(0, 6, 1, kFloat64).reshape({2, 3}).detach().requires_grad_(true);
  Tensor y = x.t().slice(0, 1, 3).select(1, 1).sum();  // picks x[1][1] and x[1][2]
  y.backward();
  EXPECT_TRUE(equal(x.grad(), from_vector(std::vector<double>{0, 0, 0, 0, 1, 1}, {2, 3})));
}

TEST(Autograd, LeafGradientsNeverAlias) {
  // add's backward hands the same buffer to both inputs: each leaf must own its grad.
  Tensor a = ones({3}, kFloat64).requires_grad_(true), b = ones({3}, kFloat64).requires_grad_(true);
  (a + b).sum().backward();
  a.grad().fill_(5.0);
  EXPECT_TRUE(equal(b.grad(), ones({3}, kFloat64)));
  // A gradient the caller passes in is copied, not kept.
  Tensor x = ones({2}, kFloat64).requires_grad_(true);
  Tensor g = full({2}, 3.0, kFloat64);
  x.backward(g);
  g.fill_(0.0);
  EXPECT_TRUE(equal(x.grad(), full({2}, 3.0, kFloat64)));
}

TEST(Autograd, DeepChainDoesNotOverflowTheStack) {
  Tensor x = ones({1}, kFloat64).requires_grad_(true);
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = y * 1.0;
  y.sum().backward();
  EXPECT_EQ(x.grad().item<double>(), 1.0);
}


// Post-accumulate hooks run once per backward per leaf, after its grad holds
// the sum of every path; grad() runs none; a removed hook is not called;
// queue_callback runs after the last node, and only inside a backward.
TEST(Autograd, PostAccumulateGradHooksAndQueuedCallbacks) {
  Tensor w = ones({3}).requires_grad_(), b = ones({3}).requires_grad_();
  std::vector<std::string> events;
  const int64_t hw = autograd::register_post_accumulate_grad_hook(w, [&](const Tensor& leaf) {
    events.push_back("w " + std::to_string(leaf.grad().sum().item<float>()));
    if (events.size() == 1) autograd::queue_callback([&] { events.push_back("done"); });
  });
  autograd::register_post_accumulate_grad_hook(b, [&](const Tensor&) { events.push_back("b"); });
  Tensor y = (w * 2.0 + w * b).sum() + b.sum();  // w is reached along two paths
  y.backward();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0] == "b" ? events[1] : events[0], "w 9.000000");
  EXPECT_EQ(events[2], "done");
  autograd::grad({(w * b).sum()}, {w});
  EXPECT_EQ(events.size(), 3u);
  autograd::remove_post_accumulate_grad_hook(w, hw);
  (w * b).sum().backward();
  EXPECT_EQ(events.size(), 4u);
  EXPECT_EQ(events.back(), "b");
  EXPECT_THROW(autograd::queue_callback([] {}), Error);
  EXPECT_THROW(autograd::register_post_accumulate_grad_hook(w * 2.0, [](const Tensor&) {}), Error);
}

}  // namespace
}  // namespace attn
