// GPT-2's byte-level BPE (see attn/text.h): the pre-tokeniser, written as a
// scanner over code points that reproduces the regular expression's
// leftmost-alternative matching, and the rank-ordered merges with a cache of
// the pieces already seen in one call.
#include "attn/text.h"

#include <unicode/uchar.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attn/error.h"
#include "attn/io.h"

namespace attn::text {

namespace {

// GPT-2's reversible map from bytes to printable code points: the printable
// Latin-1 bytes map to themselves, the other 68 to U+0100 onwards in order.
std::vector<char32_t> byte_to_unicode() {
  std::vector<char32_t> cs(256, 0);
  std::vector<bool> kept(256, false);
  for (int b = '!'; b <= '~'; ++b) kept[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) kept[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) kept[b] = true;
  int n = 0;
  for (int b = 0; b < 256; ++b) cs[b] = kept[b] ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
  return cs;
}

// A vocabulary string (UTF-8 of byte_to_unicode's code points) to its bytes;
// false when a code point is not one of the 256.
bool unicode_to_bytes(const std::string& s, std::string& out) {
  static const std::vector<int> inverse = [] {
    std::vector<int> inv(512, -1);
    const auto cs = byte_to_unicode();
    for (int b = 0; b < 256; ++b) inv[cs[b]] = b;
    return inv;
  }();
  out.clear();
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    if (c < 0x80) {
      cp = c, i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu), i += 2;
    } else {
      return false;
    }
    if (cp >= inverse.size() || inverse[cp] < 0) return false;
    out.push_back(static_cast<char>(inverse[cp]));
  }
  return true;
}

std::string to_unicode(const std::string& bytes) {
  static const std::vector<char32_t> cs = byte_to_unicode();
  std::string out;
  for (unsigned char b : bytes) {
    const char32_t cp = cs[b];
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

// The length of the well-formed UTF-8 sequence at s[i] and its code point,
// or 0 when the byte starts none (Unicode's table 3-7).
int utf8_sequence(std::string_view s, size_t i, char32_t& cp) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = at(i);
  if (c < 0x80) return cp = c, 1;
  auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return k < s.size() && at(k) >= lo && at(k) <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) {
    if (!cont(i + 1)) return 0;
    return cp = ((c & 0x1Fu) << 6) | (at(i + 1) & 0x3Fu), 2;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    const unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    if (!cont(i + 1, lo, hi) || !cont(i + 2)) return 0;
    return cp = ((c & 0x0Fu) << 12) | ((at(i + 1) & 0x3Fu) << 6) | (at(i + 2) & 0x3Fu), 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    if (!cont(i + 1, lo, hi) || !cont(i + 2) || !cont(i + 3)) return 0;
    return cp = ((c & 0x07u) << 18) | ((at(i + 1) & 0x3Fu) << 12) | ((at(i + 2) & 0x3Fu) << 6) | (at(i + 3) & 0x3Fu),
           4;
  }
  return 0;
}

enum Class : uint8_t { kLetter, kNumber, kSpace, kOther };

Class classify(char32_t cp) {
  if (cp < 0x80) {
    if (cp == ' ' || (cp >= 9 && cp <= 13)) return kSpace;
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return kLetter;
    if (cp >= '0' && cp <= '9') return kNumber;
    return kOther;
  }
  if (cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF) return kSpace;
  const uint32_t mask = U_GET_GC_MASK(static_cast<UChar32>(cp));
  if (mask & U_GC_ZS_MASK) return kSpace;
  if (mask & U_GC_L_MASK) return kLetter;
  if (mask & U_GC_N_MASK) return kNumber;
  return kOther;
}

struct Char {
  uint32_t offset;  // byte offset in the text
  char32_t cp;      // 0xFFFFFFFF for an invalid byte
  Class cls;
};

std::string read_text(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("ByteLevelBPE: cannot open the " + std::string(what) + " file " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

std::vector<std::string_view> ByteLevelBPE::pretokenize(std::string_view text) {
  std::vector<Char> chars;
  chars.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    const int n = utf8_sequence(text, i, cp);
    if (n == 0) {
      chars.push_back({static_cast<uint32_t>(i), 0xFFFFFFFFu, kOther});
      i += 1;
    } else {
      chars.push_back({static_cast<uint32_t>(i), cp, classify(cp)});
      i += static_cast<size_t>(n);
    }
  }
  ATTN_CHECK(text.size() < std::numeric_limits<uint32_t>::max(), "ByteLevelBPE: a text of 4 GiB or more");
  const size_t n = chars.size();
  auto off = [&](size_t k) { return k < n ? static_cast<size_t>(chars[k].offset) : text.size(); };
  auto run = [&](size_t k, Class c) {
    while (k < n && chars[k].cls == c) ++k;
    return k;
  };
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < n) {
    const Char& c = chars[i];
    size_t e = i;
    // 's|'t|'re|'ve|'m|'ll|'d
    if (c.cp == '\'' && i + 1 < n) {
      const char32_t a = chars[i + 1].cp, b = i + 2 < n ? chars[i + 2].cp : 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd')
        e = i + 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        e = i + 3;
    }
    if (e == i) {
      // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional space, then a run of one class.
      const size_t s = c.cp == ' ' && i + 1 < n && chars[i + 1].cls != kSpace ? i + 1 : i;
      if (chars[s].cls != kSpace) {
        e = run(s, chars[s].cls);
      } else {
        // '\s+(?!\S)' then '\s+': a run of white space leaves its last
        // character to the next piece when something other than space follows.
        e = run(i, kSpace);
        if (e < n && e - i >= 2) e -= 1;
      }
    }
    out.emplace_back(text.substr(off(i), off(e) - off(i)));
    i = e;
  }
  return out;
}

ByteLevelBPE ByteLevelBPE::from_files(const std::string& vocab_path, const std::string& merges_path) {
  ByteLevelBPE t;
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(read_text(vocab_path, "vocabulary"));
  } catch (const nlohmann::json::exception& e) {
    throw Error("ByteLevelBPE: " + vocab_path + ": not valid JSON (" + e.what() + ")");
  }
  if (!vocab.is_object() || vocab.empty())
    throw Error("ByteLevelBPE: " + vocab_path + ": expected a JSON object of token -> id");
  const int64_t V = static_cast<int64_t>(vocab.size());
  t.bytes_.assign(static_cast<size_t>(V), std::string());
  std::vector<bool> seen(static_cast<size_t>(V), false);
  std::string bytes;
  for (const auto& [tok, idv] : vocab.items()) {
    if (!idv.is_number_integer())
      throw Error("ByteLevelBPE: " + vocab_path + ": the id of \"" + tok + "\" is not an integer");
    const int64_t id = idv.get<int64_t>();
    if (id < 0 || id >= V || seen[static_cast<size_t>(id)])
      throw Error("ByteLevelBPE: " + vocab_path + ": ids must be 0.." + std::to_string(V - 1) +
                  ", each once; \"" + tok + "\" has " + std::to_string(id));
    if (!unicode_to_bytes(tok, bytes))
      throw Error("ByteLevelBPE: " + vocab_path + ": \"" + tok + "\" is not a byte-level token");
    seen[static_cast<size_t>(id)] = true;
    t.bytes_[static_cast<size_t>(id)] = bytes;
    t.ids_[bytes] = static_cast<int32_t>(id);
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = t.ids_.find(std::string(1, static_cast<char>(b)));
    if (it == t.ids_.end())
      throw Error("ByteLevelBPE: " + vocab_path + ": the vocabulary lacks the single byte " + std::to_string(b));
    t.byte_id_[b] = it->second;
  }
  const std::string merges = read_text(merges_path, "merges");
  std::istringstream lines(merges);
  std::string line, a, b, ab, extra;
  int64_t lineno = 0;
  while (std::getline(lines, line)) {
    ++lineno;
    if (lineno == 1 && line.rfind("#version", 0) == 0) continue;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream fields(line);
    if (!(fields >> a >> b) || (fields >> extra))
      throw Error("ByteLevelBPE: " + merges_path + ":" + std::to_string(lineno) + ": expected two tokens, got \"" +
                  line + "\"");
    std::string ba, bb;
    if (!unicode_to_bytes(a, ba) || !unicode_to_bytes(b, bb))
      throw Error("ByteLevelBPE: " + merges_path + ":" + std::to_string(lineno) + ": not byte-level tokens: \"" +
                  line + "\"");
    const int64_t ia = t.id_of(ba), ib = t.id_of(bb), iab = t.id_of(ba + bb);
    if (ia < 0 || ib < 0 || iab < 0)
      throw Error("ByteLevelBPE: " + merges_path + ":" + std::to_string(lineno) + ": \"" + line +
                  "\" names a token (or makes one) missing from the vocabulary");
    const uint64_t key = (static_cast<uint64_t>(ia) << 32) | static_cast<uint64_t>(ib);
    const int32_t rank = static_cast<int32_t>(t.merge_list_.size());
    t.ranks_.emplace(key, Merge{rank, static_cast<int32_t>(iab)});  // the first rank wins on a repeated pair
    t.merge_list_.emplace_back(static_cast<int32_t>(ia), static_cast<int32_t>(ib));
  }
  if (t.id_of("<|endoftext|>") >= 0) t.special_.push_back("<|endoftext|>");
  return t;
}

ByteLevelBPE ByteLevelBPE::from_directory(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path d(dir);
  if (fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt"))
    return from_files((d / "vocab.json").string(), (d / "merges.txt").string());
  if (fs::exists(d / "encoder.json") && fs::exists(d / "vocab.bpe"))
    return from_files((d / "encoder.json").string(), (d / "vocab.bpe").string());
  throw Error("ByteLevelBPE: " + dir +
              " holds neither vocab.json + merges.txt (Hugging Face) nor encoder.json + vocab.bpe (OpenAI)");
}

int64_t ByteLevelBPE::id_of(std::string_view bytes) const {
  const auto it = ids_.find(std::string(bytes));
  return it == ids_.end() ? -1 : it->second;
}

const std::string& ByteLevelBPE::token_bytes(int64_t id) const {
  ATTN_CHECK(id >= 0 && id < vocab_size(), "ByteLevelBPE: token id ", id, " is outside [0, ", vocab_size(), ")");
  return bytes_[static_cast<size_t>(id)];
}

void ByteLevelBPE::encode_piece(std::string_view piece, std::vector<int64_t>& out,
                                std::unordered_map<std::string, std::vector<int32_t>>& cache) const {
  std::string key(piece);
  if (const auto it = cache.find(key); it != cache.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  std::vector<int32_t> word;
  word.reserve(piece.size());
  for (unsigned char b : piece) word.push_back(byte_id_[b]);
  // Merge the lowest-ranked adjacent pair everywhere it occurs (left to
  // right, without overlaps), until no adjacent pair has a rank.
  while (word.size() > 1) {
    int32_t best = std::numeric_limits<int32_t>::max(), merged = -1, left = -1, right = -1;
    for (size_t k = 0; k + 1 < word.size(); ++k) {
      const uint64_t pk = (static_cast<uint64_t>(word[k]) << 32) | static_cast<uint32_t>(word[k + 1]);
      const auto it = ranks_.find(pk);
      if (it != ranks_.end() && it->second.rank < best)
        best = it->second.rank, merged = it->second.id, left = word[k], right = word[k + 1];
    }
    if (merged < 0) break;
    size_t w = 0;
    for (size_t k = 0; k < word.size();) {
      if (k + 1 < word.size() && word[k] == left && word[k + 1] == right) {
        word[w++] = merged;
        k += 2;
      } else {
        word[w++] = word[k++];
      }
    }
    word.resize(w);
  }
  out.insert(out.end(), word.begin(), word.end());
  if (piece.size() <= 64) cache.emplace(std::move(key), std::move(word));
}

std::vector<int64_t> ByteLevelBPE::encode(std::string_view text, bool allow_special) const {
  std::vector<int64_t> out;
  out.reserve(text.size() / 3);
  std::unordered_map<std::string, std::vector<int32_t>> cache;
  auto plain = [&](std::string_view part) {
    for (std::string_view piece : pretokenize(part)) encode_piece(piece, out, cache);
  };
  if (!allow_special || special_.empty()) {
    plain(text);
    return out;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t best = std::string_view::npos;
    const std::string* which = nullptr;
    for (const std::string& s : special_) {
      const size_t at = text.find(s, start);
      if (at < best) best = at, which = &s;
    }
    if (!which) {
      plain(text.substr(start));
      break;
    }
    plain(text.substr(start, best - start));
    out.push_back(id_of(*which));
    start = best + which->size();
  }
  return out;
}

std::string ByteLevelBPE::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) out += token_bytes(id);
  return out;
}

void ByteLevelBPE::save(const std::string& dir) const {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::string vocab = "{";
  for (size_t id = 0; id < bytes_.size(); ++id)
    vocab += (id ? ", " : "") + nlohmann::json(to_unicode(bytes_[id])).dump() + ": " + std::to_string(id);
  vocab += "}";
  std::string merges = "#version: 0.2\n";
  for (const auto& [a, b] : merge_list_)
    merges += to_unicode(bytes_[static_cast<size_t>(a)]) + " " + to_unicode(bytes_[static_cast<size_t>(b)]) + "\n";
  io::write_file((fs::path(dir) / "vocab.json").string(), vocab);
  io::write_file((fs::path(dir) / "merges.txt").string(), merges);
}

}  // namespace attn::text
