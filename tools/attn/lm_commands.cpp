// The language-model commands of the attn tool (see lm_commands.h).
#include "lm_commands.h"

#include <attn/attn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <numeric>
#include <random>
#include <sstream>

namespace attn::tools {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The next token from the last position's logits (vocab): greedy, or sampled
// after temperature, top-k and top-p (nucleus) filtering, as Hugging Face's
// generate applies them.
int64_t next_token(const Tensor& logits, const GenerateOptions& o, std::mt19937_64& rng) {
  const Tensor l = logits.to(kFloat32).contiguous();
  const float* p = l.data<float>();
  const int64_t V = l.numel();
  const bool sample = !o.greedy && (o.temperature || o.top_k || o.top_p);
  if (!sample) return static_cast<int64_t>(std::max_element(p, p + V) - p);
  const double temp = o.temperature.value_or(1.0);
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [p](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  int64_t keep = o.top_k && *o.top_k > 0 ? std::min<int64_t>(*o.top_k, V) : V;
  std::vector<double> prob(static_cast<size_t>(keep));
  const double top = p[order[0]] / temp;
  double z = 0;
  for (int64_t i = 0; i < keep; ++i) z += prob[i] = std::exp(p[order[i]] / temp - top);
  if (o.top_p && *o.top_p < 1.0) {
    double acc = 0;
    int64_t n = 0;
    while (n < keep && acc < *o.top_p * z) acc += prob[n++];
    keep = std::max<int64_t>(n, 1);
    z = std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
  }
  double r = std::uniform_real_distribution<double>(0.0, z)(rng);
  for (int64_t i = 0; i < keep; ++i) {
    r -= prob[i];
    if (r <= 0) return order[i];
  }
  return order[keep - 1];
}

void check_sampling(const GenerateOptions& o) {
  if (o.greedy && (o.temperature || o.top_k || o.top_p))
    throw Error("generate: --greedy and sampling options (--temperature, --top-k, --top-p) exclude each other");
  if (o.temperature && !(*o.temperature > 0)) throw Error("generate: --temperature must be positive");
  if (o.top_p && !(*o.top_p > 0 && *o.top_p <= 1)) throw Error("generate: --top-p must be in (0, 1]");
  if (o.top_k && *o.top_k < 0) throw Error("generate: --top-k must be >= 0 (0: off)");
  if (o.max_new_tokens < 0) throw Error("generate: --max-new-tokens must be >= 0");
}

}  // namespace

int generate(const GenerateOptions& o) {
  check_sampling(o);
  const auto t_load = Clock::now();
  auto model = models::GPT2LMHeadModel::from_pretrained(o.model);
  model->eval();
  const text::ByteLevelBPE tok = text::ByteLevelBPE::from_directory(o.tokenizer.empty() ? o.model : o.tokenizer);
  const models::GPT2Config& c = model->config();
  if (tok.vocab_size() > c.vocab_size)
    throw Error("generate: the tokenizer has " + std::to_string(tok.vocab_size()) +
                " tokens, the model's vocab_size is " + std::to_string(c.vocab_size));
  std::vector<int64_t> ids = tok.encode(o.prompt, /*allow_special=*/true);
  if (ids.empty()) ids.push_back(c.bos_token_id);  // an empty prompt starts from <|endoftext|>, as GPT-2 samples
  const int64_t P = static_cast<int64_t>(ids.size());
  if (P > c.n_positions)
    throw Error("generate: the prompt is " + std::to_string(P) + " tokens, longer than the model's n_positions " +
                std::to_string(c.n_positions));
  const double load_s = since(t_load);
  std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
  std::fflush(stdout);

  NoGradGuard ng;
  std::mt19937_64 rng(o.seed);
  models::GPT2Cache cache;
  const auto t_prefill = Clock::now();
  Tensor logits = model->forward(from_vector(ids, {1, P}), {}, {}, &cache);
  const double prefill_s = since(t_prefill);
  int64_t generated = 0;
  const char* stop = nullptr;
  const auto t_decode = Clock::now();
  while (true) {
    if (generated >= o.max_new_tokens) break;
    const int64_t next = next_token(logits.select(1, logits.size(1) - 1).reshape({-1}), o, rng);
    ++generated;
    if (next == c.eos_token_id && next < tok.vocab_size() && tok.token_bytes(next) == "<|endoftext|>") {
      stop = "<|endoftext|>";
      break;
    }
    const std::string& piece = next < tok.vocab_size() ? tok.token_bytes(next) : std::string();
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    if (cache.length() >= c.n_positions) {
      stop = "the context is full";
      break;
    }
    if (generated >= o.max_new_tokens) break;
    logits = model->forward(full({1, 1}, static_cast<double>(next), kInt64), {}, {}, &cache);
  }
  const double decode_s = since(t_decode);
  std::printf("\n");
  std::fflush(stdout);
  // The decode rate counts the steps that ran the model (the first token comes from the prefill).
  const int64_t steps = std::max<int64_t>(generated - 1, 0);
  std::fprintf(stderr,
               "generate: loaded in %.2f s; prefill %lld tokens in %.1f ms (%.1f tokens/s); decode %lld tokens in "
               "%.1f ms (%.1f tokens/s)%s%s\n",
               load_s, static_cast<long long>(P), prefill_s * 1e3, static_cast<double>(P) / prefill_s,
               static_cast<long long>(generated), decode_s * 1e3,
               steps > 0 ? static_cast<double>(steps) / decode_s : 0.0, stop ? "; stopped: " : "", stop ? stop : "");
  return 0;
}

int tokenize(const std::string& dir, bool decode, bool special) {
  const text::ByteLevelBPE tok = text::ByteLevelBPE::from_directory(dir);
  std::ostringstream ss;
  ss << std::cin.rdbuf();
  const std::string input = ss.str();
  if (!decode) {
    const std::vector<int64_t> ids = tok.encode(input, special);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) line += ' ';
      line += std::to_string(ids[i]);
    }
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
    return 0;
  }
  std::vector<int64_t> ids;
  std::istringstream in(input);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size()) throw Error("tokenize --decode: \"" + word + "\" is not a token id");
    if (v < 0 || v >= tok.vocab_size())
      throw Error("tokenize --decode: token id " + word + " is outside [0, " + std::to_string(tok.vocab_size()) + ")");
    ids.push_back(v);
  }
  const std::string text = tok.decode(ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

int run_language_model(const std::string& arch, const std::string& weights, const std::string& in,
                       const std::string& out) {
  io::SafetensorsFile f = io::read_safetensors(in);
  auto get = [&](const char* name, bool required) {
    auto it = f.tensors.find(name);
    if (it == f.tensors.end()) {
      if (required) throw Error("run: " + in + " holds no tensor named " + name);
      return Tensor();
    }
    if (it->second.dtype() != kInt64 && std::string(name) != "attention_mask")
      throw Error("run: " + in + ": " + name + " must be int64, got " + dtype_name(it->second.dtype()));
    return it->second;
  };
  Tensor ids = get("input_ids", true), mask = get("attention_mask", false), pos = get("position_ids", false);
  if (ids.dim() != 2) throw Error("run: " + in + ": input_ids must be (B, T), got " + shape_str(ids.shape()));
  NoGradGuard ng;
  io::TensorMap result;
  if (arch == "gpt2") {
    if (f.tensors.count("token_type_ids")) throw Error("run: GPT-2 takes no token_type_ids (" + in + " holds them)");
    auto model = models::GPT2LMHeadModel::from_pretrained(weights);
    model->eval();
    result["logits"] = model->forward(ids, mask, pos);
  } else {
    auto model = models::BertForMaskedLM::from_pretrained(weights);
    model->eval();
    models::BertOutputs o = model->forward(ids, mask, get("token_type_ids", false), pos);
    result["last_hidden_state"] = o.last_hidden_state;
    if (o.pooler_output.defined()) result["pooler_output"] = o.pooler_output;
    if (o.logits.defined()) result["logits"] = o.logits;
  }
  io::save_safetensors(out, result, {{"arch", arch}, {"weights", weights}});
  std::string list;
  for (const auto& [k, t] : result) list += (list.empty() ? "" : ", ") + k + " " + shape_str(t.shape());
  std::printf("%s: %s written to %s\n", in.c_str(), list.c_str(), out.c_str());
  return 0;
}

}  // namespace attn::tools
