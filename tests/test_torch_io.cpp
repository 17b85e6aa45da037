// PyTorch checkpoints: files written by torch.save (tests/parity/gen_torch.py,
// at test time) load with the values PyTorch saved, every storage type,
// views and shared storages, nested dicts, protocol 4, deflated entries; and
// hostile files (code in __reduce__, pickled modules, the legacy format,
// broken archives and pickles, every truncation and byte flip of a good
// file) end in an attn::Error naming the file, running nothing.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

namespace attn {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string dir() {
  const char* d = std::getenv("ATTN_TORCH_DIR");
  return d ? d : "";
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The same dtype and the same bits (compared through float64 or int64).
void expect_identical(const std::string& what, const Tensor& got, const Tensor& want) {
  ASSERT_TRUE(got.defined()) << what;
  EXPECT_EQ(got.dtype(), want.dtype()) << what;
  EXPECT_EQ(got.shape(), want.shape()) << what;
  if (got.dtype() != want.dtype() || got.shape() != want.shape()) return;
  const DType common = is_floating(want.dtype()) ? kFloat64 : kInt64;
  EXPECT_TRUE(equal(got.to(common), want.to(common))) << what;
}

TEST(TorchIO, FilesWrittenByTorchSaveLoadWithTheirValues) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_TORCH_DIR is not set (ctest sets it)";
  io::SafetensorsFile expected = io::read_safetensors(dir() + "/expected.safetensors");
  ASSERT_GT(expected.tensors.size(), 50u);
  std::map<std::string, io::TorchFile> files;
  std::map<std::string, size_t> count;
  for (const auto& [key, want] : expected.tensors) {
    const std::string stem = key.substr(0, key.find('/')), path = key.substr(key.find('/') + 1);
    if (!files.count(stem)) {
      std::string file = dir() + "/" + stem + (stem == "module" ? ".pth" : ".pt");
      files[stem] = io::read_torch(file);
    }
    ++count[stem];
    auto it = files[stem].tensors.find(path);
    if (it == files[stem].tensors.end()) {
      ADD_FAILURE() << stem << ": no tensor " << path;
      continue;
    }
    expect_identical(key, it->second, want);
  }
  for (const auto& [stem, f] : files) EXPECT_EQ(f.tensors.size(), count[stem]) << stem << ": tensors PyTorch did not save";
  EXPECT_EQ(files.size(), 7u);
  // Non-tensor leaves come back as text.
  const json values = json::parse(expected.metadata.at("values")).at("nested");
  const auto& got = files["nested"].values;
  for (const auto& [k, v] : values.items()) {
    ASSERT_TRUE(got.count(k)) << k;
    EXPECT_EQ(got.at(k), v.is_null() ? "None" : v.get<std::string>()) << k;
  }
  EXPECT_EQ(got.at("optimizer.param_groups.0.lr"), "0.001");
  // Views come out with the values they show, and tied tensors agree.
  const auto& views = files["views"].tensors;
  EXPECT_EQ(views.at("stepped").shape(), (Shape{3, 4}));
  EXPECT_EQ(views.at("stepped")[1][2].item<float>(), 36.0f);  // base[3][6]
  EXPECT_TRUE(equal(views.at("tied_a"), views.at("tied_b")));
  EXPECT_TRUE(equal(views.at("tied_view"), views.at("tied_a").narrow(0, 1, 7)));
  EXPECT_EQ(views.at("scalar").dim(), 0);
}

TEST(TorchIO, SelectingASubDictAndLoadingModules) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_TORCH_DIR is not set (ctest sets it)";
  io::TensorMap model = io::load_torch(dir() + "/nested.pt", io::TorchLoadOptions().select("model"));
  EXPECT_EQ(model.size(), 6u);
  EXPECT_TRUE(model.count("0.weight") && model.count("1.bias") && model.count("2.weight"));
  const std::string m = error_of([] { io::load_torch(dir() + "/nested.pt", io::TorchLoadOptions().select("modle")); });
  EXPECT_NE(m.find("no tensors under \"modle\""), std::string::npos) << m;
  EXPECT_NE(m.find("model, optimizer"), std::string::npos) << m;
  // Module::load takes .pt and .pth as it takes .safetensors.
  nn::Sequential seq;
  seq.emplace_back<nn::Linear>(nn::LinearOptions(4, 3));
  seq.emplace_back<nn::LayerNorm>(nn::LayerNormOptions({3}));
  seq.emplace_back<nn::Linear>(nn::LinearOptions(3, 2));
  seq.load(dir() + "/module.pth");
  io::TensorMap sd = io::load_torch(dir() + "/module.pth");
  for (const auto& [name, t] : seq.state_dict()) EXPECT_TRUE(equal(t, sd.at(name))) << name;
  // load_tensors picks the reader by extension, or by content for other names.
  const std::string copy = (fs::temp_directory_path() / "attn_torch_io_copy.weights").string();
  fs::copy_file(dir() + "/module.pth", copy, fs::copy_options::overwrite_existing);
  EXPECT_EQ(io::load_tensors(copy).size(), sd.size());
  fs::remove(copy);
}

TEST(TorchIO, HostileFilesAreRefusedWithoutRunningAnything) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_TORCH_DIR is not set (ctest sets it)";
  const std::string marker = io::read_safetensors(dir() + "/expected.safetensors").metadata.at("marker");
  fs::remove(marker);
  const json expect = json::parse(read_all(dir() + "/hostile/expect.json"));
  ASSERT_GE(expect.size(), 28u);
  for (const auto& [name, part] : expect.items()) {
    const std::string path = dir() + "/hostile/" + name;
    const std::string m = error_of([&] { io::load_torch(path); });
    if (part.get<std::string>().empty()) {
      EXPECT_EQ(m, "") << name << " should load";
      continue;
    }
    EXPECT_EQ(m.rfind("load_torch: " + path + ": ", 0), 0u) << name << ": " << m;
    EXPECT_NE(m.find(part.get<std::string>()), std::string::npos) << name << ": " << m;
    if (std::getenv("ATTN_PRINT_ERRORS")) std::printf("%s\n", m.c_str());
  }
  EXPECT_FALSE(fs::exists(marker)) << "a hostile checkpoint ran code";
  io::TensorMap w = io::load_torch(dir() + "/hostile/well_formed.pt");
  EXPECT_TRUE(equal(w.at("w"), from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}).reshape({2, 3})));
}

TEST(TorchIO, EveryTruncationAndByteFlipEndsInAnError) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_TORCH_DIR is not set (ctest sets it)";
  const std::string good = read_all(dir() + "/hostile/well_formed.pt");
  ASSERT_GT(good.size(), 200u);
  int errors = 0, loaded = 0;
  for (size_t n = 0; n < good.size(); ++n) {
    const std::string m = error_of([&] { io::parse_torch(good.data(), n, "cut"); });
    EXPECT_EQ(m.rfind("load_torch: cut: ", 0), 0u) << "cut at " << n << ": " << m;
    ++errors;
  }
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    const std::string m = error_of([&] { io::parse_torch(bad.data(), bad.size(), "flipped"); });
    if (m.empty()) {
      ++loaded;  // a flip in a name, a timestamp or padding libzip does not check
    } else {
      EXPECT_EQ(m.rfind("load_torch: flipped: ", 0), 0u) << "flip at " << i << ": " << m;
      ++errors;
    }
  }
  std::printf("torch io: %zu truncations and %zu byte flips of a %zu-byte archive: %d errors, %d loads\n",
              good.size(), good.size(), good.size(), errors, loaded);
}

}  // namespace
}  // namespace attn
