// The language-model commands of the attn tool: `attn generate` (text from a
// GPT-2 directory), `attn tokenize` (GPT-2's tokenizer on standard input) and
// `attn run gpt2|bert` (batch inference from and to safetensors files).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace attn::tools {

struct GenerateOptions {
  std::string model;      // a Hugging Face GPT-2 directory
  std::string tokenizer;  // the tokenizer's directory; empty: the model's
  std::string prompt;
  int64_t max_new_tokens = 50;
  bool greedy = false;
  std::optional<double> temperature, top_p;
  std::optional<int64_t> top_k;
  uint64_t seed = 0;
};

// Streams the prompt and the generated text to standard output, then the
// prefill and decode speeds (tokens/s) to standard error. Greedy unless a
// sampling option is given. Stops at max_new_tokens, at <|endoftext|> or
// when the context (n_positions) is full.
int generate(const GenerateOptions& options);

// Standard input to standard output: the ids, separated by single spaces on
// one line; with decode, ids (separated by white space) to their text.
int tokenize(const std::string& tokenizer_dir, bool decode, bool special);

// `attn run gpt2|bert`: input_ids (and attention_mask, token_type_ids,
// position_ids) from a safetensors file; GPT-2's logits or BERT's
// last_hidden_state, pooler_output and logits to another.
int run_language_model(const std::string& arch, const std::string& weights, const std::string& in,
                       const std::string& out);

}  // namespace attn::tools
