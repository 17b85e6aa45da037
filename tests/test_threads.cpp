// The thread pool: results are bit-identical at 1 and 2 threads (random
// draws, elementwise, reductions, GEMM, convolution, and their gradients),
// and workers flush denormals.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <cfloat>

namespace attn {
namespace {

struct Outputs {
  Tensor draw, y, loss, gx, gw;
};

Outputs run(int threads) {
  set_num_threads(threads);
  Generator g(11);
  Outputs o;
  o.draw = randn({300001}, kFloat32, &g);
  Tensor x = randn({8, 3, 17, 19}, kFloat32, &g).requires_grad_(true);
  Tensor w = randn({6, 3, 3, 3}, kFloat32, &g).requires_grad_(true);
  Tensor h = F::conv2d(x, w, F::Conv2dFuncOptions().padding(1));
  Tensor z = F::layer_norm(h.flatten(1), {6 * 17 * 19});
  Tensor m = matmul(z.reshape({8, 6 * 17, 19}), randn({19, 33}, kFloat32, &g));
  o.y = F::softmax(F::gelu(m), -1);
  o.loss = (o.y * randn(o.y.shape(), kFloat32, &g)).sum();
  o.loss.backward();
  o.gx = x.grad();
  o.gw = w.grad();
  return o;
}

TEST(Threads, BitIdenticalAcrossThreadCounts) {
  const int before = get_num_threads();
  Outputs one = run(1), two = run(2);
  set_num_threads(before);
  EXPECT_TRUE(equal(one.draw, two.draw));
  EXPECT_TRUE(equal(one.y, two.y));
  EXPECT_TRUE(equal(one.loss, two.loss));
  EXPECT_TRUE(equal(one.gx, two.gx));
  EXPECT_TRUE(equal(one.gw, two.gw));
}

TEST(Threads, SetAndGet) {
  const int before = get_num_threads();
  set_num_threads(1);
  EXPECT_EQ(get_num_threads(), 1);
  set_num_threads(before);
  EXPECT_THROW(set_num_threads(0), Error);
}

TEST(Threads, WorkersFlushDenormals) {
  // FLT_MIN * 0.5 is subnormal; with flush-to-zero the kernel's product is 0.
  Tensor x = full({100000}, FLT_MIN, kFloat32);
  Tensor y = x * 0.5;
  EXPECT_EQ(y[0].item<float>(), 0.0f);
  EXPECT_EQ(y[99999].item<float>(), 0.0f);
}

}  // namespace
}  // namespace attn
