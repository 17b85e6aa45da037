// Recurrent layers as torch.nn: RNN (tanh or relu), LSTM and GRU with
// num_layers, bias, batch_first, dropout between layers, bidirectional and
// initial states; the single-step cells RNNCell, LSTMCell and GRUCell; and
// packed sequences (pack_padded_sequence / pad_packed_sequence).
//
// Legend: T = time steps, B = batch, I = input size, H = hidden size,
// D = 2 if bidirectional else 1, Ly = num_layers.
//   input: (T, B, I), or (B, T, I) with batch_first, or (T, I) unbatched
//   h_0, c_0, h_n, c_n: (D * Ly, B, H) (never batch-first), or (D * Ly, H) unbatched
//   output: (T, B, D * H) (or batch-first), the last layer's h at every step
// Gate order and parameter names are PyTorch's: LSTM (i, f, g, o), GRU (r, z, n);
// weight_ih_l{k}[_reverse]: (G * H, I or D * H), weight_hh_l{k}[_reverse]: (G * H, H),
// bias_ih_l{k}[_reverse], bias_hh_l{k}[_reverse]: (G * H), all U(-1/sqrt(H), 1/sqrt(H)).
//
// With a PackedSequence each sequence runs for its own length: outputs past
// it are absent (zero once padded back) and the final states are taken at
// the sequence's own last step (the first step for the reverse direction).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "attn/functional.h"
#include "attn/generator.h"
#include "attn/nn/module.h"
#include "attn/tensor.h"

namespace attn::nn {

// ---- Packed sequences ----------------------------------------------------------
// data: (sum of lengths, *) the steps of every sequence, time-major, longest
// sequence first; batch_sizes: int64 (T) the number of sequences at each step;
// sorted_indices / unsorted_indices: int64 (B) the permutation to and from the
// sorted order (undefined when the input was already sorted).
struct PackedSequence {
  Tensor data, batch_sizes, sorted_indices, unsorted_indices;
};

// input: (T, B, *) or (B, T, *) with batch_first; lengths: int64 (B) or a
// vector, each in [1, T]. enforce_sorted: lengths must be non-increasing
// (attn::Error otherwise); false sorts them and records the permutation.
PackedSequence pack_padded_sequence(const Tensor& input, const Tensor& lengths, bool batch_first = false,
                                    bool enforce_sorted = true);
PackedSequence pack_padded_sequence(const Tensor& input, const std::vector<int64_t>& lengths,
                                    bool batch_first = false, bool enforce_sorted = true);
// (padded (T, B, *) or (B, T, *), lengths int64 (B)) in the original batch
// order; entries past a sequence's length are padding_value. total_length pads
// T up to that many steps.
std::tuple<Tensor, Tensor> pad_packed_sequence(const PackedSequence& sequence, bool batch_first = false,
                                               double padding_value = 0.0,
                                               std::optional<int64_t> total_length = std::nullopt);

// ---- Options --------------------------------------------------------------------
enum class RNNNonlinearity { Tanh, ReLU };
inline constexpr RNNNonlinearity kTanh = RNNNonlinearity::Tanh;
inline constexpr RNNNonlinearity kReLU = RNNNonlinearity::ReLU;

struct RNNOptions {
  RNNOptions(int64_t input_size, int64_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
  ATTN_ARG(int64_t, input_size);
  ATTN_ARG(int64_t, hidden_size);
  ATTN_ARG(int64_t, num_layers) = 1;
  ATTN_ARG(RNNNonlinearity, nonlinearity) = RNNNonlinearity::Tanh;  // RNN only
  ATTN_ARG(bool, bias) = true;
  ATTN_ARG(bool, batch_first) = false;
  ATTN_ARG(double, dropout) = 0.0;  // on each layer's output but the last, in training mode
  ATTN_ARG(bool, bidirectional) = false;
  ATTN_ARG(Generator*, generator) = nullptr;  // dropout draws (the default generator when null)
};
using LSTMOptions = RNNOptions;
using GRUOptions = RNNOptions;

// ---- Multi-layer recurrent nets ---------------------------------------------------
class RNNBase : public Module {
 public:
  enum class Mode { RNN_TANH, RNN_RELU, LSTM, GRU };
  void reset_parameters();
  std::string extra_repr() const override;
  // All weights of layer `layer`, direction `dir` (0 forward, 1 reverse):
  // {weight_ih, weight_hh, bias_ih, bias_hh} (biases undefined without bias).
  std::vector<Tensor> layer_weights(int64_t layer, int64_t dir) const;
  RNNOptions options;

 protected:
  RNNBase(const char* name, Mode mode, const RNNOptions& options);
  // The shared engine: sequences (padded, or packed when batch_sizes is
  // defined) through every layer and direction. x: (T, B, I) or packed (N, I);
  // h0/c0: (D * Ly, B, H) in sorted order. Returns (output, h_n, c_n).
  std::tuple<Tensor, Tensor, Tensor> run(const Tensor& x, const std::vector<int64_t>& batch_sizes,
                                         const Tensor& h0, const Tensor& c0) const;
  // Checks and normalises a padded input: returns (x time-major batched, unbatched?).
  std::tuple<Tensor, bool> prepare_input(const Tensor& input) const;
  Tensor prepare_state(const Tensor& h, const char* name, int64_t batch, bool unbatched, DType dtype) const;
  // (output, h_n, c_n) in the caller's layout; c only for LSTM.
  std::tuple<Tensor, Tensor, Tensor> forward_padded(const Tensor& input, const Tensor& h, const Tensor& c) const;
  std::tuple<PackedSequence, Tensor, Tensor> forward_packed(const PackedSequence& input, const Tensor& h,
                                                            const Tensor& c) const;
  Mode mode_;

 private:
  std::vector<Tensor> weights_;  // 4 per (layer, dir), in PyTorch's order
};

// h' = tanh or relu(W_ih x + b_ih + W_hh h + b_hh).
class RNN : public RNNBase {
 public:
  explicit RNN(const RNNOptions& options);
  // (output, h_n).
  std::tuple<Tensor, Tensor> forward(const Tensor& input, const Tensor& hx = {}) const;
  std::tuple<PackedSequence, Tensor> forward(const PackedSequence& input, const Tensor& hx = {}) const;
};

class LSTM : public RNNBase {
 public:
  explicit LSTM(const LSTMOptions& options);
  using State = std::tuple<Tensor, Tensor>;  // (h, c)
  // (output, (h_n, c_n)); hx = (h_0, c_0), both or neither.
  std::tuple<Tensor, State> forward(const Tensor& input, const State& hx = {}) const;
  std::tuple<PackedSequence, State> forward(const PackedSequence& input, const State& hx = {}) const;
};

class GRU : public RNNBase {
 public:
  explicit GRU(const GRUOptions& options);
  std::tuple<Tensor, Tensor> forward(const Tensor& input, const Tensor& hx = {}) const;
  std::tuple<PackedSequence, Tensor> forward(const PackedSequence& input, const Tensor& hx = {}) const;
};

// ---- Cells (one step) ------------------------------------------------------------------
struct RNNCellOptions {
  RNNCellOptions(int64_t input_size, int64_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
  ATTN_ARG(int64_t, input_size);
  ATTN_ARG(int64_t, hidden_size);
  ATTN_ARG(bool, bias) = true;
  ATTN_ARG(RNNNonlinearity, nonlinearity) = RNNNonlinearity::Tanh;  // RNNCell only
};
using LSTMCellOptions = RNNCellOptions;
using GRUCellOptions = RNNCellOptions;

// Parameters weight_ih (G * H, I), weight_hh (G * H, H), bias_ih, bias_hh (G * H).
// input: (B, I) or (I); states (B, H) or (H), zeros when not given.
class RNNCellBase : public Module {
 public:
  void reset_parameters();
  std::string extra_repr() const override;
  RNNCellOptions options;
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;

 protected:
  RNNCellBase(const char* name, const RNNCellOptions& options, int64_t gates);
  // (x as (B, I), h as (B, H) or undefined, unbatched?)
  std::tuple<Tensor, bool> check_input(const Tensor& input) const;
  Tensor check_state(const Tensor& h, const char* name, const Tensor& x, bool unbatched) const;
};

class RNNCell : public RNNCellBase {
 public:
  explicit RNNCell(const RNNCellOptions& options);
  Tensor forward(const Tensor& input, const Tensor& hx = {}) const;
};

class LSTMCell : public RNNCellBase {
 public:
  explicit LSTMCell(const LSTMCellOptions& options);
  // (h', c'); hx = (h, c), both or neither.
  std::tuple<Tensor, Tensor> forward(const Tensor& input, const std::tuple<Tensor, Tensor>& hx = {}) const;
};

class GRUCell : public RNNCellBase {
 public:
  explicit GRUCell(const GRUCellOptions& options);
  Tensor forward(const Tensor& input, const Tensor& hx = {}) const;
};

}  // namespace attn::nn
