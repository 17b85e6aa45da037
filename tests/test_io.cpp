// Safetensors: round trips, every readable dtype, metadata, atomic writes, and
// malformed files rejected with a message naming what is wrong.
#include <attn/attn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace attn {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/attn_io_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A file with the given JSON header text and raw data bytes.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + data;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Safetensors, RoundTripEveryWritableDtype) {
  TempDir d;
  io::TensorMap m;
  m["f32"] = randn({3, 4});
  m["f64"] = randn({2}, kFloat64);
  m["i64"] = from_vector({-5, 7, 9});
  m["bool"] = from_vector(std::vector<bool>{true, false, true});
  m["bf16"] = from_vector(std::vector<float>{1.5f, -2.0f}).to(kBFloat16);
  m["scalar"] = scalar_tensor(3.25);
  m["empty"] = zeros({0, 5});
  m["strided"] = arange(0, 12, 1, kFloat32).reshape({3, 4}).t();  // written contiguous
  io::save_safetensors(d.file("a.safetensors"), m, {{"format", "pt"}, {"note", "hello"}});
  io::SafetensorsFile f = io::read_safetensors(d.file("a.safetensors"));
  ASSERT_EQ(f.tensors.size(), m.size());
  for (const auto& [k, t] : m) {
    ASSERT_TRUE(f.tensors.count(k)) << k;
    EXPECT_TRUE(equal(f.tensors[k], t.contiguous())) << k;
  }
  EXPECT_EQ(f.metadata.at("note"), "hello");
  // No temporary file is left beside the target.
  int files = 0;
  for (auto& e : fs::directory_iterator(d.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, OverwriteIsAtomicAndLoadedTensorsOutliveTheFile) {
  TempDir d;
  const std::string p = d.file("w.safetensors");
  io::save_safetensors(p, {{"x", ones({1000})}});
  io::TensorMap first = io::load_safetensors(p);
  io::save_safetensors(p, {{"x", zeros({10})}});
  fs::remove(p);
  EXPECT_EQ(first["x"].sum().item<float>(), 1000.0f);  // the mapping keeps the old bytes alive
  first["x"].fill_(2);                                   // private mapping: writable
  EXPECT_EQ(first["x"].sum().item<float>(), 2000.0f);
  EXPECT_THROW(io::save_safetensors(d.file("missing_dir/x.safetensors"), {{"x", ones({1})}}), Error);
}

TEST(Safetensors, ReadsOtherDtypes) {
  // F16 (1.0, -2.5, 2^-24 subnormal, inf), I32, I16, I8, U8, converted on load.
  std::string f16;
  for (uint16_t h : {0x3c00, 0xc100, 0x0001, 0x7c00}) f16.append(reinterpret_cast<const char*>(&h), 2);
  std::string i32;
  for (int32_t v : {-7, 1 << 30}) i32.append(reinterpret_cast<const char*>(&v), 4);
  std::string i16, i8, u8;
  for (int16_t v : {-300, 300}) i16.append(reinterpret_cast<const char*>(&v), 2);
  i8 += static_cast<char>(-5);
  u8 += static_cast<char>(200);
  const std::string data = f16 + i32 + i16 + i8 + u8;
  const std::string header = nlohmann::json{
      {"h", {{"dtype", "F16"}, {"shape", {4}}, {"data_offsets", {0, 8}}}},
      {"a", {{"dtype", "I32"}, {"shape", {2}}, {"data_offsets", {8, 16}}}},
      {"b", {{"dtype", "I16"}, {"shape", {2}}, {"data_offsets", {16, 20}}}},
      {"c", {{"dtype", "I8"}, {"shape", {1}}, {"data_offsets", {20, 21}}}},
      {"u", {{"dtype", "U8"}, {"shape", {1, 1}}, {"data_offsets", {21, 22}}}}}.dump();
  const std::string bytes = make_file(header, data);
  io::SafetensorsFile f = io::parse_safetensors(bytes.data(), bytes.size());
  Tensor h = f.tensors["h"];
  EXPECT_EQ(h.dtype(), kFloat32);
  EXPECT_EQ(h[0].item<float>(), 1.0f);
  EXPECT_EQ(h[1].item<float>(), -2.5f);
  EXPECT_EQ(h[2].item<float>(), std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(h[3].item<float>()));
  EXPECT_EQ(f.tensors["a"][1].item<int64_t>(), 1 << 30);
  EXPECT_EQ(f.tensors["b"][0].item<int64_t>(), -300);
  EXPECT_EQ(f.tensors["c"][0].item<int64_t>(), -5);
  EXPECT_EQ(f.tensors["u"].shape(), (Shape{1, 1}));
  EXPECT_EQ(f.tensors["u"].reshape({1})[0].item<int64_t>(), 200);
}

TEST(Safetensors, MalformedFilesAreNamedForWhatIsWrong) {
  auto parse = [](const std::string& b) { return error_of([&] { io::parse_safetensors(b.data(), b.size(), "f"); }); };
  auto t = [](const nlohmann::json& entry) { return nlohmann::json{{"x", entry}}.dump(); };
  const std::string data(16, '\0');
  struct Bad {
    std::string bytes, expect;
  };
  const std::vector<Bad> cases = {
      {"abc", "shorter than the 8-byte header length"},
      {make_file("{}", "").substr(0, 9), "runs past the end"},
      {std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", "exceeds the 100 MB limit"},
      {make_file("{not json", ""), "not valid JSON"},
      {make_file("[1,2]", ""), "not a JSON object"},
      {make_file(t({{"shape", {2}}, {"data_offsets", {0, 8}}}), data), "has no string dtype"},
      {make_file(t({{"dtype", "F32"}, {"data_offsets", {0, 8}}}), data), "has no shape array"},
      {make_file(t({{"dtype", "F32"}, {"shape", {2}}}), data), "data_offsets"},
      {make_file(t({{"dtype", "Q7"}, {"shape", {2}}, {"data_offsets", {0, 8}}}), data), "unsupported dtype \"Q7\""},
      {make_file(t({{"dtype", "F32"}, {"shape", {-2}}, {"data_offsets", {0, 8}}}), data), "non-negative integer"},
      {make_file(t({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 64}}}), data), "outside the data section"},
      {make_file(t({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {8, 4}}}), data), "outside the data section"},
      {make_file(t({{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {0, 8}}}), data), "need 12"},
      {make_file(t({{"dtype", "F32"}, {"shape", {4611686018427387904ull, 4}}, {"data_offsets", {0, 8}}}), data),
       "larger than the file"},
      {make_file(t({{"dtype", "BOOL"}, {"shape", {1}}, {"data_offsets", {0, 1}}}), std::string(1, '\x02')),
       "neither 0 nor 1"},
      {make_file(nlohmann::json{{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
                                {"b", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {4, 12}}}}}
                     .dump(),
                 data),
       "overlap"},
      {make_file(nlohmann::json{{"__metadata__", {{"k", 1}}}}.dump(), ""), "is not a string"},
      {make_file(R"({"__metadata__":{"k":"a","k":"b"}})", ""), "__metadata__ repeats the key \"k\""},
      {make_file(R"({"__metadata__":{},"__metadata__":{}})", ""), "__metadata__ appears twice"},
      {make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                 R"("x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                 data),
       "tensor \"x\" appears twice"},
      {make_file(R"({"x":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}})", data),
       "repeats its field \"dtype\""},
      {make_file(t({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8, 8}}}), data),
       "[begin, end] data_offsets"},
      {make_file(t({{"dtype", "F32"}, {"shape", {{2}}}, {"data_offsets", {0, 8}}}), data), "shape entry"},
      {make_file(t({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {-1, 8}}}), data), "non-negative integers"},
      {make_file(t({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}, {"extra", {{"a", {1}}}}}), data),
       "nests a value deeper"},
      {make_file("{} trailing", ""), "not valid JSON"},
      {make_file("\"just a string\"", ""), "not a JSON object"},
  };
  for (const Bad& b : cases) {
    const std::string msg = parse(b.bytes);
    EXPECT_NE(msg.find(b.expect), std::string::npos) << "expected \"" << b.expect << "\" in: " << msg;
    EXPECT_EQ(msg.rfind("load_safetensors: f: ", 0), 0u) << msg;
  }
  // Fields the format does not define are skipped when they are scalars or
  // flat arrays or objects (as other readers do) and cannot alias the schema's
  // own fields.
  const std::string extra = make_file(
      R"({"x":{"dtype":"F32","note":"n","tags":[1,"a",null],"more":{"shape":7},"shape":[2],"data_offsets":[0,8]}})",
      data);
  const io::SafetensorsFile ok = io::parse_safetensors(extra.data(), extra.size(), "f");
  EXPECT_EQ(ok.tensors.at("x").shape(), (Shape{2}));
  // A header of 10 MB of nested brackets is refused at its first event, so no
  // document tree is built from it.
  const std::string bomb = make_file(std::string(5 << 20, '[') + std::string(5 << 20, ']'), "");
  EXPECT_NE(parse(bomb).find("not a JSON object"), std::string::npos);
  const std::string obj_bomb =
      make_file("{\"x\":{\"f\":" + std::string(5 << 20, '[') + std::string(5 << 20, ']') + "}}", "");
  EXPECT_NE(parse(obj_bomb).find("nests a value deeper"), std::string::npos);
  TempDir d;
  EXPECT_NE(error_of([&] { io::load_safetensors(d.file("nope")); }).find("cannot open"), std::string::npos);
  EXPECT_NE(error_of([&] { io::load_safetensors(d.path()); }).find("not a regular file"), std::string::npos);
  write_bytes(d.file("empty"), "");
  EXPECT_NE(error_of([&] { io::load_safetensors(d.file("empty")); }).find("empty"), std::string::npos);
}

TEST(Safetensors, TruncationAtEveryLengthIsRejectedCleanly) {
  TempDir d;
  const std::string p = d.file("t.safetensors");
  io::save_safetensors(p, {{"a", randn({5})}, {"b", from_vector({1, 2})}}, {{"k", "v"}});
  std::ifstream in(p, std::ios::binary);
  const std::string full((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  int rejected = 0;
  for (size_t n = 0; n < full.size(); ++n) {
    const std::string part = full.substr(0, n);
    try {
      io::parse_safetensors(part.data(), part.size(), "t");
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_EQ(rejected, static_cast<int>(full.size()));
}

TEST(Safetensors, SaveRejectsBadArguments) {
  TempDir d;
  EXPECT_THROW(io::save_safetensors(d.file("x"), {{"__metadata__", ones({1})}}), Error);
  EXPECT_THROW(io::save_safetensors(d.file("x"), {{"u", Tensor()}}), Error);
}

}  // namespace
}  // namespace attn
