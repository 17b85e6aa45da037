// Tensor basics: storage, metadata, element access, printing. The view and
// math methods are defined in src/ops (they record autograd).
#include "attn/tensor.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <limits>
#include <map>
#include <mutex>
#include <ostream>
#include <sstream>
#include <vector>

namespace attn {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ")";
  return os.str();
}

int64_t shape_numel(const Shape& s, const char* op) {
  int64_t n = 1;
  for (int64_t d : s) {
    ATTN_CHECK(d >= 0, op, ": sizes must be non-negative, got ", shape_str(s));
    ATTN_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / d, op,
               ": the number of elements of ", shape_str(s), " overflows int64");
    n *= d;
  }
  return n;
}

int64_t wrap_dim(int64_t d, int64_t ndim, const char* op) {
  int64_t n = ndim == 0 ? 1 : ndim;  // a 0-d tensor accepts dim 0 and -1, as PyTorch
  ATTN_CHECK(d >= -n && d < n, op, ": dim ", d, " is out of range for a tensor with ", ndim,
             " dims (expected in [", -n, ", ", n - 1, "])");
  return d < 0 ? d + n : d;
}

namespace {

// A cache of large freed blocks. Blocks of 1 MiB and more are rounded up to
// one of 8 size classes per power of two (at most 12.5% more) and, when
// freed, kept for the next request of their class instead of going back to
// the system: every fresh large block is mapped, faulted in and zeroed page
// by page by the kernel, which cost a BERT-base forward 13% of its time. The
// cache holds at most 512 MiB (ATTN_MEMORY_CACHE_MB changes it; the largest
// blocks leave first). Swin-T at batch 8 allocates 38 MB blocks in its first
// stage: with 256 MiB they left the cache every forward, and 522 ms became
// 460 ms at 512 MiB (peak RSS 497 -> 549 MB); 1 GiB gained nothing more (a
// GPT-2 forward then held 400 MB more). The cache is off in sanitizer builds
// (so every allocation stays visible to them) and when ATTN_NO_MEMORY_CACHE
// is set.
class BlockCache {
 public:
  static constexpr size_t kMin = size_t{1} << 20, kDefaultCap = size_t{512} << 20;
  static BlockCache& get() {
    static BlockCache* c = new BlockCache();  // never destroyed: storages may outlive static destruction
    return *c;
  }
  bool enabled() const { return enabled_; }
  static size_t size_class(size_t n) {
    size_t p = 1;
    while (p * 2 <= n) p *= 2;  // the largest power of two <= n
    const size_t step = p / 8;
    return (n + step - 1) / step * step;
  }
  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    held_ -= bytes;
    return p;
  }
  void give(void* p, size_t bytes) {
    std::vector<void*> release;
    {
      std::lock_guard<std::mutex> lock(mu_);
      free_[bytes].push_back(p);
      held_ += bytes;
      while (held_ > cap_) {
        auto last = std::prev(free_.end());
        if (last->second.empty()) {
          free_.erase(last);
          continue;
        }
        release.push_back(last->second.back());
        last->second.pop_back();
        held_ -= last->first;
      }
    }
    for (void* q : release) std::free(q);
  }

 private:
  BlockCache() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    enabled_ = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
    enabled_ = false;
#endif
#endif
    if (std::getenv("ATTN_NO_MEMORY_CACHE")) enabled_ = false;
    if (const char* mb = std::getenv("ATTN_MEMORY_CACHE_MB")) {
      char* end = nullptr;
      const long long v = std::strtoll(mb, &end, 10);
      if (end != mb && *end == '\0' && v >= 0 && v <= (1LL << 30))
        cap_ = static_cast<size_t>(v) << 20;
      else
        std::fprintf(stderr, "attn: ATTN_MEMORY_CACHE_MB=%s is not a number of MiB; the cache holds 512\n", mb);
    }
  }
  bool enabled_ = true;
  size_t cap_ = kDefaultCap;
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  size_t held_ = 0;
};

}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, bool zero) {
  constexpr size_t kAlign = 64;
  size_t rounded = (nbytes + kAlign - 1) / kAlign * kAlign;
  if (rounded == 0) rounded = kAlign;
  BlockCache& cache = BlockCache::get();
  const bool cached = cache.enabled() && rounded >= BlockCache::kMin;
  if (cached) rounded = BlockCache::size_class(rounded);
  void* p = cached ? cache.take(rounded) : nullptr;
  if (!p) p = std::aligned_alloc(kAlign, rounded);
  if (!p) throw Error(detail::str("allocate: out of memory allocating ", nbytes, " bytes"));
  if (zero) std::memset(p, 0, rounded);
  auto s = std::make_shared<Storage>();
  s->data = p;
  s->nbytes = nbytes;
  if (cached)
    s->owner = std::shared_ptr<void>(p, [rounded](void* q) { BlockCache::get().give(q, rounded); });
  else
    s->owner = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  return s;
}

static Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

Tensor Tensor::make(const Shape& shape, DType dtype, bool zero) {
  int64_t n = shape_numel(shape, "empty");
  ATTN_CHECK(static_cast<uint64_t>(n) <= std::numeric_limits<uint64_t>::max() / 16, "empty: ",
             shape_str(shape), " is too large");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = Storage::allocate(static_cast<size_t>(n) * attn::itemsize(dtype), zero);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

TensorImpl& Tensor::impl() const {
  if (!impl_) throw Error("Tensor: the tensor is undefined (default-constructed)");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape()) n *= d;
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t acc = 1;
  const auto& sh = shape();
  const auto& st = strides();
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (sh[i] == 1) continue;
    if (sh[i] == 0) return true;
    if (st[i] != acc) return false;
    acc *= sh[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  auto& im = impl();
  return static_cast<char*>(im.storage->data) + im.offset * static_cast<int64_t>(itemsize());
}

template <class T>
T Tensor::item() const {
  ATTN_CHECK(numel() == 1, "item: a tensor with ", numel(), " elements (shape ", shape_str(shape()),
             ") cannot be converted to a scalar; expected exactly 1 element");
  void* p = raw_data();
  switch (dtype()) {
    case DType::Float32: return static_cast<T>(*static_cast<float*>(p));
    case DType::Float64: return static_cast<T>(*static_cast<double*>(p));
    case DType::Int64: return static_cast<T>(*static_cast<int64_t*>(p));
    case DType::Bool: return static_cast<T>(*static_cast<bool*>(p));
    case DType::BFloat16: return static_cast<T>(static_cast<float>(*static_cast<BFloat16*>(p)));
  }
  return T{};
}
template float Tensor::item<float>() const;
template double Tensor::item<double>() const;
template int64_t Tensor::item<int64_t>() const;
template bool Tensor::item<bool>() const;
template int Tensor::item<int>() const;

Tensor Tensor::grad() const {
  auto& g = impl().grad;
  return g ? Tensor(g) : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  if (!grad.defined()) {
    impl().grad.reset();
    return;
  }
  ATTN_CHECK(grad.shape() == shape() && grad.dtype() == dtype(), "set_grad: the gradient is ",
             dtype_name(grad.dtype()), " ", shape_str(grad.shape()), " but the tensor is ",
             dtype_name(dtype()), " ", shape_str(shape()));
  impl().grad = grad.impl_ptr();
}

Tensor Tensor::detach() const {
  auto im = std::make_shared<TensorImpl>();
  const auto& src = impl();
  im->storage = src.storage;
  im->offset = src.offset;
  im->shape = src.shape;
  im->strides = src.strides;
  im->dtype = src.dtype;
  return Tensor(std::move(im));
}

// ---- printing --------------------------------------------------------------

static double element_as_double(const Tensor& t, int64_t offset) {
  const char* base = static_cast<const char*>(t.impl().storage->data);
  int64_t off = (t.storage_offset() + offset);
  switch (t.dtype()) {
    case DType::Float32: return reinterpret_cast<const float*>(base)[off];
    case DType::Float64: return reinterpret_cast<const double*>(base)[off];
    case DType::Int64: return static_cast<double>(reinterpret_cast<const int64_t*>(base)[off]);
    case DType::Bool: return reinterpret_cast<const bool*>(base)[off] ? 1.0 : 0.0;
    case DType::BFloat16: return static_cast<float>(reinterpret_cast<const BFloat16*>(base)[off]);
  }
  return 0;
}

static void print_rec(std::ostream& os, const Tensor& t, int64_t dim, int64_t offset, int indent) {
  const int64_t n = t.shape()[dim];
  const int64_t edge = 3;  // elements shown at each end of a long dim
  const bool summarise = n > 2 * edge + 1 && t.numel() > 1000;
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (summarise && i == edge) {
      os << "...";
      i = n - edge - 1;
      os << (dim + 1 == t.dim() ? ", " : ",\n" + std::string(indent + 1, ' '));
      continue;
    }
    int64_t off = offset + i * t.strides()[dim];
    if (dim + 1 == t.dim()) {
      double v = element_as_double(t, off);
      if (t.dtype() == DType::Bool)
        os << (v != 0 ? "True" : "False");
      else if (t.dtype() == DType::Int64)
        os << static_cast<int64_t>(v);
      else
        os << std::fixed << std::setprecision(4) << v;
    } else {
      print_rec(os, t, dim + 1, off, indent + 1);
    }
    if (i + 1 < n) os << (dim + 1 == t.dim() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << "]";
}

std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  if (dim() == 0) {
    double v = element_as_double(*this, 0);
    if (dtype() == DType::Bool) os << (v != 0 ? "True" : "False");
    else if (dtype() == DType::Int64) os << static_cast<int64_t>(v);
    else os << std::fixed << std::setprecision(4) << v;
  } else if (numel() == 0) {
    os << "[], size=" << shape_str(shape());
  } else {
    print_rec(os, *this, 0, 0, 7);
  }
  if (dtype() != DType::Float32 && dtype() != DType::Int64) os << ", dtype=" << dtype_name(dtype());
  if (requires_grad()) os << (is_leaf() ? ", requires_grad=True" : ", grad_fn=<" + grad_fn_name() + ">");
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace attn
