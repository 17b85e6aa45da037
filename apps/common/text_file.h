// Users' text files for the applications (--data): read whole, checked to be
// UTF-8 (the first bad byte reported by line and column), decoded into code
// points.
#pragma once

#include <string>
#include <vector>

namespace attn::apps {

// The file's bytes; attn::Error "<app>: FILE: ..." when it cannot be read, is
// empty, or is not UTF-8 ("line 3, column 7: byte 0xff does not start a UTF-8
// character").
std::string read_utf8_file(const std::string& path, const std::string& app);

// Lines of a string ("a\nb" -> {"a", "b"}; "" -> {""}), and back: how the
// applications keep word lists in a checkpoint's metadata.
std::vector<std::string> split_lines(const std::string& text);
std::string join_lines(const std::vector<std::string>& lines, size_t from = 0);

// Code points of valid UTF-8 text, and back.
std::vector<char32_t> decode_utf8(const std::string& text);
std::string encode_utf8(char32_t cp);
std::string encode_utf8(const std::vector<char32_t>& cps);

}  // namespace attn::apps
