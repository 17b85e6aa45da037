// Batching: shuffled index batches and the padding collate
// (torch.nn.utils.rnn.pad_sequence).
#pragma once

#include <cstdint>
#include <vector>

#include "attn/generator.h"
#include "attn/tensor.h"

namespace attn::data {

// A random permutation of 0 .. n-1 drawn from gen (the default generator when null).
std::vector<int64_t> randperm(int64_t n, Generator* gen = nullptr);

// The batches of an epoch over n examples: consecutive indices of at most
// batch_size each, or of a random permutation with shuffle; drop_last drops
// a short last batch.
std::vector<std::vector<int64_t>> batch_indices(int64_t n, int64_t batch_size, bool shuffle, Generator* gen = nullptr,
                                                bool drop_last = false);

// Pads sequences (L_i, *) to the longest: (L, B, *), or (B, L, *) with
// batch_first. Differentiable.
Tensor pad_sequence(const std::vector<Tensor>& sequences, bool batch_first = false, double padding_value = 0.0);

}  // namespace attn::data
