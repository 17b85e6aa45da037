// Indexing and random-fill reference kernels. Index values are validated by
// the ops before they get here.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/loop.h"

namespace attn::kernels::cpu {

namespace {
// (outer, n, inner) sizes around dim of a shape.
void around(const Shape& s, int64_t dim, int64_t& outer, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= s[d];
  for (size_t d = dim + 1; d < s.size(); ++d) inner *= s[d];
}
}  // namespace

Tensor index_select(const Tensor& x_in, int64_t dim, const Tensor& index) {
  Tensor x = x_in.contiguous();
  Tensor idx = index.contiguous();
  Shape os = x.shape();
  const int64_t n_in = x.size(dim), n_out = idx.numel();
  os[dim] = n_out;
  Tensor out = Tensor::make(os, x.dtype());
  int64_t outer, inner;
  around(x.shape(), dim, outer, inner);
  const size_t row = static_cast<size_t>(inner) * x.itemsize();
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  const int64_t* pi = idx.data<int64_t>();
  detail::parallel_for(outer * n_out, std::max<int64_t>(1, 4096 / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / n_out, j = t % n_out;
      std::memcpy(dst + t * row, src + (o * n_in + pi[j]) * row, row);
    }
  });
  return out;
}

namespace {
// out.select(dim, index[j]) = combine(itself, src.select(dim, j)) for every j,
// in place; out contiguous. Parallel over the dims before `dim` and over
// ranges of destination slices: each task walks the whole index and takes
// the j whose destination is in its range, so a destination's slices are
// combined by one thread in index order (bit-identical at any thread count).
template <class Combine>
void index_accumulate(const char* op, const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src_in,
                      Combine combine) {
  Tensor src = src_in.contiguous();
  Tensor idx = index.contiguous();
  const int64_t n_out = out.size(dim), n_idx = idx.numel();
  int64_t outer, inner;
  around(out.shape(), dim, outer, inner);
  const int64_t* pi = idx.data<int64_t>();
  dispatch_float(out.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* po = out.data<T>();
    const T* ps = src.data<T>();
    const int64_t parts = n_idx * inner >= (1 << 15) ? std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), n_out)) : 1;
    detail::parallel_for(outer * parts, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / parts, part = t % parts;
        const int64_t lo = n_out * part / parts, hi = n_out * (part + 1) / parts;
        for (int64_t j = 0; j < n_idx; ++j) {
          if (pi[j] < lo || pi[j] >= hi) continue;
          T* d = po + (o * n_out + pi[j]) * inner;
          const T* s = ps + (o * n_idx + j) * inner;
          for (int64_t i = 0; i < inner; ++i) d[i] = combine(d[i], s[i]);
        }
      }
    });
  });
}
}  // namespace

void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  index_accumulate("index_add", out, dim, index, src, [](auto d, auto s) { return d + s; });
}

void index_amax(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  // NaN propagates, as torch
  index_accumulate("index_reduce", out, dim, index, src, [](auto d, auto s) { return s > d || s != s ? s : d; });
}

Tensor gather(const Tensor& x_in, int64_t dim, const Tensor& index) {
  Tensor x = x_in.contiguous();
  Tensor idx = index.contiguous();
  Tensor out = Tensor::make(idx.shape(), x.dtype());
  const int64_t nd = x.dim();
  const int64_t total = idx.numel();
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    const int64_t* pi = idx.data<int64_t>();
    detail::parallel_for(total, 4096, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        int64_t rem = t, off = 0;
        for (int64_t d = nd - 1; d >= 0; --d) {
          int64_t i = rem % idx.shape()[d];
          rem /= idx.shape()[d];
          off += (d == dim ? pi[t] : i) * x.strides()[d];
        }
        po[t] = px[off];
      }
    });
  });
  return out;
}

void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src_in) {
  Tensor idx = index.contiguous();
  Tensor src = src_in;
  const int64_t nd = out.dim();
  const int64_t total = idx.numel();
  dispatch_float(out.dtype(), "scatter_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* po = out.data<T>();
    const T* ps = static_cast<const T*>(src.raw_data());
    const int64_t* pi = idx.data<int64_t>();
    // Serial: indices may collide; a fixed order keeps the sum deterministic.
    for (int64_t t = 0; t < total; ++t) {
      int64_t rem = t, off = 0, soff = 0;
      for (int64_t d = nd - 1; d >= 0; --d) {
        int64_t i = rem % idx.shape()[d];
        rem /= idx.shape()[d];
        off += (d == dim ? pi[t] : i) * out.strides()[d];
        soff += i * src.strides()[d];
      }
      po[off] += ps[soff];
    }
  });
}

// ---- relative distances ----------------------------------------------------------

// Row i: keys j < i - K share distance 0, keys j > i + K distance 2K, the
// ones between map one to one; so each row is a fill, a copy and a fill.
void relative_expand(const Tensor& r, const Tensor& out, int64_t K) {
  const int64_t L = out.size(-2), S = out.size(-1), W = 2 * K + 1, rows = out.numel() / std::max<int64_t>(S, 1);
  dispatch_float(out.dtype(), "relative_expand", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = r.data<T>();
    T* dst = out.data<T>();
    detail::parallel_for(rows, 64, [&](int64_t b, int64_t e) {
      for (int64_t x = b; x < e; ++x) {
        const int64_t i = x % L;
        const T* ri = src + x * W;
        T* o = dst + x * S;
        const int64_t lo = std::clamp<int64_t>(i - K, 0, S), hi = std::clamp<int64_t>(i + K + 1, lo, S);
        std::fill(o, o + lo, ri[0]);
        for (int64_t j = lo; j < hi; ++j) o[j] = ri[j - i + K];
        std::fill(o + hi, o + S, ri[W - 1]);
      }
    });
  });
}

void relative_reduce(const Tensor& p, const Tensor& out, int64_t K) {
  const int64_t L = p.size(-2), S = p.size(-1), W = 2 * K + 1, rows = out.numel() / W;
  dispatch_float(out.dtype(), "relative_reduce", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = std::conditional_t<std::is_same_v<T, float>, double, T>;
    const T* src = p.data<T>();
    T* dst = out.data<T>();
    detail::parallel_for(rows, 64, [&](int64_t b, int64_t e) {
      for (int64_t x = b; x < e; ++x) {
        const int64_t i = x % L;
        const T* pi = src + x * S;
        T* o = dst + x * W;
        std::fill(o, o + W, T(0));
        const int64_t lo = std::clamp<int64_t>(i - K, 0, S), hi = std::clamp<int64_t>(i + K + 1, lo, S);
        Acc head = 0, tail = 0;
        for (int64_t j = 0; j < lo; ++j) head += pi[j];
        for (int64_t j = hi; j < S; ++j) tail += pi[j];
        for (int64_t j = lo; j < hi; ++j) o[j - i + K] += pi[j];
        o[0] += static_cast<T>(head);
        o[W - 1] += static_cast<T>(tail);
      }
    });
  });
}

// ---- random ----------------------------------------------------------------

namespace {
constexpr double kTwoPi = 6.28318530717958647692;
// Uniform in (0, 1] from a 32-bit word.
inline double u01(uint32_t w) { return (static_cast<double>(w) + 1.0) * (1.0 / 4294967296.0); }
// Uniform in (0, 1] with 53 bits from two words.
inline double u01_53(uint32_t hi, uint32_t lo) {
  uint64_t v = (static_cast<uint64_t>(hi) << 21) ^ (lo >> 11);
  return (static_cast<double>(v & ((uint64_t{1} << 53) - 1)) + 1.0) * (1.0 / 9007199254740992.0);
}

// Element i uses counter block first + i (each block yields 4 words).
template <class T, class F>
void fill_from_blocks(const Tensor& t, Generator& gen, F f) {
  const int64_t n = t.numel();
  const uint64_t first = gen.reserve(static_cast<uint64_t>(n));
  T* p = static_cast<T*>(t.raw_data());
  detail::parallel_for(n, 4096, [&](int64_t b, int64_t e) {
    constexpr int64_t kChunk = 256;
    alignas(32) uint32_t words[4 * kChunk];
    for (int64_t i0 = b; i0 < e; i0 += kChunk) {
      const int64_t m = std::min(kChunk, e - i0);
      gen.blocks(first + static_cast<uint64_t>(i0), m, words);
      for (int64_t i = 0; i < m; ++i)
        p[i0 + i] = f(std::array<uint32_t, 4>{words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3]});
    }
  });
}
}  // namespace

void fill_normal(const Tensor& t, double mean, double std, Generator& gen) {
  dispatch_float(t.dtype(), "randn", [&](auto tag) {
    using T = typename decltype(tag)::type;
    fill_from_blocks<T>(t, gen, [&](const std::array<uint32_t, 4>& w) {
      const double u1 = u01_53(w[0], w[1]), u2 = u01_53(w[2], w[3]);
      return static_cast<T>(mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2));
    });
  });
}

void fill_uniform(const Tensor& t, double low, double high, Generator& gen) {
  dispatch_float(t.dtype(), "rand", [&](auto tag) {
    using T = typename decltype(tag)::type;
    fill_from_blocks<T>(t, gen, [&](const std::array<uint32_t, 4>& w) {
      // [low, high): 1 - u with u in (0, 1]
      T v = static_cast<T>(low + (high - low) * (1.0 - u01_53(w[0], w[1])));
      return v >= static_cast<T>(high) ? static_cast<T>(low) : v;
    });
  });
}

void fill_randint(const Tensor& t, int64_t low, int64_t high, Generator& gen) {
  const uint64_t range = static_cast<uint64_t>(high - low);
  fill_from_blocks<int64_t>(t, gen, [&](const std::array<uint32_t, 4>& w) {
    const uint64_t v = (static_cast<uint64_t>(w[0]) << 32) | w[1];
    return low + static_cast<int64_t>(v % range);
  });
}

// Element i keeps when word i % 4 of block first + i / 4 is <= keep (as a
// uniform in (0, 1]): one Philox block serves four elements.
void fill_dropout_mask(const Tensor& t, double keep, Generator& gen, int64_t index_offset, int64_t reserve_elems) {
  const int64_t n = t.numel();
  const int64_t total = reserve_elems < 0 ? n : reserve_elems;
  const uint64_t first = gen.reserve(static_cast<uint64_t>((total + 3) / 4));
  dispatch_float(t.dtype(), "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T scale = keep > 0 ? static_cast<T>(1.0 / keep) : T(0);
    T* p = static_cast<T*>(t.raw_data());
    detail::parallel_for(n, 16384, [&](int64_t b, int64_t e) {
      b += index_offset, e += index_offset;
      constexpr int64_t kChunk = 256;  // blocks per draw
      alignas(32) uint32_t words[4 * kChunk];
      for (int64_t blk = b / 4; blk * 4 < e; blk += kChunk) {
        const int64_t m = std::min(kChunk, (e + 3) / 4 - blk);
        gen.blocks(first + static_cast<uint64_t>(blk), m, words);
        const int64_t lo = std::max(b, 4 * blk), hi = std::min(e, 4 * (blk + m));
        for (int64_t i = lo; i < hi; ++i) p[i - index_offset] = u01(words[i - 4 * blk]) <= keep ? scale : T(0);
      }
    });
  });
}

}  // namespace attn::kernels::cpu
