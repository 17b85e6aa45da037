// Uses attn from outside its source tree: a linear layer, softmax and one
// backward pass through the public API, then the nn modules of DESIGN.md's
// contract (MultiheadAttention, TransformerEncoderLayer, LSTM).
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

  attn::nn::MultiheadAttention mha(attn::nn::MultiheadAttentionOptions(8, 2).batch_first(true));
  attn::Tensor seq = attn::randn({2, 5, 8}, attn::kFloat32, &gen);
  auto [out, weights] = mha.forward(seq, seq, seq);
  attn::nn::TransformerEncoderLayer layer(
      attn::nn::TransformerEncoderLayerOptions(8, 2).dim_feedforward(16).batch_first(true).norm_first(true));
  layer.eval();
  attn::Tensor enc = layer.forward(seq, {}, {}, /*is_causal=*/true);
  attn::nn::LSTM lstm(attn::nn::LSTMOptions(8, 4).num_layers(2).bidirectional(true).batch_first(true));
  auto [output, state] = lstm.forward(seq);
  auto [h_n, c_n] = state;
  std::printf("mha %s weights %s, encoder %s, lstm %s h_n %s, %zu state_dict keys\n",
              attn::shape_str(out.shape()).c_str(), attn::shape_str(weights.shape()).c_str(),
              attn::shape_str(enc.shape()).c_str(), attn::shape_str(output.shape()).c_str(),
              attn::shape_str(h_n.shape()).c_str(), layer.state_dict().size());
  return 0;
}
