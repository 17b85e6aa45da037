// attn::Generator: a counter-based (Philox4x32-10) random source. Element i of
// a draw depends only on (seed, offset, i), so results are identical whatever
// the number of threads. Each draw advances the offset past what it used.
#pragma once

#include <array>
#include <cstdint>

namespace attn {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) : seed_(seed) {}
  void manual_seed(uint64_t seed) { seed_ = seed; offset_ = 0; }
  uint64_t seed() const { return seed_; }
  // Position in the counter stream (in 128-bit blocks); save it with the seed
  // to resume a stream exactly.
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }
  // Reserves `blocks` 128-bit counter blocks and returns the first one.
  uint64_t reserve(uint64_t blocks) {
    uint64_t first = offset_;
    offset_ += blocks;
    return first;
  }
  // Four 32-bit random words of counter block `counter` (stateless).
  std::array<uint32_t, 4> block(uint64_t counter, uint32_t stream = 0) const;
  // Blocks first .. first + n - 1 at once (SIMD where available): block i's
  // words at words[4 * i .. 4 * i + 3], equal to block(first + i, stream).
  void blocks(uint64_t first, int64_t n, uint32_t* words, uint32_t stream = 0) const;

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The process-wide generator used when an op is given none.
Generator& default_generator();
// Seeds the default generator.
void manual_seed(uint64_t seed);

// Random draws of a share of a batch, as the whole batch would draw them.
// While a BatchShardGuard(begin, rows, total) lives on this thread, a dropout
// draw (dropout, and the dropout of scaled_dot_product_attention) over a
// tensor whose dim 0 has `rows` entries reserves the counters of the same
// tensor with `total` rows and takes those of rows [begin, begin + rows): the
// ranks of a data-parallel run, each holding its rows of the global batch,
// together draw exactly the masks of one process running the whole batch,
// and every generator advances as it would there. Tensors whose dim 0 is
// not `rows` draw as usual.
struct BatchShard {
  int64_t begin = 0, rows = 0, total = 0;
  bool active() const { return total > 0; }
};
const BatchShard& batch_shard();
class BatchShardGuard {
 public:
  BatchShardGuard(int64_t begin, int64_t rows, int64_t total);
  ~BatchShardGuard();
  BatchShardGuard(const BatchShardGuard&) = delete;
  BatchShardGuard& operator=(const BatchShardGuard&) = delete;

 private:
  BatchShard prev_;
};

// Philox4x32-10 of (counter words, key words).
std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key);

}  // namespace attn
