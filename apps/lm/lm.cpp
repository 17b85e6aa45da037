// lm: a small causal Transformer language model over characters, trained on
// the Book of Genesis (King James Version, public domain, embedded; see
// lm/data/README.md) with the last tenth held out; reports validation bits
// per character beside a unigram model's and samples text from a prompt.
#include <attn/attn.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string_view>

#include "common/app.h"
#include "lm/lm_gpt2.h"

namespace attn::apps {

std::string_view lm_text();  // the embedded text (generated source)

namespace {

constexpr int64_t kContext = 96, kDim = 96, kHeads = 4, kLayers = 3, kFF = 384;

struct Corpus {
  std::vector<char> itos;
  std::map<char, int64_t> stoi;
  std::vector<int64_t> train, valid;
  double unigram_bits = 0;  // cross-entropy of the training unigram model on validation
  Corpus() {
    const std::string_view text = lm_text();
    std::vector<int64_t> counts(256, 0);
    for (unsigned char c : text) ++counts[c];
    for (int c = 0; c < 256; ++c)
      if (counts[c]) stoi[static_cast<char>(c)] = static_cast<int64_t>(itos.size()), itos.push_back(static_cast<char>(c));
    const size_t split = text.size() * 9 / 10;
    std::vector<double> freq(itos.size(), 1.0);  // add-one
    for (size_t i = 0; i < text.size(); ++i) {
      const int64_t id = stoi.at(text[i]);
      (i < split ? train : valid).push_back(id);
      if (i < split) freq[id] += 1;
    }
    double total = 0;
    for (double f : freq) total += f;
    for (int64_t id : valid) unigram_bits -= std::log2(freq[id] / total);
    unigram_bits /= static_cast<double>(valid.size());
  }
  int64_t vocab() const { return static_cast<int64_t>(itos.size()); }
};
const Corpus& corpus() {
  static const Corpus c;
  return c;
}

struct CharTransformer : nn::Module {
  nn::Embedding tok{nn::EmbeddingOptions(corpus().vocab(), kDim)};
  nn::Embedding pos{nn::EmbeddingOptions(kContext, kDim)};
  nn::TransformerEncoder blocks{nn::TransformerEncoderOptions(
      nn::TransformerEncoderLayerOptions(kDim, kHeads).dim_feedforward(kFF).dropout(0.1).batch_first(true).norm_first(true)
          .activation("gelu"),
      kLayers)};
  nn::LayerNorm norm{nn::LayerNormOptions({kDim})};
  nn::Linear head{nn::LinearOptions(kDim, corpus().vocab())};
  CharTransformer() {
    register_module("tok", tok);
    register_module("pos", pos);
    register_module("blocks", blocks);
    register_module("norm", norm);
    register_module("head", head);
  }
  // ids (B, T <= kContext) -> logits (B, T, V); position t sees ids[..t] only.
  Tensor forward(const Tensor& ids) const {
    const int64_t T = ids.size(1);
    Tensor x = tok.forward(ids) + pos.forward(arange(T)).unsqueeze(0);
    return head.forward(norm.forward(blocks.forward(x, {}, {}, /*is_causal=*/true)));
  }
};

// (inputs, targets) (B, kContext) windows from `data`.
std::pair<Tensor, Tensor> windows(const std::vector<int64_t>& data, std::mt19937_64& rng, int64_t B) {
  std::vector<int64_t> x, y;
  for (int64_t b = 0; b < B; ++b) {
    const size_t s = rng() % (data.size() - kContext - 1);
    x.insert(x.end(), data.begin() + s, data.begin() + s + kContext);
    y.insert(y.end(), data.begin() + s + 1, data.begin() + s + kContext + 1);
  }
  return {from_vector(x, {B, kContext}), from_vector(y, {B, kContext})};
}

// Mean validation cross-entropy in bits over consecutive windows (each
// character predicted from the ones before it in its window).
double validation_bits(const CharTransformer& m, int64_t max_windows) {
  NoGradGuard ng;
  const auto& v = corpus().valid;
  double nats = 0;
  int64_t count = 0;
  std::vector<int64_t> xs, ys;
  for (size_t s = 0; s + kContext + 1 <= v.size() && count < max_windows * kContext; s += kContext) {
    xs.assign(v.begin() + s, v.begin() + s + kContext);
    ys.assign(v.begin() + s + 1, v.begin() + s + kContext + 1);
    Tensor logits = m.forward(from_vector(xs, {1, kContext})).reshape({kContext, corpus().vocab()});
    nats += F::cross_entropy(logits, from_vector(ys), F::CrossEntropyFuncOptions().reduction(Reduction::Sum))
                .item<float>();
    count += kContext;
  }
  return count ? nats / static_cast<double>(count) / std::log(2.0) : 0.0;
}

std::string sample(const CharTransformer& m, const std::string& prompt, int64_t n, double temperature, uint64_t seed) {
  NoGradGuard ng;
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids;
  for (char c : prompt) ids.push_back(corpus().stoi.count(c) ? corpus().stoi.at(c) : 0);
  std::string out = prompt;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(ids.size()) - kContext);
    std::vector<int64_t> ctx(ids.begin() + start, ids.end());
    Tensor logits = m.forward(from_vector(ctx, {1, static_cast<int64_t>(ctx.size())})).select(1, static_cast<int64_t>(ctx.size()) - 1);
    Tensor p = F::softmax(logits.reshape({-1}) / temperature, 0).to(kFloat64).contiguous();
    std::uniform_real_distribution<double> u(0.0, 1.0);
    double r = u(rng), acc = 0;
    int64_t next = corpus().vocab() - 1;
    for (int64_t k = 0; k < corpus().vocab(); ++k) {
      acc += p.data<double>()[k];
      if (r < acc) {
        next = k;
        break;
      }
    }
    ids.push_back(next);
    out.push_back(corpus().itos[static_cast<size_t>(next)]);
  }
  return out;
}

const Defaults kDefaults{600, 32, 2e-3};

AppResult finish(const CharTransformer& m, const AppOptions& o, double seconds) {
  AppResult r;
  r.metric = "validation bits/char";
  r.percent = false;
  r.value = validation_bits(m, std::max<int64_t>(1, o.eval_examples / 5));
  r.chance = corpus().unigram_bits;
  r.baseline_name = "unigram model";
  r.seconds = seconds;
  if (!o.quiet) {
    if (o.show > 0) std::printf("sample (temperature 0.8):\n%s\n", sample(m, "And God said", 300, 0.8, o.seed).c_str());
    std::printf("lm: validation %.3f bits/char (unigram model %.3f, uniform %.3f) on %lld held-out characters",
                r.value, r.chance, std::log2(static_cast<double>(corpus().vocab())),
                static_cast<long long>(std::max<int64_t>(1, o.eval_examples / 5) * kContext));
    if (seconds > 0) std::printf("; trained in %.1f s, checkpoint %s", seconds, o.checkpoint.c_str());
    std::printf("\n");
  }
  return r;
}

// --arch gpt2 goes to lm_gpt2.cpp; --data and --tokenizer belong to it.
bool gpt2_arch(const AppOptions& o) {
  ATTN_CHECK(o.arch.empty() || o.arch == "char" || o.arch == "gpt2", "lm: --arch must be char or gpt2, got \"", o.arch,
             "\"");
  ATTN_CHECK(o.arch == "gpt2" || (o.data.empty() && o.tokenizer.empty()),
             "lm: --data and --tokenizer apply to --arch gpt2 (the character model trains on the embedded text)");
  return o.arch == "gpt2";
}

AppResult train(const AppOptions& in) {
  if (gpt2_arch(in)) return train_gpt2(in);
  AppOptions o = with_defaults(in, "lm", kDefaults);
  manual_seed(o.seed);
  CharTransformer m;
  std::mt19937_64 rng(o.seed);
  const double secs = train_loop(m, o, "lm", [&](int64_t) {
    auto [x, y] = windows(corpus().train, rng, o.batch);
    return F::cross_entropy(m.forward(x).reshape({-1, corpus().vocab()}), y.reshape({-1}));
  }, {{"model", "character Transformer"}, {"text", "Genesis (KJV)"}});
  return finish(m, o, secs);
}

AppResult eval(const AppOptions& in) {
  if (gpt2_arch(in)) return eval_gpt2(in);
  AppOptions o = with_defaults(in, "lm", kDefaults);
  CharTransformer m;
  load_app(m, o, "lm");
  return finish(m, o, 0);
}

}  // namespace

App lm_app() {
  return {"lm", "a character-level causal Transformer on the Book of Genesis (KJV), with sampling",
          "validation below 2.5 bits/char (unigram model ~4.4) in under 2 minutes", {"transformer"}, train, eval};
}

}  // namespace attn::apps
