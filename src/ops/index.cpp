// Joins, splits, indexing, padding and triangles, with their backward.
#include <cmath>

#include "ops/internal.h"

namespace attn {

using namespace ops;

Tensor cat(const std::vector<Tensor>& ts, int64_t dim) {
  ATTN_CHECK(!ts.empty(), "cat: expects a non-empty list of tensors");
  for (size_t i = 0; i < ts.size(); ++i) {
    ATTN_CHECK(ts[i].defined(), "cat: tensor ", i, " is undefined");
    check_same_dtype("cat", "tensor 0", ts[0], ("tensor " + std::to_string(i)).c_str(), ts[i]);
  }
  const Tensor& t0 = ts[0];
  ATTN_CHECK(t0.dim() > 0, "cat: zero-dimensional tensors cannot be concatenated");
  const int64_t d = wrap_dim(dim, t0.dim(), "cat");
  Shape out_shape = t0.shape();
  out_shape[d] = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    ATTN_CHECK(ts[i].dim() == t0.dim(), "cat: tensor 0 has ", t0.dim(), " dims but tensor ", i, " has ", ts[i].dim());
    for (int64_t j = 0; j < t0.dim(); ++j)
      ATTN_CHECK(j == d || ts[i].size(j) == t0.size(j), "cat: tensor ", i, " is ", shape_str(ts[i].shape()),
                 " but tensor 0 is ", shape_str(t0.shape()), ": sizes must match except in dim ", d);
    out_shape[d] += ts[i].size(d);
  }
  Tensor out = Tensor::make(out_shape, t0.dtype());
  std::vector<int64_t> offsets;
  int64_t off = 0;
  for (const Tensor& t : ts) {
    offsets.push_back(off);
    NoGradGuard ng;
    k::copy(t, out.narrow(d, off, t.size(d)));
    off += t.size(d);
  }
  if (should_record(ts)) {
    std::vector<int64_t> sizes;
    for (const Tensor& t : ts) sizes.push_back(t.size(d));
    record("CatBackward", ts, out, [d, offsets, sizes](const Tensor& g, const std::vector<bool>& n) {
      std::vector<Tensor> gs(sizes.size());
      for (size_t i = 0; i < sizes.size(); ++i)
        if (n[i]) gs[i] = g.narrow(d, offsets[i], sizes[i]);
      return gs;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& ts, int64_t dim) {
  ATTN_CHECK(!ts.empty(), "stack: expects a non-empty list of tensors");
  const int64_t d = wrap_dim(dim, ts[0].defined() ? ts[0].dim() + 1 : 1, "stack");
  std::vector<Tensor> us;
  for (size_t i = 0; i < ts.size(); ++i) {
    ATTN_CHECK(ts[i].defined(), "stack: tensor ", i, " is undefined");
    ATTN_CHECK(ts[i].shape() == ts[0].shape(), "stack: tensor ", i, " is ", shape_str(ts[i].shape()),
               " but tensor 0 is ", shape_str(ts[0].shape()), ": all must have the same shape");
    us.push_back(ts[i].unsqueeze(d));
  }
  return cat(us, d);
}

std::vector<Tensor> split(const Tensor& a, int64_t split_size, int64_t dim) {
  check_defined("split", "input", a);
  ATTN_CHECK(a.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t d = wrap_dim(dim, a.dim(), "split");
  const int64_t n = a.size(d);
  ATTN_CHECK(split_size > 0 || (split_size == 0 && n == 0), "split: split_size must be positive, got ", split_size);
  std::vector<Tensor> out;
  if (n == 0) return {a};
  for (int64_t s = 0; s < n; s += split_size) out.push_back(a.narrow(d, s, std::min(split_size, n - s)));
  return out;
}

std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim) {
  check_defined("split", "input", a);
  ATTN_CHECK(a.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t d = wrap_dim(dim, a.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    ATTN_CHECK(s >= 0, "split: sizes must be non-negative, got ", shape_str(sizes));
    total += s;
  }
  ATTN_CHECK(total == a.size(d), "split: sizes ", shape_str(sizes), " sum to ", total, " but dim ", d, " has size ",
             a.size(d));
  std::vector<Tensor> out;
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(a.narrow(d, off, s));
    off += s;
  }
  return out;
}

std::vector<Tensor> chunk(const Tensor& a, int64_t chunks, int64_t dim) {
  check_defined("chunk", "input", a);
  ATTN_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  ATTN_CHECK(a.dim() > 0, "chunk: cannot chunk a 0-d tensor");
  const int64_t n = a.size(wrap_dim(dim, a.dim(), "chunk"));
  return split(a, std::max<int64_t>(1, (n + chunks - 1) / chunks), dim);
}

namespace {
void check_index_range(const char* op, const Tensor& index, int64_t n, int64_t dim) {
  Tensor ic = index.contiguous();
  const int64_t* p = ic.data<int64_t>();
  for (int64_t i = 0; i < ic.numel(); ++i)
    ATTN_CHECK(p[i] >= 0 && p[i] < n, op, ": index ", p[i], " is out of range for dim ", dim, " of size ", n);
}
}  // namespace

Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) {
  check_defined("index_select", "input", a);
  check_dtype("index_select", "index", index, kInt64);
  check_dim("index_select", "index", index, 0, 1);
  const int64_t d = wrap_dim(dim, a.dim(), "index_select");
  Tensor x = a.dim() == 0 ? a.reshape({1}) : a;
  check_index_range("index_select", index, x.size(d), d);
  Tensor idx = index.reshape({-1});
  Tensor out = k::index_select(x, d, idx);
  if (a.dim() == 0) out = out.reshape({});
  if (is_floating(a.dtype()) && should_record({&a})) {
    Shape in = a.shape();
    record("IndexSelectBackward", {a}, out, [in, d, idx](const Tensor& g, const std::vector<bool>&) {
      Tensor gx = zeros(in.empty() ? Shape{1} : in, g.dtype());
      Tensor gs = g.dim() == 0 ? g.reshape({1}) : g;
      k::index_add(gx, d, idx, gs);
      return std::vector<Tensor>{gx.reshape(in)};
    });
  }
  return out;
}

namespace {
// Checks shared by index_add and index_reduce; returns the wrapped dim.
int64_t check_index_into(const char* op, const Tensor& a, int64_t dim, const Tensor& index, const Tensor& src) {
  check_float(op, "input", a);
  check_float(op, "source", src);
  check_same_dtype(op, "input", a, "source", src);
  check_dtype(op, "index", index, kInt64);
  check_dim(op, "index", index, 1, 1);
  ATTN_CHECK(a.dim() >= 1, op, ": input must have at least 1 dim");
  const int64_t d = wrap_dim(dim, a.dim(), op);
  Shape want = a.shape();
  want[d] = index.size(0);
  ATTN_CHECK(src.shape() == want, op, ": source must be ", shape_str(want), " (the input's shape with the index's ",
             index.size(0), " in dim ", d, "), got ", shape_str(src.shape()));
  check_index_range(op, index, a.size(d), d);
  return d;
}
}  // namespace

Tensor index_add(const Tensor& a, int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t d = check_index_into("index_add", a, dim, index, src);
  Tensor out = a.detach().clone();
  k::index_add(out, d, index, src.detach());
  if (should_record({&a, &src})) {
    record("IndexAddBackward", {a, src}, out, [d, index](const Tensor& g, const std::vector<bool>& n) {
      return std::vector<Tensor>{n[0] ? g : Tensor(), n[1] ? index_select(g, d, index) : Tensor()};
    });
  }
  return out;
}

Tensor index_reduce(const Tensor& a, int64_t dim, const Tensor& index, const Tensor& src, const std::string& reduce,
                    bool include_self) {
  const int64_t d = check_index_into("index_reduce", a, dim, index, src);
  ATTN_CHECK(reduce == "amax", "index_reduce: reduce must be \"amax\" (the only one attn has), got \"", reduce,
             "\"");
  ATTN_CHECK(!should_record({&a, &src}), "index_reduce: not differentiable; detach the input and source");
  Tensor out = include_self ? a.detach().clone() : a.detach().clone().fill_(-INFINITY);
  k::index_amax(out, d, index, src);
  if (!include_self) {  // slices nothing was indexed to keep their value, as torch
    Tensor one = ones({index.size(0)}, kFloat64);
    Tensor cnt = index_add(zeros({a.size(d)}, kFloat64), 0, index, one);
    Shape bs(static_cast<size_t>(a.dim()), 1);
    bs[d] = a.size(d);
    out = where((cnt > 0.0).reshape(bs), out, a.detach());
  }
  return out;
}

namespace {
void check_gather_like(const char* op, const Tensor& a, int64_t d, const Tensor& index, const Tensor* src) {
  check_dtype(op, "index", index, kInt64);
  ATTN_CHECK(index.dim() == a.dim(), op, ": index has ", index.dim(), " dims but the input has ", a.dim(),
             "; they must match");
  for (int64_t i = 0; i < a.dim(); ++i) {
    ATTN_CHECK(i == d || index.size(i) <= a.size(i), op, ": index ", shape_str(index.shape()),
               " is larger than the input ", shape_str(a.shape()), " in dim ", i);
    if (src) {
      ATTN_CHECK(index.size(i) <= src->size(i), op, ": index ", shape_str(index.shape()), " is larger than src ",
                 shape_str(src->shape()), " in dim ", i);
    }
  }
  check_index_range(op, index, a.dim() == 0 ? 1 : a.size(d), d);
}
}  // namespace

Tensor gather(const Tensor& a, int64_t dim, const Tensor& index) {
  check_defined("gather", "input", a);
  const int64_t d = wrap_dim(dim, a.dim(), "gather");
  check_gather_like("gather", a, d, index, nullptr);
  if (a.dim() == 0) return gather(a.reshape({1}), 0, index.reshape({1})).reshape({});
  Tensor out = k::gather(a, d, index);
  if (is_floating(a.dtype()) && should_record({&a})) {
    Shape in = a.shape();
    Tensor idx = index.detach();
    record("GatherBackward", {a}, out, [in, d, idx](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{scatter_add(zeros(in, g.dtype()), d, idx, g)};
    });
  }
  return out;
}

Tensor scatter_add(const Tensor& a, int64_t dim, const Tensor& index, const Tensor& src) {
  check_float("scatter_add", "input", a);
  check_float("scatter_add", "src", src);
  check_same_dtype("scatter_add", "input", a, "src", src);
  ATTN_CHECK(src.dim() == a.dim(), "scatter_add: src has ", src.dim(), " dims but the input has ", a.dim());
  ATTN_CHECK(a.dim() > 0, "scatter_add: the input must have at least 1 dim");
  const int64_t d = wrap_dim(dim, a.dim(), "scatter_add");
  check_gather_like("scatter_add", a, d, index, &src);
  Tensor out = a.detach().clone();
  k::scatter_add(out, d, index, src);
  if (should_record({&a, &src})) {
    Tensor idx = index.detach();
    Shape ss = src.shape();
    record("ScatterAddBackward", {a, src}, out, [idx, d, ss](const Tensor& g, const std::vector<bool>& n) {
      Tensor gs;
      if (n[1]) {
        Tensor part = gather(g, d, idx);
        if (part.shape() == ss) {
          gs = part;
        } else {
          gs = zeros(ss, g.dtype());
          Tensor region = gs;
          for (int64_t i = 0; i < static_cast<int64_t>(ss.size()); ++i) region = region.narrow(i, 0, idx.size(i));
          k::copy(part, region);
        }
      }
      return std::vector<Tensor>{n[0] ? g : Tensor(), gs};
    });
  }
  return out;
}

Tensor pad(const Tensor& a, const std::vector<int64_t>& pads, double value) {
  check_defined("pad", "input", a);
  ATTN_CHECK(pads.size() % 2 == 0, "pad: the padding list must have an even length, got ", pads.size());
  ATTN_CHECK(static_cast<int64_t>(pads.size()) / 2 <= a.dim(), "pad: ", pads.size() / 2,
             " dims of padding for a tensor with ", a.dim(), " dims");
  Shape out_shape = a.shape();
  const int64_t np = static_cast<int64_t>(pads.size()) / 2;
  for (int64_t i = 0; i < np; ++i) {
    const int64_t d = a.dim() - 1 - i;
    out_shape[d] += pads[2 * i] + pads[2 * i + 1];
    ATTN_CHECK(out_shape[d] >= 0, "pad: padding (", pads[2 * i], ", ", pads[2 * i + 1], ") makes dim ", d,
               " of size ", a.size(d), " negative");
  }
  Tensor out = full(out_shape, value, a.dtype());
  Tensor src = a.detach(), dst = out;
  for (int64_t i = 0; i < np; ++i) {
    const int64_t d = a.dim() - 1 - i, l = pads[2 * i], r = pads[2 * i + 1];
    const int64_t in_start = std::max<int64_t>(-l, 0);
    const int64_t len = std::max<int64_t>(0, a.size(d) - in_start - std::max<int64_t>(-r, 0));
    src = src.narrow(d, in_start, len);
    dst = dst.narrow(d, std::max<int64_t>(l, 0), len);
  }
  k::copy(src, dst);
  if (should_record({&a})) {
    Shape in = a.shape();
    record("PadBackward", {a}, out, [in, pads, np](const Tensor& g, const std::vector<bool>&) {
      Tensor gx = zeros(in, g.dtype()), from = g, to = gx;
      for (int64_t i = 0; i < np; ++i) {
        const int64_t d = static_cast<int64_t>(in.size()) - 1 - i, l = pads[2 * i], r = pads[2 * i + 1];
        const int64_t in_start = std::max<int64_t>(-l, 0);
        const int64_t len = std::max<int64_t>(0, in[d] - in_start - std::max<int64_t>(-r, 0));
        to = to.narrow(d, in_start, len);
        from = from.narrow(d, std::max<int64_t>(l, 0), len);
      }
      k::copy(from, to);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

namespace {
Tensor tri_op(const Tensor& a, int64_t diagonal, bool upper) {
  const char* name = upper ? "triu" : "tril";
  check_defined(name, "input", a);
  ATTN_CHECK(a.dim() >= 2, name, ": the input must have at least 2 dims, got ", shape_str(a.shape()));
  Tensor out = k::tri(a, diagonal, upper);
  if (is_floating(a.dtype()) && should_record({&a})) {
    record(upper ? "TriuBackward" : "TrilBackward", {a}, out, [diagonal, upper](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{k::tri(g, diagonal, upper)};
    });
  }
  return out;
}
}  // namespace

Tensor tril(const Tensor& a, int64_t diagonal) { return tri_op(a, diagonal, false); }
Tensor triu(const Tensor& a, int64_t diagonal) { return tri_op(a, diagonal, true); }

}  // namespace attn
