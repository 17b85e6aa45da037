// IDX files (MNIST's format) through zlib, and Fashion-MNIST from them.
#include <zlib.h>

#include <array>
#include <filesystem>
#include <memory>

#include "attn/data.h"
#include "attn/error.h"
#include "attn/ops.h"

namespace attn::data {

namespace {

constexpr uint64_t kMaxBytes = uint64_t{1} << 31;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

// Reads exactly n bytes; false when the file ends first.
bool read_exact(gzFile f, void* out, size_t n, const std::string& path) {
  auto* p = static_cast<unsigned char*>(out);
  while (n > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n, 1u << 30));
    const int got = gzread(f, p, chunk);
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      throw Error(detail::str("read_idx: ", path, ": ", msg ? msg : "read error", " (a damaged gzip stream?)"));
    }
    if (got == 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  ATTN_CHECK(f != nullptr, "read_idx: cannot open ", path);
  std::array<unsigned char, 4> magic{};
  ATTN_CHECK(read_exact(f.get(), magic.data(), 4, path), "read_idx: ", path,
             " is shorter than an IDX header (4 magic bytes)");
  ATTN_CHECK(magic[0] == 0 && magic[1] == 0, "read_idx: ", path, " is not an IDX file (its first bytes are ",
             int(magic[0]), ", ", int(magic[1]), ", not 0, 0)");
  ATTN_CHECK(magic[2] == 0x08, "read_idx: ", path, " holds IDX type 0x", std::hex, int(magic[2]),
             "; only unsigned bytes (0x08) are read");
  const int ndim = magic[3];
  ATTN_CHECK(ndim >= 1 && ndim <= 4, "read_idx: ", path, " declares ", ndim, " dimensions; expected 1 to 4");
  IdxArray out;
  uint64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    std::array<unsigned char, 4> b{};
    ATTN_CHECK(read_exact(f.get(), b.data(), 4, path), "read_idx: ", path, " ends inside its header (size ", d,
               " of ", ndim, ")");
    const uint64_t n = (uint64_t{b[0]} << 24) | (uint64_t{b[1]} << 16) | (uint64_t{b[2]} << 8) | b[3];
    total *= n;
    ATTN_CHECK(total <= kMaxBytes, "read_idx: ", path, ": its sizes ask for more than 2^31 bytes");
    out.shape.push_back(static_cast<int64_t>(n));
  }
  out.data.resize(static_cast<size_t>(total));
  ATTN_CHECK(read_exact(f.get(), out.data.data(), out.data.size(), path), "read_idx: ", path,
             " is truncated: its header ", shape_str(out.shape), " needs ", total, " bytes of data");
  unsigned char extra;
  ATTN_CHECK(!read_exact(f.get(), &extra, 1, path), "read_idx: ", path,
             " is longer than its header ", shape_str(out.shape), " says");
  return out;
}

const std::vector<std::string>& FashionMNIST::classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  return names;
}

namespace {

std::string find_file(const std::string& dir, const std::string& stem) {
  namespace fs = std::filesystem;
  for (const std::string& name : {stem, stem + ".gz"})
    if (fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
  throw Error(detail::str("load_fashion_mnist: no ", stem, "[.gz] in ", dir,
                          " (Debian's dataset-fashion-mnist package installs it in ", kFashionMnistDir, ")"));
}

ImageDataset split(const std::string& dir, const std::string& images_stem, const std::string& labels_stem) {
  const std::string ip = find_file(dir, images_stem), lp = find_file(dir, labels_stem);
  IdxArray im = read_idx(ip), lb = read_idx(lp);
  ATTN_CHECK(im.shape.size() == 3, "load_fashion_mnist: ", ip, " has shape ", shape_str(im.shape),
             "; expected (N, rows, cols) images");
  ATTN_CHECK(lb.shape.size() == 1, "load_fashion_mnist: ", lp, " has shape ", shape_str(lb.shape),
             "; expected (N) labels");
  ATTN_CHECK(im.shape[0] == lb.shape[0], "load_fashion_mnist: ", ip, " holds ", im.shape[0], " images but ", lp,
             " ", lb.shape[0], " labels");
  const int64_t n = im.shape[0], h = im.shape[1], w = im.shape[2];
  ImageDataset ds;
  ds.images = Tensor::make({n, 1, h, w}, kFloat32);
  float* px = ds.images.data<float>();
  for (size_t i = 0; i < im.data.size(); ++i) px[i] = static_cast<float>(im.data[i]) * (1.0f / 255.0f);
  ds.labels = Tensor::make({n}, kInt64);
  int64_t* y = ds.labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    ATTN_CHECK(lb.data[i] < 10, "load_fashion_mnist: ", lp, ": label ", int(lb.data[i]), " at index ", i,
               " is not a class (0 to 9)");
    y[i] = lb.data[i];
  }
  return ds;
}

}  // namespace

FashionMNIST load_fashion_mnist(const std::string& dir) {
  FashionMNIST f;
  f.train = split(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte");
  f.test = split(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
  return f;
}

}  // namespace attn::data
