// A small end-to-end example: a one-head attention-pooling classifier learns
// to name the largest token of a random sequence. Built only from attn's
// tensor ops and autograd (embedding, matmul, softmax, cross_entropy) with a
// hand-written Adam step. Prints the loss falling and the held-out accuracy.
//
//   build/bin/train_tiny [steps]
#include <attn/attn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

using attn::Tensor;
namespace F = attn::F;

namespace {

constexpr int64_t kVocab = 16, kLen = 8, kDim = 32, kBatch = 64;

// tokens (B, T) uniform in [0, V); label = max token.
std::pair<Tensor, Tensor> make_batch(int64_t batch, attn::Generator& gen) {
  Tensor tokens = attn::randint(0, kVocab, {batch, kLen}, attn::kInt64, &gen);
  Tensor labels = attn::argmax(tokens.to(attn::kFloat32), 1);  // index of the max...
  labels = attn::gather(tokens, 1, labels.unsqueeze(1)).squeeze(1);  // ...and its value
  return {tokens, labels};
}

struct Model {
  Tensor emb, wq, wk, wv, wo, bo;  // (V, D), (D), (D, D), (D, D), (V, D), (V)
  std::vector<Tensor*> params() { return {&emb, &wq, &wk, &wv, &wo, &bo}; }

  explicit Model(attn::Generator& gen) {
    auto init = [&](attn::Shape s, double scale) {
      Tensor t = attn::randn(s, attn::kFloat32, &gen) * scale;
      return t.detach().requires_grad_(true);
    };
    const double s = 1.0 / std::sqrt(static_cast<double>(kDim));
    emb = init({kVocab, kDim}, 1.0);
    wq = init({kDim}, s);
    wk = init({kDim, kDim}, s);
    wv = init({kDim, kDim}, s);
    wo = init({kVocab, kDim}, s);
    bo = attn::zeros({kVocab}).requires_grad_(true);
  }

  // logits (B, V) and attention weights (B, T)
  std::pair<Tensor, Tensor> forward(const Tensor& tokens) {
    Tensor x = F::embedding(tokens, emb);                      // (B, T, D)
    Tensor k = attn::matmul(x, wk);                            // (B, T, D)
    Tensor v = attn::matmul(x, wv);                            // (B, T, D)
    Tensor scores = attn::matmul(k, wq) / std::sqrt(static_cast<double>(kDim));  // (B, T)
    Tensor w = F::softmax(scores, -1);                         // (B, T)
    Tensor pooled = attn::matmul(w.unsqueeze(1), v).squeeze(1);  // (B, D)
    return {F::linear(pooled, wo, bo), w};
  }
};

struct Adam {
  double lr, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  int64_t step = 0;
  std::vector<Tensor> m, v;
  void update(const std::vector<Tensor*>& ps) {
    attn::NoGradGuard ng;
    if (m.empty())
      for (Tensor* p : ps) {
        m.push_back(attn::zeros_like(*p));
        v.push_back(attn::zeros_like(*p));
      }
    ++step;
    const double c1 = 1 - std::pow(b1, static_cast<double>(step)), c2 = 1 - std::pow(b2, static_cast<double>(step));
    for (size_t i = 0; i < ps.size(); ++i) {
      Tensor g = ps[i]->grad();
      m[i] = m[i] * b1 + g * (1 - b1);
      v[i] = v[i] * b2 + g * g * (1 - b2);
      Tensor upd = (m[i] / c1) / (attn::sqrt(v[i] / c2) + eps);
      ps[i]->add_(upd, -lr);
      ps[i]->set_grad({});
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  const int64_t steps = argc > 1 ? std::atoll(argv[1]) : 600;
  attn::Generator gen(1234);
  Model model(gen);
  Adam opt{3e-3};
  auto [test_x, test_y] = make_batch(1024, gen);
  std::printf("task: name the largest of %lld tokens drawn from %lld (chance: %.1f%% accuracy)\n",
              static_cast<long long>(kLen), static_cast<long long>(kVocab), 100.0 / kVocab);
  const auto t0 = std::chrono::steady_clock::now();
  double avg = 0;
  for (int64_t step = 1; step <= steps; ++step) {
    auto [x, y] = make_batch(kBatch, gen);
    Tensor loss = F::cross_entropy(model.forward(x).first, y);
    loss.backward();
    opt.update(model.params());
    avg += loss.item<double>();
    if (step % 100 == 0 || step == 1) {
      std::printf("step %4lld  loss %.4f\n", static_cast<long long>(step), step == 1 ? avg : avg / 100);
      avg = 0;
    }
  }
  attn::NoGradGuard ng;
  auto [logits, weights] = model.forward(test_x);
  const double acc = attn::eq(attn::argmax(logits, 1), test_y).to(attn::kFloat64).mean().item<double>();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("held-out accuracy: %.1f%% on %lld sequences (%.1f s)\n", 100 * acc,
              static_cast<long long>(test_x.size(0)), secs);
  std::printf("example: tokens ");
  for (int64_t t = 0; t < kLen; ++t) std::printf("%lld ", static_cast<long long>(test_x[0][t].item<int64_t>()));
  std::printf("-> predicted %lld, attention peaks at position %lld\n",
              static_cast<long long>(attn::argmax(logits.select(0, 0)).item<int64_t>()),
              static_cast<long long>(attn::argmax(weights.select(0, 0)).item<int64_t>()));
  return acc > 0.5 ? 0 : 1;
}
