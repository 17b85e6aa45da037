// GPT-2's tokenizer: byte-level BPE (Radford et al. 2019; OpenAI's
// gpt-2/src/encoder.py), read from Hugging Face's vocab.json + merges.txt or
// OpenAI's encoder.json + vocab.bpe.
//
//   auto tok = attn::text::ByteLevelBPE::from_directory("gpt2/");  // either pair of files
//   std::vector<int64_t> ids = tok.encode("Hello world");       // {15496, 995}
//   std::string text = tok.decode(ids);                          // "Hello world"
//
// Pre-tokenisation splits the text as GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does in JavaScript (the `u` flag): \p{L} and \p{N} are the Unicode general
// categories L and N (from ICU), \s is ECMAScript's white space (tab, line
// feed, vertical tab, form feed, carriage return, U+2028, U+2029, U+FEFF and
// the category Zs). Each piece's UTF-8 bytes are then merged by rank.
//
// Invalid UTF-8: a byte that does not start a well-formed UTF-8 sequence
// (a stray continuation byte, an overlong form, a surrogate, a value past
// U+10FFFF, a truncated sequence) is taken alone as one character of the
// "other" class ([^\s\p{L}\p{N}]) and encoded as its own byte. Nothing is
// replaced, so decode(encode(s)) == s for every byte string s, valid UTF-8
// or not; decode returns the tokens' bytes as they are.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace attn::text {

class ByteLevelBPE {
 public:
  // vocab: the token -> id JSON object (vocab.json / encoder.json); merges:
  // merges.txt / vocab.bpe (a "#version" first line, then "a b" per line,
  // in rank order). attn::Error naming the file on anything malformed.
  static ByteLevelBPE from_files(const std::string& vocab_path, const std::string& merges_path);
  // A directory holding vocab.json + merges.txt, or encoder.json + vocab.bpe.
  static ByteLevelBPE from_directory(const std::string& dir);

  // The ids of `text`. With allow_special, the special tokens
  // (special_tokens(): "<|endoftext|>" when the vocabulary has it) found in
  // the text become their own ids; otherwise they are ordinary text.
  std::vector<int64_t> encode(std::string_view text, bool allow_special = false) const;
  // The bytes of the tokens, concatenated. attn::Error for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int64_t>& ids) const;
  // The bytes one token stands for.
  const std::string& token_bytes(int64_t id) const;

  // GPT-2's pre-tokenisation: the pieces of `text` (views into it).
  static std::vector<std::string_view> pretokenize(std::string_view text);

  int64_t vocab_size() const { return static_cast<int64_t>(bytes_.size()); }
  int64_t merges() const { return static_cast<int64_t>(merge_list_.size()); }
  // The id of a token given by its bytes, or -1.
  int64_t id_of(std::string_view bytes) const;
  const std::vector<std::string>& special_tokens() const { return special_; }
  // The id of "<|endoftext|>", or -1 when the vocabulary lacks it.
  int64_t eos_id() const { return id_of("<|endoftext|>"); }

  // Writes vocab.json and merges.txt (Hugging Face's names) into `dir`.
  void save(const std::string& dir) const;

 private:
  void encode_piece(std::string_view piece, std::vector<int64_t>& out,
                    std::unordered_map<std::string, std::vector<int32_t>>& cache) const;

  std::vector<std::string> bytes_;                  // id -> the token's bytes
  std::unordered_map<std::string, int32_t> ids_;    // bytes -> id
  int32_t byte_id_[256] = {};                       // single byte -> id
  struct Merge {
    int32_t rank, id;
  };
  std::unordered_map<uint64_t, Merge> ranks_;       // (left id, right id) -> rank, merged id
  std::vector<std::pair<int32_t, int32_t>> merge_list_;
  std::vector<std::string> special_;
};

}  // namespace attn::text
