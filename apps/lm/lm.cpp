// lm: a small causal Transformer language model over characters (Unicode
// code points), trained on the Book of Genesis (King James Version, public
// domain, embedded; see lm/data/README.md) or on a UTF-8 file (--data FILE),
// with the last tenth held out; reports validation bits per character beside
// a unigram model's and samples text from a prompt. The vocabulary is saved
// in the checkpoint's metadata.
#include <attn/attn.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string_view>

#include "common/app.h"
#include "common/png.h"
#include "common/text_file.h"
#include "lm/lm_gpt2.h"

namespace attn::apps {

std::string_view lm_text();  // the embedded text (generated source)

namespace {

constexpr int64_t kContext = 96, kDim = 96, kHeads = 4, kLayers = 3, kFF = 384;

// The text as code points: the vocabulary (the characters of the text, in
// code point order, or a checkpoint's), training (the first nine tenths) and
// validation (the last tenth) ids, and a unigram model's bits per character
// on the validation part.
struct Corpus {
  std::string name;  // "Genesis (KJV)" or the file
  std::vector<char32_t> itos;
  std::map<char32_t, int64_t> stoi;
  std::vector<int64_t> train, valid;
  double unigram_bits = 0;  // cross-entropy of the training unigram model on validation
  Corpus(const std::string& text, std::string source, const std::vector<char32_t>* vocab) : name(std::move(source)) {
    const std::vector<char32_t> cps = decode_utf8(text);
    ATTN_CHECK(static_cast<int64_t>(cps.size()) >= 20 * (kContext + 1), "lm: ", name, " has ", cps.size(),
               " characters; the character model needs at least ", 20 * (kContext + 1),
               " (windows of ", kContext + 1, " for training and for the held-out tenth)");
    if (vocab) {
      itos = *vocab;
    } else {
      std::map<char32_t, bool> seen;
      for (char32_t c : cps) seen[c] = true;
      for (auto& [c, _] : seen) itos.push_back(c);
    }
    for (size_t i = 0; i < itos.size(); ++i) stoi[itos[i]] = static_cast<int64_t>(i);
    const size_t split = cps.size() * 9 / 10;
    std::vector<double> freq(itos.size(), 1.0);  // add-one
    int64_t line = 1;
    for (size_t i = 0; i < cps.size(); ++i) {
      auto it = stoi.find(cps[i]);
      ATTN_CHECK(it != stoi.end(), "lm: ", name, " line ", line, ": the character ", encode_utf8(cps[i]),
                 " is not in the checkpoint's vocabulary (", itos.size(), " characters)");
      if (cps[i] == '\n') ++line;
      (i < split ? train : valid).push_back(it->second);
      if (i < split) freq[it->second] += 1;
    }
    double total = 0;
    for (double f : freq) total += f;
    for (int64_t id : valid) unigram_bits -= std::log2(freq[id] / total);
    unigram_bits /= static_cast<double>(valid.size());
  }
  int64_t vocab() const { return static_cast<int64_t>(itos.size()); }
};

// The corpus of a run: --data FILE or the embedded Genesis; with the
// vocabulary of a checkpoint when evaluating one.
Corpus make_corpus(const AppOptions& o, const std::vector<char32_t>* vocab) {
  if (o.data.empty()) return Corpus(std::string(lm_text()), "Genesis (KJV)", vocab);
  return Corpus(read_utf8_file(o.data, "lm"), o.data, vocab);
}

struct CharTransformer : nn::Module {
  nn::Embedding tok;
  nn::Embedding pos{nn::EmbeddingOptions(kContext, kDim)};
  nn::TransformerEncoder blocks{nn::TransformerEncoderOptions(
      nn::TransformerEncoderLayerOptions(kDim, kHeads).dim_feedforward(kFF).dropout(0.1).batch_first(true).norm_first(true)
          .activation("gelu"),
      kLayers)};
  nn::LayerNorm norm{nn::LayerNormOptions({kDim})};
  nn::Linear head;
  explicit CharTransformer(int64_t vocab)
      : tok(nn::EmbeddingOptions(vocab, kDim)), head(nn::LinearOptions(kDim, vocab)) {
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
double validation_bits(const CharTransformer& m, const Corpus& corpus, int64_t max_windows) {
  NoGradGuard ng;
  const auto& v = corpus.valid;
  double nats = 0;
  int64_t count = 0;
  std::vector<int64_t> xs, ys;
  for (size_t s = 0; s + kContext + 1 <= v.size() && count < max_windows * kContext; s += kContext) {
    xs.assign(v.begin() + s, v.begin() + s + kContext);
    ys.assign(v.begin() + s + 1, v.begin() + s + kContext + 1);
    Tensor logits = m.forward(from_vector(xs, {1, kContext})).reshape({kContext, corpus.vocab()});
    nats += F::cross_entropy(logits, from_vector(ys), F::CrossEntropyFuncOptions().reduction(Reduction::Sum))
                .item<float>();
    count += kContext;
  }
  return count ? nats / static_cast<double>(count) / std::log(2.0) : 0.0;
}

// Up to n characters after `prompt` (its characters outside the vocabulary
// are skipped), sampled at `temperature`.
std::string sample(const CharTransformer& m, const Corpus& corpus, const std::vector<char32_t>& prompt, int64_t n,
                   double temperature, uint64_t seed) {
  NoGradGuard ng;
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids;
  std::vector<char32_t> out;
  for (char32_t c : prompt)
    if (corpus.stoi.count(c)) ids.push_back(corpus.stoi.at(c)), out.push_back(c);
  if (ids.empty()) ids.push_back(0), out.push_back(corpus.itos[0]);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(ids.size()) - kContext);
    std::vector<int64_t> ctx(ids.begin() + start, ids.end());
    Tensor logits = m.forward(from_vector(ctx, {1, static_cast<int64_t>(ctx.size())})).select(1, static_cast<int64_t>(ctx.size()) - 1);
    Tensor p = F::softmax(logits.reshape({-1}) / temperature, 0).to(kFloat64).contiguous();
    std::uniform_real_distribution<double> u(0.0, 1.0);
    double r = u(rng), acc = 0;
    int64_t next = corpus.vocab() - 1;
    for (int64_t k = 0; k < corpus.vocab(); ++k) {
      acc += p.data<double>()[k];
      if (r < acc) {
        next = k;
        break;
      }
    }
    ids.push_back(next);
    out.push_back(corpus.itos[static_cast<size_t>(next)]);
  }
  return encode_utf8(out);
}

const Defaults kDefaults{600, 32, 2e-3};

AppResult finish(const CharTransformer& m, const Corpus& corpus, const AppOptions& o, double seconds) {
  AppResult r;
  r.metric = "validation bits/char";
  r.percent = false;
  r.value = validation_bits(m, corpus, std::max<int64_t>(1, o.eval_examples / 5));
  r.chance = corpus.unigram_bits;
  r.baseline_name = "unigram model";
  r.seconds = seconds;
  if (!o.quiet) {
    if (o.show > 0) {
      // Genesis: "And God said"; a user's text: its first 12 characters.
      std::vector<char32_t> prompt = decode_utf8(o.data.empty() ? std::string("And God said") : std::string());
      if (prompt.empty())
        for (size_t i = 0; i < 12 && i < corpus.train.size(); ++i) prompt.push_back(corpus.itos[corpus.train[i]]);
      std::printf("sample (temperature 0.8):\n%s\n", sample(m, corpus, prompt, 300, 0.8, o.seed).c_str());
    }
    std::printf("lm: validation %.3f bits/char (unigram model %.3f, uniform %.3f) on %lld held-out characters of %s",
                r.value, r.chance, std::log2(static_cast<double>(corpus.vocab())),
                static_cast<long long>(std::max<int64_t>(1, o.eval_examples / 5) * kContext), corpus.name.c_str());
    if (seconds > 0) std::printf("; trained in %.1f s, checkpoint %s", seconds, o.checkpoint.c_str());
    std::printf("\n");
  }
  return r;
}

// --arch gpt2 goes to lm_gpt2.cpp; --tokenizer belongs to it.
bool gpt2_arch(const AppOptions& o) {
  ATTN_CHECK(o.arch.empty() || o.arch == "char" || o.arch == "gpt2", "lm: --arch must be char or gpt2, got \"", o.arch,
             "\"");
  ATTN_CHECK(o.arch == "gpt2" || o.tokenizer.empty(), "lm: --tokenizer applies to --arch gpt2");
  return o.arch == "gpt2";
}

AppResult train(const AppOptions& in) {
  if (gpt2_arch(in)) return train_gpt2(in);
  AppOptions o = with_defaults(in, "lm", kDefaults);
  const Corpus corpus = make_corpus(o, nullptr);
  manual_seed(o.seed);
  CharTransformer m(corpus.vocab());
  std::mt19937_64 rng(o.seed);
  // The vocabulary travels with the checkpoint (its characters in id order),
  // so that eval and sampling map ids back to the same characters.
  const double secs = train_loop(m, o, "lm", [&](int64_t) {
    auto [x, y] = windows(corpus.train, rng, o.batch);
    return F::cross_entropy(m.forward(x).reshape({-1, corpus.vocab()}), y.reshape({-1}));
  }, {{"model", "character Transformer"}, {"text", corpus.name}, {"vocab", encode_utf8(corpus.itos)}});
  return finish(m, corpus, o, secs);
}

// A checkpoint of the character model with its text: the file it was
// trained on (unless --data names another) read with the checkpoint's
// vocabulary.
struct Loaded {
  AppOptions o;
  Corpus corpus;
  CharTransformer model;
  static io::Metadata metadata(AppOptions& o) {
    const io::Metadata meta = checkpoint_metadata(o, "lm");
    if (o.data.empty() && meta.count("text") && meta.at("text") != "Genesis (KJV)") o.data = meta.at("text");
    return meta;
  }
  static std::vector<char32_t> vocab(const io::Metadata& meta) {
    return meta.count("vocab") ? decode_utf8(meta.at("vocab")) : std::vector<char32_t>();
  }
  Loaded(AppOptions opts, const io::Metadata& meta, const std::vector<char32_t>& v)
      : o(std::move(opts)), corpus(make_corpus(o, meta.count("vocab") ? &v : nullptr)), model(corpus.vocab()) {
    load_app(model, o, "lm");
  }
};

std::unique_ptr<Loaded> load(const AppOptions& in) {
  AppOptions o = with_defaults(in, "lm", kDefaults);
  const io::Metadata meta = Loaded::metadata(o);
  return std::make_unique<Loaded>(o, meta, Loaded::vocab(meta));
}

AppResult eval(const AppOptions& in) {
  if (gpt2_arch(in)) return eval_gpt2(in);
  auto l = load(in);
  return finish(l->model, l->corpus, l->o, 0);
}

// viz: the causal self-attention of each layer (mean of the heads) over 40
// characters of the held-out text, starting at window `o.index`.
std::string viz(const AppOptions& in, const std::string& out) {
  ATTN_CHECK(!gpt2_arch(in), "lm: viz draws the character model (--arch char)");
  auto l = load(in);
  const AppOptions& o = l->o;
  const Corpus& corpus = l->corpus;
  const CharTransformer& m = l->model;
  NoGradGuard ng;
  constexpr int64_t kShown = 40;
  const size_t start = static_cast<size_t>(o.index) * kShown;
  ATTN_CHECK(start + kShown <= corpus.valid.size(), "lm: viz --index ", o.index, " is past the held-out text (",
             corpus.valid.size() / kShown, " windows of ", kShown, ")");
  std::vector<int64_t> ids(corpus.valid.begin() + start, corpus.valid.begin() + start + kShown);
  std::vector<std::string> labels;
  for (int64_t id : ids) {
    const char32_t c = corpus.itos[id];
    labels.push_back(c == '\n' ? "/" : c == ' ' ? "_" : encode_utf8(c));
  }
  Tensor x = m.tok.forward(from_vector(ids, {1, kShown})) + m.pos.forward(arange(kShown)).unsqueeze(0);
  std::string wrote;
  for (size_t l = 0; l < m.blocks.layers.size(); ++l) {
    const nn::TransformerEncoderLayer& layer = m.blocks.layer(l);
    Tensor h = layer.norm1.forward(x);  // pre-norm blocks
    Tensor w = std::get<1>(layer.self_attn.forward(h, h, h, {}, true, {}, true, /*is_causal=*/true));
    const std::string path = out + "_layer" + std::to_string(l) + ".png";
    write_png(path, heatmap(w.select(0, 0), labels, labels,
                            "lm: causal self-attention, layer " + std::to_string(l) + " (mean of heads)", 12,
                            "keys (earlier characters, _ space, / newline)", "queries"));
    wrote += (wrote.empty() ? "" : ", ") + path;
    x = layer.forward(x, {}, {}, true);
  }
  return "wrote " + wrote;
}

}  // namespace

App lm_app() {
  return {"lm", "a character-level causal Transformer on the Book of Genesis (KJV), with sampling",
          "validation below 2.5 bits/char (unigram model ~4.4) in under 2 minutes", {"transformer"}, train, eval, viz};
}

}  // namespace attn::apps
