// Users' text files for --data: reading, UTF-8 checks, code points (see text_file.h).
#include "common/text_file.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "attn/error.h"

namespace attn::apps {

namespace {

// The length (1..4) of the well-formed UTF-8 sequence at s[i] and its code
// point, or 0 when none starts there (overlong forms, surrogates and code
// points above U+10FFFF are not well formed).
int sequence(const std::string& s, size_t i, char32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  int n;
  char32_t min;
  if ((c & 0xe0) == 0xc0) n = 2, cp = c & 0x1f, min = 0x80;
  else if ((c & 0xf0) == 0xe0) n = 3, cp = c & 0x0f, min = 0x800;
  else if ((c & 0xf8) == 0xf0) n = 4, cp = c & 0x07, min = 0x10000;
  else return 0;
  if (i + static_cast<size_t>(n) > s.size()) return 0;
  for (int k = 1; k < n; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

}  // namespace

std::string read_utf8_file(const std::string& path, const std::string& app) {
  std::ifstream f(path, std::ios::binary);
  ATTN_CHECK(f.good(), app, ": cannot read ", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  std::string text = ss.str();
  ATTN_CHECK(!text.empty(), app, ": ", path, " is empty");
  int64_t line = 1, column = 1;
  for (size_t i = 0; i < text.size();) {
    char32_t cp;
    const int n = sequence(text, i, cp);
    if (n == 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(text[i]));
      throw Error(detail::str(app, ": ", path, " is not UTF-8: line ", line, ", column ", column, ": byte ", hex,
                              " does not start a well-formed UTF-8 character"));
    }
    if (cp == '\n') ++line, column = 1;
    else ++column;
    i += static_cast<size_t>(n);
  }
  return text;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= text.size()) {
    const size_t b = std::min(text.find('\n', a), text.size());
    out.push_back(text.substr(a, b - a));
    a = b + 1;
  }
  return out;
}

std::string join_lines(const std::vector<std::string>& lines, size_t from) {
  std::string s;
  for (size_t i = from; i < lines.size(); ++i) s += (i > from ? "\n" : "") + lines[i];
  return s;
}

std::vector<char32_t> decode_utf8(const std::string& text) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    char32_t cp;
    const int n = sequence(text, i, cp);
    ATTN_CHECK(n > 0, "decode_utf8: the text is not UTF-8 at byte ", i);
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

std::string encode_utf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    s.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    s.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
  return s;
}

std::string encode_utf8(const std::vector<char32_t>& cps) {
  std::string s;
  for (char32_t c : cps) s += encode_utf8(c);
  return s;
}

}  // namespace attn::apps
