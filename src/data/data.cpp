// Batching and the padding collate (see include/attn/data.h).
#include "attn/data.h"

#include <algorithm>

#include "attn/error.h"
#include "attn/ops.h"

namespace attn::data {

std::vector<int64_t> randperm(int64_t n, Generator* gen) {
  ATTN_CHECK(n >= 0, "randperm: n must be >= 0, got ", n);
  Generator& g = gen ? *gen : default_generator();
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = i;
  if (n < 2) return out;
  // Fisher-Yates; swap i uses counter block first + i (64 bits, reduced mod i + 1).
  const uint64_t first = g.reserve(static_cast<uint64_t>(n));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto w = g.block(first + static_cast<uint64_t>(i));
    const uint64_t r = (static_cast<uint64_t>(w[0]) << 32) | w[1];
    std::swap(out[i], out[static_cast<int64_t>(r % static_cast<uint64_t>(i + 1))]);
  }
  return out;
}

std::vector<std::vector<int64_t>> batch_indices(int64_t n, int64_t batch_size, bool shuffle, Generator* gen,
                                                bool drop_last) {
  ATTN_CHECK(n >= 0, "batch_indices: n must be >= 0, got ", n);
  ATTN_CHECK(batch_size > 0, "batch_indices: batch_size must be positive, got ", batch_size);
  std::vector<int64_t> order = shuffle ? randperm(n, gen) : randperm(0, gen);
  if (!shuffle)
    for (int64_t i = 0; i < n; ++i) order.push_back(i);
  std::vector<std::vector<int64_t>> out;
  for (int64_t s = 0; s < n; s += batch_size) {
    const int64_t e = std::min(n, s + batch_size);
    if (drop_last && e - s < batch_size) break;
    out.emplace_back(order.begin() + s, order.begin() + e);
  }
  return out;
}

Tensor pad_sequence(const std::vector<Tensor>& seqs, bool batch_first, double padding_value) {
  ATTN_CHECK(!seqs.empty(), "pad_sequence: no sequences given");
  int64_t longest = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const Tensor& s = seqs[i];
    ATTN_CHECK(s.defined() && s.dim() >= 1, "pad_sequence: sequence ", i, " must be (L, *), got ",
               s.defined() ? shape_str(s.shape()) : std::string("undefined"));
    ATTN_CHECK(s.dtype() == seqs[0].dtype(), "pad_sequence: sequence ", i, " is ", dtype_name(s.dtype()),
               " but sequence 0 is ", dtype_name(seqs[0].dtype()));
    ATTN_CHECK(Shape(s.shape().begin() + 1, s.shape().end()) == Shape(seqs[0].shape().begin() + 1, seqs[0].shape().end()),
               "pad_sequence: sequence ", i, " is ", shape_str(s.shape()), " but sequence 0 is ",
               shape_str(seqs[0].shape()), "; only the first dim may differ");
    longest = std::max(longest, s.size(0));
  }
  std::vector<Tensor> padded;
  for (const Tensor& s : seqs) {
    // pad's list runs from the last dim: (last_lo, last_hi, ..., first_lo, first_hi)
    std::vector<int64_t> pads(static_cast<size_t>(2 * s.dim()), 0);
    pads.back() = longest - s.size(0);
    padded.push_back(pads.back() == 0 ? s : pad(s, pads, padding_value));
  }
  return stack(padded, batch_first ? 0 : 1);
}

}  // namespace attn::data
