// tag: the seed's BiLSTM-attention classifier (BiLSTMAttentionNER: embedding,
// bidirectional LSTM, a learned score per step, softmax over time, the
// weighted sum, a linear classifier) on a synthetic labelling task: a
// sentence of filler words holds two entity words of different types and
// the trigger word "at"; the label is the type of the entity right after
// "at". The filler is padding-aware (packed sequences, masked pooling).
#include <attn/attn.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "common/app.h"

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

Batch make_batch(const std::vector<Example>& ex) {
  std::vector<int64_t> flat, lens, labels;
  for (const auto& e : ex) {
    for (int64_t i = 0; i < kMaxLen; ++i) flat.push_back(i < static_cast<int64_t>(e.ids.size()) ? e.ids[i] : kPad);
    lens.push_back(static_cast<int64_t>(e.ids.size()));
    labels.push_back(e.label);
  }
  const auto B = static_cast<int64_t>(ex.size());
  Batch b;
  b.ids = from_vector(flat, {B, kMaxLen});
  b.lengths = from_vector(lens);
  b.pad = eq(b.ids, full({}, kPad, kInt64));
  b.labels = from_vector(labels);
  return b;
}

// BiLSTMAttentionNER, with the pooling over the real steps only.
struct Tagger : nn::Module {
  nn::Embedding embed{nn::EmbeddingOptions(kVocab, 32).padding_idx(kPad)};
  nn::LSTM bilstm{nn::LSTMOptions(32, 48).bidirectional(true).batch_first(true)};
  nn::AttentionPooling attention{96};
  nn::Linear classifier{nn::LinearOptions(96, kTypes)};
  explicit Tagger(const std::string& /*variant*/ = "bilstm") {
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
    Tensor outputs = std::get<0>(nn::pad_packed_sequence(out, true, 0.0, kMaxLen));
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
  return make_app(r);
}

}  // namespace attn::apps
