// Uses attn from outside its source tree: a linear layer, softmax and one
// backward pass through the public API.
#include <attn/attn.h>

#include <cstdio>

int main() {
  attn::Generator gen(0);
  attn::Tensor x = attn::randn({4, 8}, attn::kFloat32, &gen);
  attn::Tensor w = attn::randn({3, 8}, attn::kFloat32, &gen).requires_grad_(true);
  attn::Tensor p = attn::F::softmax(attn::F::linear(x, w), -1);
  attn::F::cross_entropy(attn::F::linear(x, w), attn::from_vector({0, 1, 2, 0})).backward();
  std::printf("attn %s: probabilities %s, row sum %.4f, |grad| %.4f\n", attn::kVersion,
              attn::shape_str(p.shape()).c_str(), p[0].sum().item<float>(),
              attn::sqrt((w.grad() * w.grad()).sum()).item<float>());
  return 0;
}
