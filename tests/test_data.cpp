// IDX files and Fashion-MNIST: files written here (plain and gzip through
// zlib) read back exactly; truncated, overlong and foreign files are errors
// naming the file; Debian's Fashion-MNIST, where installed, has the
// published counts and balanced classes.
#include <attn/attn.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace attn;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                               uint8_t type = 0x08) {
  std::vector<uint8_t> b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("attn_test_data_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes, bool gz = false) const {
    const std::string p = (path / name).string();
    if (gz) {
      gzFile f = gzopen(p.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                               static_cast<std::streamsize>(bytes.size()));
    }
    return p;
  }
};

std::string error_of(const std::string& path) {
  try {
    data::read_idx(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Idx, ReadsPlainAndGzipFiles) {
  TempDir dir;
  std::vector<uint8_t> px(2 * 3 * 4);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 11);
  for (bool gz : {false, true}) {
    const auto a = data::read_idx(dir.write(gz ? "a.gz" : "a", idx_bytes({2, 3, 4}, px), gz));
    EXPECT_EQ(a.shape, (Shape{2, 3, 4}));
    EXPECT_EQ(a.data, px);
  }
  const auto e = data::read_idx(dir.write("empty", idx_bytes({0}, {})));
  EXPECT_EQ(e.shape, (Shape{0}));
}

TEST(Idx, BadFilesAreNamedForWhatIsWrong) {
  TempDir dir;
  std::vector<uint8_t> px(12, 7);
  auto full = idx_bytes({3, 4}, px);
  EXPECT_NE(error_of(dir.write("t", std::vector<uint8_t>(full.begin(), full.end() - 1))).find("truncated"),
            std::string::npos);
  EXPECT_NE(error_of(dir.write("tgz", std::vector<uint8_t>(full.begin(), full.end() - 5), true)).find("truncated"),
            std::string::npos);
  auto longer = full;
  longer.push_back(1);
  EXPECT_NE(error_of(dir.write("l", longer)).find("longer than its header"), std::string::npos);
  EXPECT_NE(error_of(dir.write("h", {0, 0})).find("shorter than an IDX header"), std::string::npos);
  EXPECT_NE(error_of(dir.write("hd", {0, 0, 8, 3, 0, 0})).find("ends inside its header"), std::string::npos);
  const std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
  EXPECT_NE(error_of(dir.write("p.png", png)).find("not an IDX file"), std::string::npos);
  EXPECT_NE(error_of(dir.write("f", idx_bytes({3}, {0, 0, 0}, 0x0d))).find("type 0xd"), std::string::npos);
  EXPECT_NE(error_of(dir.write("z", {0, 0, 8, 0})).find("0 dimensions"), std::string::npos);
  EXPECT_NE(error_of(dir.write("huge", idx_bytes({60000, 60000, 60000}, {}))).find("2^31"), std::string::npos);
  // a damaged gzip stream
  auto gz_path = dir.write("d.gz", full, true);
  {
    std::fstream f(gz_path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(14);
    f.put('\x55');
    f.put('\x55');
    f.put('\x55');
  }
  EXPECT_FALSE(error_of(gz_path).empty());
  EXPECT_NE(error_of((dir.path / "absent").string()).find("cannot open"), std::string::npos);
}

TEST(FashionMnist, ChecksImagesAgainstLabels) {
  TempDir dir;
  std::vector<uint8_t> px(3 * 28 * 28, 255);
  dir.write("train-images-idx3-ubyte", idx_bytes({3, 28, 28}, px));
  dir.write("t10k-images-idx3-ubyte.gz", idx_bytes({3, 28, 28}, px), true);
  dir.write("t10k-labels-idx1-ubyte", idx_bytes({3}, {0, 9, 4}));
  try {
    data::load_fashion_mnist(dir.path.string());
    FAIL() << "a missing labels file must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train-labels-idx1-ubyte"), std::string::npos) << e.what();
  }
  dir.write("train-labels-idx1-ubyte", idx_bytes({2}, {1, 2}));
  EXPECT_THROW(data::load_fashion_mnist(dir.path.string()), Error);  // 3 images, 2 labels
  dir.write("train-labels-idx1-ubyte", idx_bytes({3}, {1, 2, 10}));
  EXPECT_THROW(data::load_fashion_mnist(dir.path.string()), Error);  // label 10
  dir.write("train-labels-idx1-ubyte", idx_bytes({3}, {1, 2, 3}));
  const auto f = data::load_fashion_mnist(dir.path.string());
  EXPECT_EQ(f.train.images.shape(), (Shape{3, 1, 28, 28}));
  EXPECT_FLOAT_EQ(f.train.images.data<float>()[0], 1.0f);
  EXPECT_EQ(f.test.labels.data<int64_t>()[1], 9);
  EXPECT_EQ(data::FashionMNIST::classes().size(), 10u);
}

TEST(FashionMnist, DebiansPackageHasThePublishedSplits) {
  if (!fs::exists(data::kFashionMnistDir)) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const auto f = data::load_fashion_mnist();
  EXPECT_EQ(f.train.size(), 60000);
  EXPECT_EQ(f.test.size(), 10000);
  EXPECT_EQ(f.train.images.shape(), (Shape{60000, 1, 28, 28}));
  std::vector<int64_t> count(10, 0);
  for (int64_t i = 0; i < f.test.size(); ++i) ++count[f.test.labels.data<int64_t>()[i]];
  for (int64_t c : count) EXPECT_EQ(c, 1000);  // 1000 test images per class
}
