// tag: the seed's BiLSTM-attention classifier (BiLSTMAttentionNER: embedding,
// bidirectional LSTM, a learned score per step, softmax over time, the
// weighted sum, a linear classifier) on a synthetic labelling task: a
// sentence of filler words holds two entity words of different types and
// the trigger word "at"; the label is the type of the entity right after
// "at". The filler is padding-aware (packed sequences, masked pooling).
// --data FILE trains it on the user's sentences instead (label TAB sentence).
#include <attn/attn.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <sstream>

#include "common/app.h"
#include "common/png.h"
#include "common/text_file.h"

namespace attn::apps {

namespace {

constexpr int64_t kTypes = 4, kPerType = 3, kFiller = 40;
constexpr int64_t kPad = 0, kAt = 1, kFirstFiller = 2, kFirstEntity = kFirstFiller + kFiller;
constexpr int64_t kVocab = kFirstEntity + kTypes * kPerType, kMaxLen = 20;

struct Example {
  std::vector<int64_t> ids;
  int64_t label;
};

Example draw(std::mt19937_64& rng) {
  const int64_t len = 6 + static_cast<int64_t>(rng() % (kMaxLen - 5));
  Example e;
  for (int64_t i = 0; i < len; ++i) e.ids.push_back(kFirstFiller + static_cast<int64_t>(rng() % kFiller));
  const int64_t t1 = static_cast<int64_t>(rng() % kTypes), t2 = (t1 + 1 + static_cast<int64_t>(rng() % (kTypes - 1))) % kTypes;
  auto entity = [&](int64_t type) { return kFirstEntity + type * kPerType + static_cast<int64_t>(rng() % kPerType); };
  // "at" then the labelled entity somewhere, the distractor elsewhere.
  const int64_t p = static_cast<int64_t>(rng() % static_cast<uint64_t>(len - 1));
  e.ids[p] = kAt;
  e.ids[p + 1] = entity(t1);
  int64_t q;
  do q = static_cast<int64_t>(rng() % static_cast<uint64_t>(len)); while (q == p || q == p + 1);
  e.ids[q] = entity(t2);
  e.label = t1;
  return e;
}

struct Batch {
  Tensor ids, lengths, pad, labels;
};

Batch make_batch(const std::vector<Example>& ex, int64_t max_len = kMaxLen) {
  std::vector<int64_t> flat, lens, labels;
  for (const auto& e : ex) {
    for (int64_t i = 0; i < max_len; ++i) flat.push_back(i < static_cast<int64_t>(e.ids.size()) ? e.ids[i] : kPad);
    lens.push_back(static_cast<int64_t>(e.ids.size()));
    labels.push_back(e.label);
  }
  const auto B = static_cast<int64_t>(ex.size());
  Batch b;
  b.ids = from_vector(flat, {B, max_len});
  b.lengths = from_vector(lens);
  b.pad = eq(b.ids, full({}, kPad, kInt64));
  b.labels = from_vector(labels);
  return b;
}

// BiLSTMAttentionNER, with the pooling over the real steps only.
struct Tagger : nn::Module {
  nn::Embedding embed;
  nn::LSTM bilstm{nn::LSTMOptions(32, 48).bidirectional(true).batch_first(true)};
  nn::AttentionPooling attention{96};
  nn::Linear classifier;
  int64_t max_len;
  explicit Tagger(const std::string& /*variant*/ = "bilstm") : Tagger(kVocab, kTypes, kMaxLen) {}
  Tagger(int64_t vocab, int64_t classes, int64_t max_len_)
      : embed(nn::EmbeddingOptions(vocab, 32).padding_idx(kPad)), classifier(nn::LinearOptions(96, classes)),
        max_len(max_len_) {
    register_module("embed", embed);
    register_module("bilstm", bilstm);
    register_module("attention", attention);
    register_module("classifier", classifier);
  }
  // (logits (B, types), weights (B, T))
  std::tuple<Tensor, Tensor> forward(const Batch& b) const {
    auto packed = nn::pack_padded_sequence(embed.forward(b.ids), b.lengths, true, false);
    auto [out, state] = bilstm.forward(packed);
    (void)state;
    Tensor outputs = std::get<0>(nn::pad_packed_sequence(out, true, 0.0, max_len));
    auto [pooled, w] = attention.forward(outputs, b.pad);
    return {classifier.forward(pooled), w};
  }
};

const Defaults kDefaults{400, 64, 3e-3};

AppResult evaluate(const Tagger& m, const AppOptions& o) {
  NoGradGuard ng;
  std::mt19937_64 rng(o.seed * 1000003 + 99);  // held out: its own stream
  std::vector<Example> ex;
  for (int64_t i = 0; i < o.eval_examples; ++i) ex.push_back(draw(rng));
  AppResult r;
  r.chance = 1.0 / kTypes;
  if (ex.empty()) return r;
  Batch b = make_batch(ex);
  auto [logits, w] = m.forward(b);
  Tensor pred = argmax(logits, 1);
  r.value = eq(pred, b.labels).to(kFloat64).mean().item<double>();
  const char* types[] = {"PERSON", "PLACE", "DATE", "ORG"};
  for (int64_t i = 0; i < std::min<int64_t>(o.show, b.ids.size(0)) && !o.quiet; ++i) {
    std::string s;
    int64_t peak = argmax(w.select(0, i), 0).item<int64_t>();
    for (int64_t t = 0; t < static_cast<int64_t>(ex[i].ids.size()); ++t) {
      const int64_t id = ex[i].ids[t];
      std::string word = id == kAt ? "at" : id >= kFirstEntity ? types[(id - kFirstEntity) / kPerType] : "w";
      if (t == peak) word = "[" + word + "]";
      s.append(t ? " " : "").append(word);
    }
    std::printf("  %-70s -> %s\n", s.c_str(), types[pred.select(0, i).item<int64_t>()]);
  }
  return r;
}

// --data FILE: one sentence per line, "label TAB sentence" (whitespace
// tokens). A tenth of the lines, chosen by a hash of the line, is held out;
// the vocabulary (words of the training lines; 0 padding, 1 unknown) and the
// labels (of the whole file, in order of first appearance) are saved with the
// checkpoint. Sentences longer than kFileMaxLen tokens are cut.
constexpr int64_t kUnknown = 1, kFileMaxLen = 64;

struct LabelledFile {
  std::vector<std::string> words, labels;  // id order (words[0] padding, words[1] unknown)
  std::vector<Example> train, held_out;
  std::vector<std::vector<std::string>> held_out_text;
  int64_t max_len = 1;
};

bool held_out_line(const std::string& line) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : line) h = (h ^ c) * 1099511628211ull;
  return h % 10 == 0;
}

LabelledFile read_labelled(const std::string& path, const io::Metadata* meta) {
  const std::string text = read_utf8_file(path, "tag");
  LabelledFile f;
  std::map<std::string, int64_t> wid, lid;
  if (meta) {
    f.words = split_lines(meta->at("vocab"));
    f.labels = split_lines(meta->at("labels"));
    for (size_t i = 0; i < f.words.size(); ++i) wid[f.words[i]] = static_cast<int64_t>(i);
    for (size_t i = 0; i < f.labels.size(); ++i) lid[f.labels[i]] = static_cast<int64_t>(i);
  } else {
    f.words = {"<pad>", "<unk>"};
  }
  struct Line {
    int64_t no;
    std::string label;
    std::vector<std::string> tokens;
    bool held;
  };
  std::vector<Line> lines;
  int64_t no = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    ++no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const size_t tab = line.find('\t');
    ATTN_CHECK(tab != std::string::npos, "tag: ", path, " line ", no, ": expected \"label<TAB>sentence\", found no tab");
    Line l{no, line.substr(0, tab), {}, held_out_line(line)};
    ATTN_CHECK(l.label.find_first_not_of(' ') != std::string::npos, "tag: ", path, " line ", no, ": the label is empty");
    std::istringstream words(line.substr(tab + 1));
    for (std::string w; words >> w;) l.tokens.push_back(w);
    ATTN_CHECK(!l.tokens.empty(), "tag: ", path, " line ", no, ": the sentence after the tab is empty");
    if (static_cast<int64_t>(l.tokens.size()) > kFileMaxLen) l.tokens.resize(kFileMaxLen);
    lines.push_back(std::move(l));
  }
  ATTN_CHECK(!lines.empty(), "tag: ", path, " has no labelled lines");
  for (const Line& l : lines) {
    if (!lid.count(l.label)) {
      ATTN_CHECK(!meta, "tag: ", path, " line ", l.no, ": the label \"", l.label,
                 "\" is not one the checkpoint was trained on");
      lid[l.label] = static_cast<int64_t>(f.labels.size());
      f.labels.push_back(l.label);
    }
    if (!meta && !l.held)
      for (const auto& w : l.tokens)
        if (!wid.count(w)) wid[w] = static_cast<int64_t>(f.words.size()), f.words.push_back(w);
  }
  for (const Line& l : lines) {
    Example e;
    for (const auto& w : l.tokens) e.ids.push_back(wid.count(w) ? wid.at(w) : kUnknown);
    e.label = lid.at(l.label);
    f.max_len = std::max<int64_t>(f.max_len, static_cast<int64_t>(e.ids.size()));
    if (l.held) {
      f.held_out.push_back(std::move(e));
      f.held_out_text.push_back(l.tokens);
    } else {
      f.train.push_back(std::move(e));
    }
  }
  if (meta) f.max_len = std::max<int64_t>(f.max_len, 1);
  ATTN_CHECK(!f.train.empty() && !f.held_out.empty(), "tag: ", path, " has ", f.train.size(), " training and ",
             f.held_out.size(), " held-out lines; both must be non-empty (a tenth of the lines is held out)");
  return f;
}

AppResult evaluate_file(const Tagger& m, const LabelledFile& f, const AppOptions& o) {
  NoGradGuard ng;
  AppResult r;
  std::vector<int64_t> count(f.labels.size(), 0);
  for (const Example& e : f.held_out) ++count[e.label];
  r.chance = static_cast<double>(*std::max_element(count.begin(), count.end())) /
             static_cast<double>(f.held_out.size());
  r.baseline_name = "majority class";
  int64_t correct = 0;
  for (size_t s = 0; s < f.held_out.size(); s += 256) {
    std::vector<Example> ex(f.held_out.begin() + s, f.held_out.begin() + std::min(f.held_out.size(), s + 256));
    Batch b = make_batch(ex, f.max_len);
    auto [logits, w] = m.forward(b);
    Tensor pred = argmax(logits, 1).contiguous();
    for (size_t i = 0; i < ex.size(); ++i) {
      const int64_t p = pred.data<int64_t>()[i];
      correct += p == ex[i].label;
      if (static_cast<int64_t>(s + i) < o.show && !o.quiet) {
        const int64_t peak = argmax(w.select(0, static_cast<int64_t>(i)), 0).item<int64_t>();
        std::string text;
        const auto& words = f.held_out_text[s + i];
        for (size_t t = 0; t < words.size() && t < 16; ++t)
          text += (t ? " " : "") + (static_cast<int64_t>(t) == peak ? "[" + words[t] + "]" : words[t]);
        std::printf("  %-70s -> %s (true %s)\n", text.c_str(), f.labels[p].c_str(), f.labels[ex[i].label].c_str());
      }
    }
  }
  r.value = static_cast<double>(correct) / static_cast<double>(f.held_out.size());
  return r;
}

std::string file_held_out(const LabelledFile& f) {
  return std::to_string(f.held_out.size()) + " held-out lines (the attended word in [brackets])";
}

AppResult train_file(const AppOptions& in) {
  const AppOptions o = with_defaults(in, "tag", kDefaults);
  const LabelledFile f = read_labelled(o.data, nullptr);
  manual_seed(o.seed);
  Tagger m(static_cast<int64_t>(f.words.size()), static_cast<int64_t>(f.labels.size()), f.max_len);
  std::mt19937_64 rng(o.seed);
  const double secs = train_loop(m, o, "tag", [&](int64_t) {
    std::vector<Example> ex;
    for (int64_t i = 0; i < o.batch; ++i) ex.push_back(f.train[rng() % f.train.size()]);
    Batch b = make_batch(ex, f.max_len);
    return F::cross_entropy(std::get<0>(m.forward(b)), b.labels);
  }, {{"variant", "bilstm"}, {"data", o.data}, {"vocab", join_lines(f.words)}, {"labels", join_lines(f.labels)},
      {"max_len", std::to_string(f.max_len)}});
  AppResult e = evaluate_file(m, f, o);
  e.seconds = secs;
  report(o, "tag", e, file_held_out(f));
  return e;
}

AppResult eval_file(const AppOptions& in, const io::Metadata& meta) {
  AppOptions o = with_defaults(in, "tag", kDefaults);
  if (o.data.empty()) o.data = meta.at("data");
  ATTN_CHECK(meta.count("vocab") && meta.count("labels") && meta.count("max_len"), "tag: ", o.checkpoint,
             " lacks the vocabulary, labels or length of its training file");
  LabelledFile f = read_labelled(o.data, &meta);
  f.max_len = std::max<int64_t>(f.max_len, std::stoll(meta.at("max_len")));
  Tagger m(static_cast<int64_t>(f.words.size()), static_cast<int64_t>(f.labels.size()),
           std::stoll(meta.at("max_len")));
  load_app(m, o, "tag");
  m.max_len = f.max_len;
  AppResult e = evaluate_file(m, f, o);
  report(o, "tag", e, file_held_out(f));
  return e;
}

}  // namespace

App tag_app() {
  Recipe<Tagger> r;
  r.name = "tag";
  r.summary = "the seed's BiLSTM-attention classifier: the type of the entity after \"at\"";
  r.target = "accuracy >= 95% (chance 25%) in under 30 s";
  r.variants = {"bilstm"};
  r.defaults = kDefaults;
  r.loss = [](Tagger& m, std::mt19937_64& rng, const AppOptions& o) {
    std::vector<Example> ex;
    for (int64_t i = 0; i < o.batch; ++i) ex.push_back(draw(rng));
    Batch b = make_batch(ex);
    return F::cross_entropy(std::get<0>(m.forward(b)), b.labels);
  };
  r.evaluate = evaluate;
  r.held_out = [](const AppOptions& o) {
    return std::to_string(o.eval_examples) + " held-out sentences (the attended step in [brackets])";
  };
  App a = make_app(r);
  a.viz = [](const AppOptions& in, const std::string& out) {
    AppOptions probe = in;
    if (probe.checkpoint.empty()) probe.checkpoint = "runs/tag.safetensors";
    const io::Metadata meta = checkpoint_metadata(probe, "tag");
    const AppOptions o = with_defaults(in, "tag", kDefaults);
    std::vector<std::string> words;
    Tensor w;
    std::string predicted, truth;
    NoGradGuard ng;
    if (meta.count("data")) {
      AppOptions fo = o;
      if (fo.data.empty()) fo.data = meta.at("data");
      const LabelledFile f = read_labelled(fo.data, &meta);
      ATTN_CHECK(o.index >= 0 && o.index < static_cast<int64_t>(f.held_out.size()), "tag: viz --index ", o.index,
                 " is not one of the ", f.held_out.size(), " held-out lines");
      Tagger m(static_cast<int64_t>(f.words.size()), static_cast<int64_t>(f.labels.size()), std::stoll(meta.at("max_len")));
      load_app(m, o, "tag");
      const Example& e = f.held_out[o.index];
      m.max_len = std::max<int64_t>(m.max_len, static_cast<int64_t>(e.ids.size()));
      auto [logits, weights] = m.forward(make_batch({e}, m.max_len));
      w = weights.narrow(1, 0, static_cast<int64_t>(e.ids.size()));
      words = f.held_out_text[o.index];
      predicted = f.labels[argmax(logits, 1).item<int64_t>()];
      truth = f.labels[e.label];
    } else {
      Tagger m;
      load_app(m, o, "tag");
      std::mt19937_64 rng(o.seed * 1000003 + 99);  // evaluate's held-out stream
      Example e;
      for (int64_t i = 0; i <= o.index; ++i) e = draw(rng);
      auto [logits, weights] = m.forward(make_batch({e}));
      w = weights.narrow(1, 0, static_cast<int64_t>(e.ids.size()));
      const char* types[] = {"PERSON", "PLACE", "DATE", "ORG"};
      for (int64_t id : e.ids)
        words.push_back(id == kAt ? "at" : id >= kFirstEntity ? types[(id - kFirstEntity) / kPerType] : "w");
      predicted = types[argmax(logits, 1).item<int64_t>()];
      truth = types[e.label];
    }
    const Tensor scaled = w / max(w);  // the largest weight at the top of the scale
    const std::string path = out + ".png";
    write_png(path, heatmap(scaled, {"weight"}, words, "tag: attention pooling, predicted " + predicted + " (true " +
                                                           truth + "), largest weight " +
                                                           std::to_string(max(w).item<float>()).substr(0, 5),
                            22, "words", ""));
    return "wrote " + path;
  };
  // --data FILE: the user's labelled sentences instead of the generated ones;
  // eval follows the checkpoint (a checkpoint of a file names it).
  a.train = [generated = a.train](const AppOptions& o) { return o.data.empty() ? generated(o) : train_file(o); };
  a.eval = [generated = a.eval](const AppOptions& in) {
    AppOptions probe = in;
    if (probe.checkpoint.empty()) probe.checkpoint = "runs/tag.safetensors";
    const io::Metadata meta = checkpoint_metadata(probe, "tag");
    if (meta.count("data")) return eval_file(in, meta);
    ATTN_CHECK(in.data.empty(), "tag: ", probe.checkpoint, " was trained on the generated sentences; --data needs a "
               "checkpoint trained on a file");
    return generated(in);
  };
  return a;
}

}  // namespace attn::apps
