// Recurrent layers, cells and packed sequences, composed from attn ops (so
// autograd differentiates them). Each layer first projects every step's input
// with one GEMM (W_ih x + b_ih for all T at once), then runs the recurrence a
// step at a time; packed sequences shrink (forward) or grow (reverse) the
// batch as sequences end, so no step computes on padding.
#include "attn/nn/rnn.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "attn/autograd.h"
#include "attn/nn/init.h"
#include "attn/ops.h"

namespace attn::nn {

namespace {

int64_t gates_of(RNNBase::Mode m) {
  switch (m) {
    case RNNBase::Mode::LSTM: return 4;
    case RNNBase::Mode::GRU: return 3;
    default: return 1;
  }
}

// One step. gi = W_ih x + b_ih (B, G*H); h (B, H); c (B, H) for LSTM.
// Returns (h', c').
std::tuple<Tensor, Tensor> cell_step(RNNBase::Mode mode, const Tensor& gi, const Tensor& h, const Tensor& c,
                                     const Tensor& w_hh, const Tensor& b_hh) {
  Tensor gh = F::linear(h, w_hh, b_hh);
  switch (mode) {
    case RNNBase::Mode::RNN_TANH: return {tanh(gi + gh), Tensor()};
    case RNNBase::Mode::RNN_RELU: return {relu(gi + gh), Tensor()};
    case RNNBase::Mode::LSTM: {
      auto g = chunk(gi + gh, 4, 1);
      Tensor i = sigmoid(g[0]), f = sigmoid(g[1]), gg = tanh(g[2]), o = sigmoid(g[3]);
      Tensor c2 = f * c + i * gg;
      return {o * tanh(c2), c2};
    }
    case RNNBase::Mode::GRU: {
      auto a = chunk(gi, 3, 1), b = chunk(gh, 3, 1);
      Tensor r = sigmoid(a[0] + b[0]), z = sigmoid(a[1] + b[1]);
      Tensor n = tanh(a[2] + r * b[2]);
      return {n + z * (h - n), Tensor()};  // (1 - z) * n + z * h
    }
  }
  return {};
}

std::vector<int64_t> to_vec(const Tensor& t) {
  Tensor c = t.contiguous();
  const int64_t* p = c.data<int64_t>();
  return std::vector<int64_t>(p, p + c.numel());
}

}  // namespace

// ---- Packed sequences ----------------------------------------------------------
PackedSequence pack_padded_sequence(const Tensor& input, const Tensor& lengths, bool batch_first,
                                    bool enforce_sorted) {
  ATTN_CHECK(lengths.defined() && lengths.dtype() == kInt64 && lengths.dim() == 1,
             "pack_padded_sequence: lengths must be a 1-d int64 tensor, got ",
             lengths.defined() ? dtype_name(lengths.dtype()) + std::string(" ") + shape_str(lengths.shape())
                               : std::string("undefined"));
  return pack_padded_sequence(input, to_vec(lengths), batch_first, enforce_sorted);
}

PackedSequence pack_padded_sequence(const Tensor& input, const std::vector<int64_t>& lengths, bool batch_first,
                                    bool enforce_sorted) {
  ATTN_CHECK(input.defined(), "pack_padded_sequence: input is undefined");
  ATTN_CHECK(input.dim() >= 2, "pack_padded_sequence: input must be (T, B, *) or (B, T, *), got ",
             shape_str(input.shape()));
  Tensor x = batch_first ? input.transpose(0, 1) : input;  // (T, B, *)
  const int64_t T = x.size(0), B = x.size(1);
  ATTN_CHECK(static_cast<int64_t>(lengths.size()) == B, "pack_padded_sequence: ", lengths.size(),
             " lengths for a batch of ", B);
  for (int64_t l : lengths)
    ATTN_CHECK(l >= 1 && l <= T, "pack_padded_sequence: every length must be in [1, ", T, "], got ", l);
  std::vector<int64_t> order(static_cast<size_t>(B));
  std::iota(order.begin(), order.end(), 0);
  PackedSequence out;
  if (enforce_sorted) {
    for (int64_t b = 1; b < B; ++b)
      ATTN_CHECK(lengths[b] <= lengths[b - 1], "pack_padded_sequence: lengths must be sorted in decreasing order "
                 "with enforce_sorted=true (length ", lengths[b], " at ", b, " follows ", lengths[b - 1],
                 "); pass enforce_sorted=false to sort them");
  } else {
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
    std::vector<int64_t> inv(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) inv[order[i]] = i;
    out.sorted_indices = from_vector(order, {B});
    out.unsorted_indices = from_vector(inv, {B});
    x = index_select(x, 1, out.sorted_indices);
  }
  const int64_t Tmax = lengths[order[0]];
  std::vector<int64_t> bs(static_cast<size_t>(Tmax));
  for (int64_t t = 0; t < Tmax; ++t) {
    int64_t n = 0;
    while (n < B && lengths[order[n]] > t) ++n;
    bs[t] = n;
  }
  std::vector<Tensor> steps;
  for (int64_t t = 0; t < Tmax; ++t) steps.push_back(x.select(0, t).narrow(0, 0, bs[t]));
  out.data = cat(steps, 0);
  out.batch_sizes = from_vector(bs, {Tmax});
  return out;
}

std::tuple<Tensor, Tensor> pad_packed_sequence(const PackedSequence& seq, bool batch_first, double padding_value,
                                               std::optional<int64_t> total_length) {
  ATTN_CHECK(seq.data.defined() && seq.batch_sizes.defined(), "pad_packed_sequence: the sequence is empty");
  std::vector<int64_t> bs = to_vec(seq.batch_sizes);
  const int64_t T = static_cast<int64_t>(bs.size()), B = bs.empty() ? 0 : bs[0];
  int64_t total = 0;
  for (int64_t b : bs) total += b;
  ATTN_CHECK(seq.data.dim() >= 1 && seq.data.size(0) == total, "pad_packed_sequence: data has ",
             seq.data.dim() ? seq.data.size(0) : 0, " rows but batch_sizes sum to ", total);
  int64_t Tout = T;
  if (total_length) {
    ATTN_CHECK(*total_length >= T, "pad_packed_sequence: total_length (", *total_length,
               ") is less than the longest sequence (", T, ")");
    Tout = *total_length;
  }
  std::vector<int64_t> pads(static_cast<size_t>(2 * seq.data.dim()), 0);  // pad rows at the end of dim 0
  std::vector<Tensor> steps;
  int64_t off = 0;
  for (int64_t t = 0; t < T; ++t) {
    Tensor s = seq.data.narrow(0, off, bs[t]);
    off += bs[t];
    if (bs[t] < B) {
      pads[pads.size() - 1] = B - bs[t];
      s = pad(s, pads, padding_value);
    }
    steps.push_back(s);
  }
  Tensor out = stack(steps, 0);  // (T, B, *)
  if (Tout > T) {
    std::vector<int64_t> tp(static_cast<size_t>(2 * out.dim()), 0);
    tp[tp.size() - 1] = Tout - T;
    out = pad(out, tp, padding_value);
  }
  std::vector<int64_t> lengths(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) lengths[b] += bs[t] > b;
  Tensor len = from_vector(lengths, {B});
  if (seq.unsorted_indices.defined()) {
    out = index_select(out, 1, seq.unsorted_indices);
    len = index_select(len, 0, seq.unsorted_indices);
  }
  if (batch_first) out = out.transpose(0, 1);
  return {out, len};
}

// ---- Multi-layer recurrent nets ---------------------------------------------------
RNNBase::RNNBase(const char* name, Mode mode, const RNNOptions& o) : Module(name), options(o), mode_(mode) {
  ATTN_CHECK(o.input_size() > 0 && o.hidden_size() > 0, name, ": input_size and hidden_size must be positive, got ",
             o.input_size(), " and ", o.hidden_size());
  ATTN_CHECK(o.num_layers() >= 1, name, ": num_layers must be at least 1, got ", o.num_layers());
  ATTN_CHECK(o.dropout() >= 0.0 && o.dropout() <= 1.0, name, ": dropout must be in [0, 1], got ", o.dropout());
  const int64_t D = o.bidirectional() ? 2 : 1, H = o.hidden_size(), G = gates_of(mode) * H;
  weights_.reserve(static_cast<size_t>(4 * D * o.num_layers()));  // slots must not move once registered
  for (int64_t l = 0; l < o.num_layers(); ++l) {
    for (int64_t d = 0; d < D; ++d) {
      const int64_t in = l == 0 ? o.input_size() : D * H;
      std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
      weights_.push_back(empty({G, in}));
      register_parameter("weight_ih" + sfx, weights_.back());
      weights_.push_back(empty({G, H}));
      register_parameter("weight_hh" + sfx, weights_.back());
      weights_.push_back(o.bias() ? empty({G}) : Tensor());
      register_parameter("bias_ih" + sfx, weights_.back());
      weights_.push_back(o.bias() ? empty({G}) : Tensor());
      register_parameter("bias_hh" + sfx, weights_.back());
    }
  }
  reset_parameters();
}

void RNNBase::reset_parameters() {
  double bound = 1.0 / std::sqrt(static_cast<double>(options.hidden_size()));
  for (auto& w : weights_)
    if (w.defined()) init::uniform_(w, -bound, bound);
}

std::vector<Tensor> RNNBase::layer_weights(int64_t layer, int64_t dir) const {
  const int64_t D = options.bidirectional() ? 2 : 1;
  ATTN_CHECK(layer >= 0 && layer < options.num_layers() && dir >= 0 && dir < D, type_name(),
             ".layer_weights: no layer ", layer, " direction ", dir);
  auto it = weights_.begin() + 4 * (layer * D + dir);
  return std::vector<Tensor>(it, it + 4);
}

std::string RNNBase::extra_repr() const {
  std::string s = std::to_string(options.input_size()) + ", " + std::to_string(options.hidden_size());
  if (options.num_layers() != 1) s += ", num_layers=" + std::to_string(options.num_layers());
  if (!options.bias()) s += ", bias=False";
  if (options.batch_first()) s += ", batch_first=True";
  if (options.dropout() != 0) s += ", dropout=" + std::to_string(options.dropout());
  if (options.bidirectional()) s += ", bidirectional=True";
  return s;
}

std::tuple<Tensor, bool> RNNBase::prepare_input(const Tensor& input) const {
  ATTN_CHECK(input.defined(), type_name(), ": input is undefined");
  ATTN_CHECK(input.is_floating_point(), type_name(), ": input must be float32 or float64, got ",
             dtype_name(input.dtype()));
  ATTN_CHECK(input.dim() == 2 || input.dim() == 3, type_name(), ": input must be 3-d (",
             options.batch_first() ? "B, T, I" : "T, B, I", ") or 2-d (T, I) unbatched, got ",
             shape_str(input.shape()));
  ATTN_CHECK(input.size(-1) == options.input_size(), type_name(), ": input ", shape_str(input.shape()),
             " has size ", input.size(-1), " in its last dim but input_size is ", options.input_size());
  ATTN_CHECK(input.dtype() == weights_[0].dtype(), type_name(), ": input is ", dtype_name(input.dtype()),
             " but the weights are ", dtype_name(weights_[0].dtype()), "; convert one with to()");
  ATTN_CHECK(input.size(input.dim() == 3 && options.batch_first() ? 1 : 0) > 0, type_name(),
             ": expected a sequence length larger than 0, got input ", shape_str(input.shape()));
  if (input.dim() == 2) return {input.unsqueeze(1), true};
  return {options.batch_first() ? input.transpose(0, 1) : input, false};
}

Tensor RNNBase::prepare_state(const Tensor& h, const char* name, int64_t batch, bool unbatched, DType dtype) const {
  const int64_t D = options.bidirectional() ? 2 : 1, n = D * options.num_layers(), H = options.hidden_size();
  if (!h.defined()) return zeros({n, batch, H}, dtype);
  ATTN_CHECK(h.dtype() == dtype, type_name(), ": ", name, " is ", dtype_name(h.dtype()), " but the input is ",
             dtype_name(dtype));
  Shape want = unbatched ? Shape{n, H} : Shape{n, batch, H};
  ATTN_CHECK(h.shape() == want, type_name(), ": ", name, " must be ", shape_str(want), ", got ",
             shape_str(h.shape()));
  return unbatched ? h.unsqueeze(1) : h;
}

std::tuple<Tensor, Tensor, Tensor> RNNBase::run(const Tensor& x, const std::vector<int64_t>& batch_sizes,
                                                const Tensor& h0, const Tensor& c0) const {
  const bool packed = !batch_sizes.empty();
  const int64_t D = options.bidirectional() ? 2 : 1, Ly = options.num_layers();
  const int64_t T = packed ? static_cast<int64_t>(batch_sizes.size()) : x.size(0);
  const int64_t B = packed ? batch_sizes[0] : x.size(1);
  std::vector<int64_t> bs = packed ? batch_sizes : std::vector<int64_t>(static_cast<size_t>(T), B);
  std::vector<int64_t> offs(static_cast<size_t>(T) + 1, 0);
  for (int64_t t = 0; t < T; ++t) offs[t + 1] = offs[t] + bs[t];
  const bool lstm = mode_ == Mode::LSTM;
  std::vector<Tensor> hn, cn;
  Tensor layer_in = x;
  for (int64_t l = 0; l < Ly; ++l) {
    std::vector<Tensor> dir_out;
    for (int64_t d = 0; d < D; ++d) {
      auto w = layer_weights(l, d);
      const int64_t idx = l * D + d;
      // Every step's input projection in one GEMM: (T, B, G) or packed (N, G).
      Tensor gi_all = F::linear(layer_in, w[0], w[2]);
      auto gi_at = [&](int64_t t) {
        return packed ? gi_all.narrow(0, offs[t], bs[t]) : gi_all.select(0, t);
      };
      Tensor hi = h0.select(0, idx), ci = lstm ? c0.select(0, idx) : Tensor();
      std::vector<Tensor> outs(static_cast<size_t>(T));
      if (d == 0) {
        Tensor h = hi.narrow(0, 0, bs[0]), c = lstm ? ci.narrow(0, 0, bs[0]) : Tensor();
        std::vector<Tensor> h_done, c_done;  // final states of sequences that ended, last rows first
        for (int64_t t = 0; t < T; ++t) {
          if (bs[t] < h.size(0)) {
            h_done.push_back(h.narrow(0, bs[t], h.size(0) - bs[t]));
            h = h.narrow(0, 0, bs[t]);
            if (lstm) {
              c_done.push_back(c.narrow(0, bs[t], c.size(0) - bs[t]));
              c = c.narrow(0, 0, bs[t]);
            }
          }
          std::tie(h, c) = cell_step(mode_, gi_at(t), h, c, w[1], w[3]);
          outs[t] = h;
        }
        h_done.push_back(h);
        if (lstm) c_done.push_back(c);
        std::reverse(h_done.begin(), h_done.end());
        std::reverse(c_done.begin(), c_done.end());
        hn.push_back(h_done.size() == 1 ? h_done[0] : cat(h_done, 0));
        if (lstm) cn.push_back(c_done.size() == 1 ? c_done[0] : cat(c_done, 0));
      } else {
        Tensor h = hi.narrow(0, 0, bs[T - 1]), c = lstm ? ci.narrow(0, 0, bs[T - 1]) : Tensor();
        for (int64_t t = T - 1; t >= 0; --t) {
          if (bs[t] > h.size(0)) {  // sequences that start (from their end) at this step
            h = cat({h, hi.narrow(0, h.size(0), bs[t] - h.size(0))}, 0);
            if (lstm) c = cat({c, ci.narrow(0, c.size(0), bs[t] - c.size(0))}, 0);
          }
          std::tie(h, c) = cell_step(mode_, gi_at(t), h, c, w[1], w[3]);
          outs[t] = h;
        }
        hn.push_back(h);
        if (lstm) cn.push_back(c);
      }
      dir_out.push_back(packed ? cat(outs, 0) : stack(outs, 0));
    }
    layer_in = D == 1 ? dir_out[0] : cat(dir_out, -1);
    if (l + 1 < Ly && options.dropout() > 0 && is_training())
      layer_in = F::dropout(layer_in, options.dropout(), true, options.generator());
  }
  return {layer_in, stack(hn, 0), lstm ? stack(cn, 0) : Tensor()};
}

std::tuple<Tensor, Tensor, Tensor> RNNBase::forward_padded(const Tensor& input, const Tensor& h,
                                                           const Tensor& c) const {
  auto [x, unbatched] = prepare_input(input);
  const int64_t B = x.size(1);
  Tensor h0 = prepare_state(h, "h_0", B, unbatched, x.dtype());
  Tensor c0 = mode_ == Mode::LSTM ? prepare_state(c, "c_0", B, unbatched, x.dtype()) : Tensor();
  auto [out, hn, cn] = run(x, {}, h0, c0);
  if (unbatched) return {out.squeeze(1), hn.squeeze(1), cn.defined() ? cn.squeeze(1) : cn};
  return {options.batch_first() ? out.transpose(0, 1) : out, hn, cn};
}

std::tuple<PackedSequence, Tensor, Tensor> RNNBase::forward_packed(const PackedSequence& input, const Tensor& h,
                                                                   const Tensor& c) const {
  ATTN_CHECK(input.data.defined() && input.batch_sizes.defined(), type_name(), ": the packed input is empty");
  ATTN_CHECK(input.data.dim() == 2 && input.data.size(1) == options.input_size(), type_name(),
             ": packed data must be (N, ", options.input_size(), "), got ", shape_str(input.data.shape()));
  ATTN_CHECK(input.data.dtype() == weights_[0].dtype(), type_name(), ": input is ", dtype_name(input.data.dtype()),
             " but the weights are ", dtype_name(weights_[0].dtype()));
  std::vector<int64_t> bs = to_vec(input.batch_sizes);
  ATTN_CHECK(!bs.empty() && bs[0] > 0, type_name(), ": batch_sizes is empty");
  for (size_t t = 1; t < bs.size(); ++t)
    ATTN_CHECK(bs[t] >= 1 && bs[t] <= bs[t - 1], type_name(), ": batch_sizes must be positive and non-increasing");
  const int64_t B = bs[0];
  Tensor h0 = prepare_state(h, "h_0", B, false, input.data.dtype());
  Tensor c0 = mode_ == Mode::LSTM ? prepare_state(c, "c_0", B, false, input.data.dtype()) : Tensor();
  if (input.sorted_indices.defined()) {  // states come in the caller's batch order
    h0 = index_select(h0, 1, input.sorted_indices);
    if (c0.defined()) c0 = index_select(c0, 1, input.sorted_indices);
  }
  auto [out, hn, cn] = run(input.data, bs, h0, c0);
  if (input.unsorted_indices.defined()) {
    hn = index_select(hn, 1, input.unsorted_indices);
    if (cn.defined()) cn = index_select(cn, 1, input.unsorted_indices);
  }
  return {PackedSequence{out, input.batch_sizes, input.sorted_indices, input.unsorted_indices}, hn, cn};
}

RNN::RNN(const RNNOptions& o)
    : RNNBase("RNN", o.nonlinearity() == RNNNonlinearity::ReLU ? Mode::RNN_RELU : Mode::RNN_TANH, o) {}
LSTM::LSTM(const LSTMOptions& o) : RNNBase("LSTM", Mode::LSTM, o) {}
GRU::GRU(const GRUOptions& o) : RNNBase("GRU", Mode::GRU, o) {}

std::tuple<Tensor, Tensor> RNN::forward(const Tensor& input, const Tensor& hx) const {
  auto [out, hn, cn] = forward_padded(input, hx, {});
  return {out, hn};
}
std::tuple<PackedSequence, Tensor> RNN::forward(const PackedSequence& input, const Tensor& hx) const {
  auto [out, hn, cn] = forward_packed(input, hx, {});
  return {out, hn};
}
std::tuple<Tensor, Tensor> GRU::forward(const Tensor& input, const Tensor& hx) const {
  auto [out, hn, cn] = forward_padded(input, hx, {});
  return {out, hn};
}
std::tuple<PackedSequence, Tensor> GRU::forward(const PackedSequence& input, const Tensor& hx) const {
  auto [out, hn, cn] = forward_packed(input, hx, {});
  return {out, hn};
}

namespace {
void check_lstm_state(const char* name, const LSTM::State& hx) {
  ATTN_CHECK(std::get<0>(hx).defined() == std::get<1>(hx).defined(), name,
             ": give both h_0 and c_0 or neither");
}
}  // namespace

std::tuple<Tensor, LSTM::State> LSTM::forward(const Tensor& input, const State& hx) const {
  check_lstm_state("LSTM", hx);
  auto [out, hn, cn] = forward_padded(input, std::get<0>(hx), std::get<1>(hx));
  return {out, State{hn, cn}};
}
std::tuple<PackedSequence, LSTM::State> LSTM::forward(const PackedSequence& input, const State& hx) const {
  check_lstm_state("LSTM", hx);
  auto [out, hn, cn] = forward_packed(input, std::get<0>(hx), std::get<1>(hx));
  return {out, State{hn, cn}};
}

// ---- Cells ------------------------------------------------------------------------------
RNNCellBase::RNNCellBase(const char* name, const RNNCellOptions& o, int64_t gates) : Module(name), options(o) {
  ATTN_CHECK(o.input_size() > 0 && o.hidden_size() > 0, name, ": input_size and hidden_size must be positive, got ",
             o.input_size(), " and ", o.hidden_size());
  const int64_t G = gates * o.hidden_size();
  weight_ih = empty({G, o.input_size()});
  weight_hh = empty({G, o.hidden_size()});
  register_parameter("weight_ih", weight_ih);
  register_parameter("weight_hh", weight_hh);
  if (o.bias()) {
    bias_ih = empty({G});
    bias_hh = empty({G});
    register_parameter("bias_ih", bias_ih);
    register_parameter("bias_hh", bias_hh);
  }
  reset_parameters();
}

void RNNCellBase::reset_parameters() {
  double bound = 1.0 / std::sqrt(static_cast<double>(options.hidden_size()));
  for (Tensor* w : {&weight_ih, &weight_hh, &bias_ih, &bias_hh})
    if (w->defined()) init::uniform_(*w, -bound, bound);
}

std::string RNNCellBase::extra_repr() const {
  std::string s = std::to_string(options.input_size()) + ", " + std::to_string(options.hidden_size());
  if (!options.bias()) s += ", bias=False";
  return s;
}

std::tuple<Tensor, bool> RNNCellBase::check_input(const Tensor& input) const {
  ATTN_CHECK(input.defined(), type_name(), ": input is undefined");
  ATTN_CHECK(input.dim() == 1 || input.dim() == 2, type_name(), ": input must be (B, ", options.input_size(),
             ") or (", options.input_size(), "), got ", shape_str(input.shape()));
  ATTN_CHECK(input.size(-1) == options.input_size(), type_name(), ": input ", shape_str(input.shape()),
             " has size ", input.size(-1), " in its last dim but input_size is ", options.input_size());
  ATTN_CHECK(input.dtype() == weight_ih.dtype(), type_name(), ": input is ", dtype_name(input.dtype()),
             " but the weights are ", dtype_name(weight_ih.dtype()));
  return input.dim() == 1 ? std::tuple<Tensor, bool>{input.unsqueeze(0), true}
                          : std::tuple<Tensor, bool>{input, false};
}

Tensor RNNCellBase::check_state(const Tensor& h, const char* name, const Tensor& x, bool unbatched) const {
  const int64_t H = options.hidden_size();
  if (!h.defined()) return zeros({x.size(0), H}, x.dtype());
  Shape want = unbatched ? Shape{H} : Shape{x.size(0), H};
  ATTN_CHECK(h.shape() == want, type_name(), ": ", name, " must be ", shape_str(want), ", got ",
             shape_str(h.shape()));
  ATTN_CHECK(h.dtype() == x.dtype(), type_name(), ": ", name, " is ", dtype_name(h.dtype()), " but the input is ",
             dtype_name(x.dtype()));
  return unbatched ? h.unsqueeze(0) : h;
}

RNNCell::RNNCell(const RNNCellOptions& o) : RNNCellBase("RNNCell", o, 1) {}
LSTMCell::LSTMCell(const LSTMCellOptions& o) : RNNCellBase("LSTMCell", o, 4) {}
GRUCell::GRUCell(const GRUCellOptions& o) : RNNCellBase("GRUCell", o, 3) {}

Tensor RNNCell::forward(const Tensor& input, const Tensor& hx) const {
  auto [x, unbatched] = check_input(input);
  Tensor h = check_state(hx, "hx", x, unbatched);
  auto mode = options.nonlinearity() == RNNNonlinearity::ReLU ? RNNBase::Mode::RNN_RELU : RNNBase::Mode::RNN_TANH;
  Tensor h2 = std::get<0>(cell_step(mode, F::linear(x, weight_ih, bias_ih), h, Tensor(), weight_hh, bias_hh));
  return unbatched ? h2.squeeze(0) : h2;
}

std::tuple<Tensor, Tensor> LSTMCell::forward(const Tensor& input, const std::tuple<Tensor, Tensor>& hx) const {
  check_lstm_state("LSTMCell", hx);
  auto [x, unbatched] = check_input(input);
  Tensor h = check_state(std::get<0>(hx), "h", x, unbatched), c = check_state(std::get<1>(hx), "c", x, unbatched);
  auto [h2, c2] = cell_step(RNNBase::Mode::LSTM, F::linear(x, weight_ih, bias_ih), h, c, weight_hh, bias_hh);
  if (unbatched) return {h2.squeeze(0), c2.squeeze(0)};
  return {h2, c2};
}

Tensor GRUCell::forward(const Tensor& input, const Tensor& hx) const {
  auto [x, unbatched] = check_input(input);
  Tensor h = check_state(hx, "hx", x, unbatched);
  Tensor h2 = std::get<0>(cell_step(RNNBase::Mode::GRU, F::linear(x, weight_ih, bias_ih), h, Tensor(), weight_hh, bias_hh));
  return unbatched ? h2.squeeze(0) : h2;
}

}  // namespace attn::nn
