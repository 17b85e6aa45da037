#include "translate/translate.h"

#include <attn/attn.h>
#include <attn/dist.h>

#include <algorithm>
#include <optional>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>

#include "common/app.h"
#include "common/bleu.h"
#include "common/png.h"
#include "common/progress.h"
#include "common/text_file.h"

namespace attn::apps::translate {

namespace {

// ---- data ---------------------------------------------------------------------------------

const char* kOnes[] = {"zero",    "one",     "two",       "three",    "four",    "five",    "six",
                       "seven",   "eight",   "nine",      "ten",      "eleven",  "twelve",  "thirteen",
                       "fourteen", "fifteen", "sixteen",  "seventeen", "eighteen", "nineteen"};
const char* kTens[] = {"", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"};

// Vocabulary: <pad> <bos> <eos>, then the number words and the digits, or
// (--data) <unk> and the words of the training pairs, sources and targets in
// one table.
struct Vocab {
  std::vector<std::string> itos;
  std::map<std::string, int64_t> stoi;
  bool open = false;  // a user's vocabulary: unknown words map to <unk>
  Vocab() {
    for (const char* s : {"<pad>", "<bos>", "<eos>"}) add(s);
    for (const char* s : kOnes) add(s);
    for (int t = 2; t < 10; ++t) add(kTens[t]);
    add("hundred");
    add("thousand");
    for (int d = 0; d < 10; ++d) add(std::to_string(d));
  }
  explicit Vocab(const std::vector<std::string>& words) : open(true) {
    for (const char* s : {"<pad>", "<bos>", "<eos>", "<unk>"}) add(s);
    for (const auto& w : words)
      if (!stoi.count(w)) add(w);
  }
  void add(const std::string& s) {
    stoi[s] = static_cast<int64_t>(itos.size());
    itos.push_back(s);
  }
  int64_t size() const { return static_cast<int64_t>(itos.size()); }
};
const Vocab& number_vocab() {
  static const Vocab v;
  return v;
}
constexpr int64_t kPad = 0, kBos = 1, kEos = 2, kUnk = 3, kMaxSrc = 8, kMaxTgt = 7;

// Appends word to a space-separated sentence (append, not operator+: g++ 12
// warns falsely about chains of string concatenation).
void add_word(std::string& s, const std::string& w) {
  if (!s.empty()) s.append(" ");
  s.append(w);
}

std::string below_thousand(int64_t n) {
  std::string s;
  auto add = [&](const std::string& w) { add_word(s, w); };
  if (n >= 100) add(kOnes[n / 100]), add("hundred"), n %= 100;
  if (n >= 20) {
    add(kTens[n / 10]);
    if (n % 10) add(kOnes[n % 10]);
  } else if (n > 0 || s.empty()) {
    add(kOnes[n]);
  }
  return s;
}

std::vector<int64_t> encode(const Vocab& v, const std::string& s) {
  std::istringstream is(s);
  std::vector<int64_t> out;
  for (std::string w; is >> w;) {
    auto it = v.stoi.find(w);
    if (it == v.stoi.end() && v.open) {
      out.push_back(kUnk);
      continue;
    }
    ATTN_CHECK(it != v.stoi.end(), "translate: unknown word \"", w, "\" (the source language is English ",
               "number words from zero to ninety nine thousand nine hundred ninety nine)");
    out.push_back(it->second);
  }
  return out;
}

std::string digits(int64_t n) {
  std::string d = std::to_string(n), s;
  for (char c : d) add_word(s, std::string(1, c));
  return s;
}

std::string decode(const Vocab& v, const std::vector<int64_t>& ids) {
  std::string s;
  for (int64_t t : ids) {
    if (t == kEos) break;
    if (t == kPad || t == kBos) continue;
    add_word(s, v.itos.at(static_cast<size_t>(t)));
  }
  return s;
}

// --data FILE: sentence pairs, source TAB target per line, whitespace tokens;
// a tenth of the lines, picked by a hash of the line, held out. The
// vocabulary comes from the training pairs (or the checkpoint); sentences
// longer than kFileMaxLen tokens are cut.
constexpr int64_t kFileMaxLen = 48;

struct Pair {
  std::string source, target;
};

struct PairFile {
  std::vector<Pair> train, test;
  int64_t max_src = 1, max_tgt = 2;  // tokens; the target's with <bos> or <eos>
};

std::string first_tokens(const std::string& s, int64_t n) {
  std::istringstream is(s);
  std::string out;
  int64_t k = 0;
  for (std::string w; is >> w && k < n; ++k) add_word(out, w);
  return out;
}

PairFile read_pairs(const std::string& path) {
  const std::string text = read_utf8_file(path, "translate");
  PairFile f;
  std::istringstream in(text);
  std::string line;
  int64_t no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const size_t tab = line.find('\t');
    ATTN_CHECK(tab != std::string::npos, "translate: ", path, " line ", no,
               ": expected \"source<TAB>target\", found no tab");
    Pair p{first_tokens(line.substr(0, tab), kFileMaxLen), first_tokens(line.substr(tab + 1), kFileMaxLen)};
    ATTN_CHECK(!p.source.empty(), "translate: ", path, " line ", no, ": the source sentence is empty");
    ATTN_CHECK(!p.target.empty(), "translate: ", path, " line ", no, ": the target sentence is empty");
    uint64_t h = 1469598103934665603ull;  // FNV-1a of the line
    for (unsigned char c : line) h = (h ^ c) * 1099511628211ull;
    auto count = [](const std::string& s) {
      std::istringstream is(s);
      int64_t n = 0;
      for (std::string w; is >> w;) ++n;
      return n;
    };
    f.max_src = std::max(f.max_src, count(p.source));
    f.max_tgt = std::max(f.max_tgt, count(p.target) + 1);
    (h % 10 == 0 ? f.test : f.train).push_back(std::move(p));
  }
  ATTN_CHECK(!f.train.empty() && !f.test.empty(), "translate: ", path, " has ", f.train.size(), " training and ",
             f.test.size(), " held-out pairs; both must be non-empty (a tenth of the lines is held out)");
  return f;
}

Vocab vocab_of(const PairFile& f) {
  std::vector<std::string> words;
  for (const Pair& p : f.train)
    for (const std::string* s : {&p.source, &p.target}) {
      std::istringstream is(*s);
      for (std::string w; is >> w;) words.push_back(w);
    }
  return Vocab(words);
}



// A number with a uniformly drawn digit count, from the training or the held-out part.
int64_t draw_number(std::mt19937_64& rng, bool test) {
  for (;;) {
    const int len = test ? static_cast<int>(rng() % 4) + 2 : static_cast<int>(rng() % 5) + 1;  // 1 digit: all trained
    const int64_t lo = len == 1 ? 0 : static_cast<int64_t>(std::pow(10, len - 1)), hi = static_cast<int64_t>(std::pow(10, len));
    const int64_t n = lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo));
    if (held_out(n) == test) return n;
  }
}

// (B, L) int64 padded with kPad.
Tensor pad_ids(const std::vector<std::vector<int64_t>>& rows, int64_t L) {
  std::vector<int64_t> flat;
  for (const auto& r : rows) {
    for (int64_t i = 0; i < L; ++i) flat.push_back(i < static_cast<int64_t>(r.size()) ? r[i] : kPad);
  }
  return from_vector(flat, {static_cast<int64_t>(rows.size()), L});
}

// ---- model ----------------------------------------------------------------------------------

constexpr int64_t kDModel = 64, kHeads = 4, kLayers = 2, kFF = 256;

// The two model kinds behind one interface: the encoder's memory, the
// next-token logits after every prefix position (teacher forcing), and the
// cross-attention weights (heads, T, S) of one sentence for the heatmaps.
struct Seq2Seq : nn::Module {
  virtual Tensor memory(const Tensor& src, const Tensor& src_pad) const = 0;
  virtual Tensor decode_logits(const Tensor& tgt_in, const Tensor& memory, const Tensor& src_pad) const = 0;
  virtual Tensor cross_attention(const Tensor& tgt_in, const Tensor& memory, const Tensor& src_pad) const = 0;
  virtual std::string describe() const = 0;
  int64_t parameter_count() const {
    int64_t n = 0;
    for (const Tensor& p : parameters()) n += p.numel();
    return n;
  }
};

struct TransformerModel : Seq2Seq {
  nn::Embedding tok;
  nn::Embedding pos;
  nn::Transformer transformer{nn::TransformerOptions(kDModel, kHeads)
                                  .num_encoder_layers(kLayers)
                                  .num_decoder_layers(kLayers)
                                  .dim_feedforward(kFF)
                                  .dropout(0.1)
                                  .batch_first(true)};
  nn::Linear out;
  // V words; positions up to max_len (16 for the number words).
  TransformerModel(int64_t V, int64_t max_len)
      : tok(nn::EmbeddingOptions(V, kDModel)), pos(nn::EmbeddingOptions(max_len, kDModel)),
        out(nn::LinearOptions(kDModel, V)) {
    register_module("tok", tok);
    register_module("pos", pos);
    register_module("transformer", transformer);
    register_module("out", out);
  }
  Tensor embed(const Tensor& ids) const {
    const int64_t L = ids.size(1);
    return tok.forward(ids) * std::sqrt(static_cast<double>(kDModel)) + pos.forward(arange(L)).unsqueeze(0);
  }
  Tensor memory(const Tensor& src, const Tensor& src_pad) const override {
    return transformer.encoder.forward(embed(src), {}, src_pad);
  }
  Tensor decode_logits(const Tensor& tgt_in, const Tensor& memory, const Tensor& src_pad) const override {
    const int64_t T = tgt_in.size(1);
    Tensor h = transformer.decoder.forward(embed(tgt_in), memory, nn::Transformer::generate_square_subsequent_mask(T),
                                           {}, {}, src_pad);
    return out.forward(h);
  }
  // The last decoder layer's cross-attention, per head.
  Tensor cross_attention(const Tensor& tgt_in, const Tensor& mem, const Tensor& src_pad) const override {
    Tensor x = embed(tgt_in);
    const size_t nl = transformer.decoder.layers.size();
    Tensor causal = nn::Transformer::generate_square_subsequent_mask(x.size(1));
    for (size_t l = 0; l + 1 < nl; ++l) x = transformer.decoder.layer(l).forward(x, mem, causal, {}, {}, src_pad);
    const nn::TransformerDecoderLayer& last = transformer.decoder.layer(nl - 1);
    // The query of the cross-attention, as the layer computes it (eval mode: no dropout).
    Tensor query;
    if (last.options.norm_first()) {
      Tensor n1 = last.norm1.forward(x);
      query = last.norm2.forward(x + std::get<0>(last.self_attn.forward(n1, n1, n1, {}, false, causal)));
    } else {
      query = last.norm1.forward(x + std::get<0>(last.self_attn.forward(x, x, x, {}, false, causal)));
    }
    return std::get<1>(last.multihead_attn.forward(query, mem, mem, src_pad, true, {}, false)).select(0, 0);
  }
  std::string describe() const override {
    std::ostringstream os;
    os << "a " << parameter_count() << "-parameter Transformer (d_model " << kDModel << ", " << kHeads << " heads, "
       << kLayers << "+" << kLayers << " layers)";
    return os.str();
  }
};

// The seed's recurrent encoder-decoder with attention: an embedding and a
// bidirectional LSTM encoder (packed, so padding is never read); a decoder
// LSTMCell fed the previous token and the attended context, attending from
// its hidden state with Bahdanau's additive or Luong's general score.
constexpr int64_t kRnnEmbed = 64, kRnnHidden = 128;

struct LstmModel : Seq2Seq {
  bool luong;
  nn::Embedding src_embed;
  nn::LSTM encoder{nn::LSTMOptions(kRnnEmbed, kRnnHidden / 2).bidirectional(true).batch_first(true)};
  nn::Embedding tgt_embed;
  nn::LSTMCell rnn{nn::LSTMCellOptions(kRnnEmbed + kRnnHidden, kRnnHidden)};
  std::unique_ptr<nn::AdditiveAttention> additive;
  std::unique_ptr<nn::LuongAttention> general;
  nn::Linear out;
  LstmModel(bool luong_attention, int64_t V)
      : luong(luong_attention), src_embed(nn::EmbeddingOptions(V, kRnnEmbed)),
        tgt_embed(nn::EmbeddingOptions(V, kRnnEmbed)), out(nn::LinearOptions(kRnnHidden, V)) {
    register_module("src_embed", src_embed);
    register_module("encoder", encoder);
    register_module("tgt_embed", tgt_embed);
    register_module("rnn", rnn);
    if (luong) {
      general = std::make_unique<nn::LuongAttention>(nn::LuongAttentionOptions(kRnnHidden, kRnnHidden));
      register_module("attention", *general);
    } else {
      additive = std::make_unique<nn::AdditiveAttention>(nn::AdditiveAttentionOptions(kRnnHidden, kRnnHidden, 64));
      register_module("attention", *additive);
    }
    register_module("out", out);
  }
  Tensor memory(const Tensor& src, const Tensor& src_pad) const override {
    Tensor lengths = sum(logical_not(src_pad).to(kInt64), {1});
    auto packed = nn::pack_padded_sequence(src_embed.forward(src), lengths, true, false);
    return std::get<0>(nn::pad_packed_sequence(std::get<0>(encoder.forward(packed)), true, 0.0, src.size(1)));
  }
  // Runs the decoder over tgt_in: (logits (B, T, V), weights (B, T, S)).
  std::tuple<Tensor, Tensor> run(const Tensor& tgt_in, const Tensor& mem, const Tensor& src_pad) const {
    const int64_t B = tgt_in.size(0), T = tgt_in.size(1);
    Tensor h = zeros({B, kRnnHidden}), c = zeros({B, kRnnHidden});
    Tensor projected = additive ? additive->project_keys(mem) : Tensor();
    std::vector<Tensor> logits, weights;
    for (int64_t t = 0; t < T; ++t) {
      auto [context, w] = additive ? additive->forward_projected(h, projected, mem, src_pad)
                                   : general->forward(h, mem, mem, src_pad);
      std::tie(h, c) = rnn.forward(cat({tgt_embed.forward(tgt_in.select(1, t)), context}, 1), std::make_tuple(h, c));
      logits.push_back(out.forward(h));
      weights.push_back(w);
    }
    return {stack(logits, 1), stack(weights, 1)};
  }
  Tensor decode_logits(const Tensor& tgt_in, const Tensor& mem, const Tensor& src_pad) const override {
    return std::get<0>(run(tgt_in, mem, src_pad));
  }
  Tensor cross_attention(const Tensor& tgt_in, const Tensor& mem, const Tensor& src_pad) const override {
    return std::get<1>(run(tgt_in, mem, src_pad));  // (1, T, S): one head
  }
  std::string describe() const override {
    std::ostringstream os;
    os << "a " << parameter_count() << "-parameter LSTM encoder-decoder (bidirectional encoder, hidden "
       << kRnnHidden << ", " << (luong ? "Luong general" : "Bahdanau additive") << " attention)";
    return os.str();
  }
};

std::unique_ptr<Seq2Seq> make_model(const std::string& kind, int64_t V, int64_t max_len) {
  if (kind == "transformer") return std::make_unique<TransformerModel>(V, max_len);
  if (kind == "lstm-bahdanau") return std::make_unique<LstmModel>(false, V);
  if (kind == "lstm-luong") return std::make_unique<LstmModel>(true, V);
  throw Error("translate: no model kind \"" + kind + "\" (transformer, lstm-bahdanau or lstm-luong)");
}

// What a run translates: the generated number words, or a file's pairs;
// with the vocabulary and the longest source and target (with <eos>).
struct Task {
  Vocab vocab;
  std::string data;  // empty: the number words
  PairFile pairs;
  int64_t max_src = kMaxSrc, max_tgt = kMaxTgt;
  int64_t positions() const { return data.empty() ? 16 : std::max(max_src, max_tgt) + 1; }
};

Task number_task() { return Task{number_vocab(), "", {}, kMaxSrc, kMaxTgt}; }

Task file_task(const std::string& path, const io::Metadata* meta) {
  Task t;
  t.data = path;
  t.pairs = read_pairs(path);
  if (meta) {
    ATTN_CHECK(meta->count("vocab") && meta->count("max_src") && meta->count("max_tgt"), "translate: the checkpoint ",
               "lacks the vocabulary or lengths of its training file");
    t.vocab = Vocab(split_lines(meta->at("vocab")));
    t.max_src = std::stoll(meta->at("max_src"));
    t.max_tgt = std::stoll(meta->at("max_tgt"));
  } else {
    t.vocab = vocab_of(t.pairs);
    t.max_src = t.pairs.max_src;
    t.max_tgt = t.pairs.max_tgt;
  }
  return t;
}

struct Batch {
  Tensor src, src_pad, tgt_in, tgt_out;
  std::vector<std::string> sources, targets;
};

Batch make_batch(const Task& task, const std::vector<Pair>& pairs) {
  Batch b;
  std::vector<std::vector<int64_t>> src, tin, tout;
  for (const Pair& p : pairs) {
    b.sources.push_back(p.source);
    b.targets.push_back(p.target);
    std::vector<int64_t> s = encode(task.vocab, p.source), t = encode(task.vocab, p.target);
    if (static_cast<int64_t>(s.size()) > task.max_src) s.resize(task.max_src);
    if (static_cast<int64_t>(t.size()) + 1 > task.max_tgt) t.resize(task.max_tgt - 1);
    src.push_back(s);
    std::vector<int64_t> in = {kBos};
    in.insert(in.end(), t.begin(), t.end());
    t.push_back(kEos);
    tin.push_back(in);
    tout.push_back(t);
  }
  b.src = pad_ids(src, task.max_src);
  b.src_pad = eq(b.src, full({}, kPad, kInt64));
  b.tgt_in = pad_ids(tin, task.max_tgt);
  b.tgt_out = pad_ids(tout, task.max_tgt);
  return b;
}

std::vector<Pair> number_pairs(const std::vector<int64_t>& numbers) {
  std::vector<Pair> out;
  for (int64_t n : numbers) out.push_back({number_words(n), digits(n)});
  return out;
}

// A training batch: numbers drawn from the trained part, or random pairs of the file.
std::vector<Pair> draw_pairs(const Task& task, std::mt19937_64& rng, int64_t n) {
  if (task.data.empty()) {
    std::vector<int64_t> numbers;
    for (int64_t i = 0; i < n; ++i) numbers.push_back(draw_number(rng, /*test=*/false));
    return number_pairs(numbers);
  }
  std::vector<Pair> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(task.pairs.train[rng() % task.pairs.train.size()]);
  return out;
}

// Greedy decoding of a batch.
std::vector<std::vector<int64_t>> greedy(const Seq2Seq& m, const Tensor& src, const Tensor& src_pad, int64_t max_tgt) {
  NoGradGuard ng;
  const int64_t B = src.size(0);
  Tensor mem = m.memory(src, src_pad);
  std::vector<std::vector<int64_t>> seqs(static_cast<size_t>(B), std::vector<int64_t>{kBos});
  std::vector<bool> done(static_cast<size_t>(B), false);
  for (int64_t t = 0; t < max_tgt; ++t) {
    Tensor logits = m.decode_logits(pad_ids(seqs, t + 1), mem, src_pad).select(1, t);
    Tensor next = argmax(logits, 1);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t id = done[b] ? kPad : next.select(0, b).item<int64_t>();
      seqs[b].push_back(id);
      if (id == kEos) done[b] = true;
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
  }
  return seqs;
}

// Beam search for one sentence (src (1, S)): k beams, summed log-probabilities.
std::vector<int64_t> beam_search(const Seq2Seq& m, const Tensor& src, const Tensor& src_pad, int64_t k,
                                 int64_t max_tgt) {
  NoGradGuard ng;
  Tensor mem1 = m.memory(src, src_pad);
  struct Hyp {
    std::vector<int64_t> ids;
    double score;
    bool done;
  };
  std::vector<Hyp> beams = {{{kBos}, 0.0, false}};
  for (int64_t t = 0; t < max_tgt; ++t) {
    std::vector<Hyp> cand;
    std::vector<std::vector<int64_t>> live;
    for (const Hyp& h : beams) {
      if (h.done) cand.push_back(h);
      else live.push_back(h.ids);
    }
    if (live.empty()) break;
    const int64_t n = static_cast<int64_t>(live.size());
    Tensor mem = mem1.expand({n, mem1.size(1), mem1.size(2)}).contiguous();
    Tensor pad = src_pad.expand({n, src_pad.size(1)}).contiguous();
    Tensor lp = F::log_softmax(m.decode_logits(pad_ids(live, t + 1), mem, pad).select(1, t), 1).contiguous();
    size_t li = 0;
    for (const Hyp& h : beams) {
      if (h.done) continue;
      const float* row = lp.data<float>() + static_cast<int64_t>(li++) * lp.size(1);
      for (int64_t v = 0; v < lp.size(1); ++v) {
        if (v == kPad || v == kBos || v == kUnk) continue;
        Hyp x = h;
        x.ids.push_back(v);
        x.score += row[v];
        x.done = v == kEos;
        cand.push_back(std::move(x));
      }
    }
    std::sort(cand.begin(), cand.end(), [](const Hyp& a, const Hyp& b) { return a.score > b.score; });
    cand.resize(std::min<size_t>(cand.size(), static_cast<size_t>(k)));
    beams = std::move(cand);
  }
  return beams.front().ids;
}

Result evaluate(const Seq2Seq& m, const Task& task, const Options& o, bool print) {
  Result r;
  std::vector<Pair> pairs;
  if (task.data.empty()) {
    std::mt19937_64 rng(o.seed * 7919 + 17);
    std::vector<int64_t> numbers;
    for (int64_t i = 0; i < o.eval_examples; ++i) numbers.push_back(draw_number(rng, /*test=*/true));
    pairs = number_pairs(numbers);
  } else {
    pairs = task.pairs.test;  // every held-out pair
  }
  std::vector<std::string> hyps, refs;
  int64_t exact = 0;
  for (size_t s = 0; s < pairs.size(); s += 100) {
    std::vector<Pair> chunk(pairs.begin() + s, pairs.begin() + std::min(pairs.size(), s + 100));
    Batch b = make_batch(task, chunk);
    std::vector<std::vector<int64_t>> out;
    if (o.beam > 1) {
      for (size_t i = 0; i < chunk.size(); ++i) {
        const auto ii = static_cast<int64_t>(i);
        out.push_back(beam_search(m, b.src.narrow(0, ii, 1), b.src_pad.narrow(0, ii, 1), o.beam, task.max_tgt));
      }
    } else {
      out = greedy(m, b.src, b.src_pad, task.max_tgt);
    }
    for (size_t i = 0; i < chunk.size(); ++i) {
      hyps.push_back(decode(task.vocab, out[i]));
      refs.push_back(b.targets[i]);
      exact += hyps.back() == refs.back();
      if (print && static_cast<int64_t>(hyps.size()) <= o.show)
        std::printf("  %-48s -> %-10s %s\n", b.sources[i].c_str(), hyps.back().c_str(),
                    hyps.back() == refs.back() ? "" : ("(expected " + refs.back() + ")").c_str());
    }
  }
  r.exact_match = pairs.empty() ? 0.0 : static_cast<double>(exact) / static_cast<double>(pairs.size());
  r.bleu = corpus_bleu(hyps, refs);
  r.examples = static_cast<int64_t>(pairs.size());
  return r;
}

// The model a checkpoint holds, loaded, in eval mode, and its task (--data
// overrides the file a checkpoint of a file was trained on).
std::unique_ptr<Seq2Seq> load(const std::string& path, const std::string& data, Task& task) {
  ATTN_CHECK(std::filesystem::exists(path), "translate: no checkpoint at ", path, " (run `attn train translate` first)");
  const io::Metadata meta = io::read_safetensors(path).metadata;
  ATTN_CHECK(meta.count("app") && meta.at("app") == "translate", "translate: ", path, " is not a translate checkpoint");
  if (meta.count("data")) {
    task = file_task(data.empty() ? meta.at("data") : data, &meta);
  } else {
    ATTN_CHECK(data.empty(), "translate: ", path, " was trained on the number words; --data needs a checkpoint "
               "trained on a file");
    task = number_task();
  }
  auto m = make_model(meta.count("model") ? meta.at("model") : "transformer", task.vocab.size(), task.positions());
  optim::load_checkpoint(path, *m);
  m->eval();
  return m;
}

}  // namespace

std::string number_words(int64_t n) {
  ATTN_CHECK(n >= 0 && n < 100000, "translate: numbers run from 0 to 99999, got ", n);
  if (n < 1000) return below_thousand(n);
  std::string s = below_thousand(n / 1000);
  add_word(s, "thousand");
  if (n % 1000) add_word(s, below_thousand(n % 1000));
  return s;
}

bool held_out(int64_t n) { return n >= 10 && (static_cast<uint64_t>(n) * 2654435761ULL >> 7) % 10 == 0; }

Result train(const Options& o) {
  ATTN_CHECK(o.steps > 0 && o.batch > 0, "translate: steps and batch must be positive");
  // --distributed: this process's rank among P; rank 0 alone prints and writes.
  std::optional<dist::ProcessGroup> pg;
  if (o.distributed) pg = dist::init();
  const int P = pg ? pg->size() : 1, rank = pg ? pg->rank() : 0;
  ATTN_CHECK(o.batch % P == 0, "translate --distributed: the batch (", o.batch, ") must be a multiple of the number "
             "of ranks (", P, ")");
  const bool lead = rank == 0, quiet = o.quiet || !lead;
  if (lead) prepare_checkpoint_path(o.checkpoint, "translate");
  manual_seed(o.seed);
  Generator gen(o.seed);
  const Task task = o.data.empty() ? number_task() : file_task(o.data, nullptr);
  auto model = make_model(o.model, task.vocab.size(), task.positions());
  Seq2Seq& m = *model;
  m.train();
  std::unique_ptr<dist::DistributedDataParallel> ddp;
  if (pg) ddp = std::make_unique<dist::DistributedDataParallel>(m, *pg);
  optim::AdamW opt(m.parameters(), optim::AdamWOptions(o.lr).weight_decay(0.01));
  std::vector<std::unique_ptr<optim::LRScheduler>> parts;
  const int64_t warm = std::max<int64_t>(1, o.steps / 10);
  parts.push_back(std::make_unique<optim::LinearLR>(opt, 0.05, 1.0, warm));
  parts.push_back(std::make_unique<optim::CosineAnnealingLR>(opt, std::max<int64_t>(1, o.steps - warm), o.lr * 0.02));
  optim::SequentialLR sched(opt, std::move(parts), {warm});
  std::mt19937_64 rng(o.seed);
  if (!quiet) {
    std::printf("translate: %s, %lld steps of %lld", m.describe().c_str(), static_cast<long long>(o.steps),
                static_cast<long long>(o.batch));
    if (pg) std::printf(" (%d ranks x %lld)", P, static_cast<long long>(o.batch / P));
    std::printf("\n");
  }
  JsonLog log(lead ? o.log_json : std::string(), "translate");
  const int64_t log_every = std::max<int64_t>(1, o.steps / 200);
  double loss_sum = 0;
  int64_t loss_n = 0;
  const int64_t n = o.batch / P;  // this rank's rows of each global batch
  Progress progress("train translate", o.steps, "sentences");
  for (int64_t step = 1; step <= o.steps; ++step) {
    // Every rank draws the whole batch (the single process's data order) and keeps its rows.
    std::vector<Pair> pairs = draw_pairs(task, rng, o.batch);
    Batch b = make_batch(task, std::vector<Pair>(pairs.begin() + rank * n, pairs.begin() + (rank + 1) * n));
    std::optional<BatchShardGuard> shard;
    if (pg) shard.emplace(rank * n, n, o.batch);  // the dropout masks of these rows in the whole batch
    Tensor mem = m.memory(b.src, b.src_pad);
    Tensor logits = m.decode_logits(b.tgt_in, mem, b.src_pad);
    Tensor flat = logits.reshape({-1, task.vocab.size()}), target = b.tgt_out.reshape({-1});
    Tensor loss;
    double value = 0;
    if (!pg) {
      loss = F::cross_entropy(flat, target, F::CrossEntropyFuncOptions().ignore_index(kPad));
      value = loss.item<float>();
    } else {
      // The whole batch's loss is the sum over every rank's tokens over the
      // global token count N. Each rank backpropagates P * (its sum) / N, so
      // that DistributedDataParallel's mean over ranks is that loss's gradient.
      Tensor counts = sum(ne(target, full({}, kPad, kInt64)).to(kFloat64)).reshape({1});
      Tensor part = F::cross_entropy(flat, target,
                                     F::CrossEntropyFuncOptions().ignore_index(kPad).reduction(kSum));
      Tensor both = cat({counts, part.detach().to(kFloat64).reshape({1})});
      pg->all_reduce(both);
      const double tokens = both.select(0, 0).item<double>();
      loss = part * (static_cast<double>(P) / tokens);
      value = both.select(0, 1).item<double>() / tokens;
    }
    const double lr = opt.lr();
    opt.zero_grad();
    loss.backward();
    optim::clip_grad_norm_(m.parameters(), 1.0);
    opt.step();
    sched.step();
    if (!quiet) progress.update(step, static_cast<float>(value), o.batch);
    loss_sum += value;
    ++loss_n;
    if (log.on() && (step % log_every == 0 || step == o.steps)) {
      const double elapsed = progress.seconds();
      log.line(step, loss_sum / static_cast<double>(loss_n), lr, elapsed,
               elapsed > 0 ? static_cast<double>(step * o.batch) / elapsed : 0.0, std::string(), 0.0);
      loss_sum = 0;
      loss_n = 0;
    }
  }
  if (!quiet) progress.finish();
  Result r;
  r.seconds = progress.seconds();
  if (!lead) return r;  // the other ranks hold the same weights; rank 0 saves and evaluates
  io::Metadata meta{{"app", "translate"}, {"model", o.model}};
  if (!task.data.empty()) {
    meta["data"] = task.data;
    meta["vocab"] = join_lines(task.vocab.itos, 4);  // after <pad> <bos> <eos> <unk>
    meta["max_src"] = std::to_string(task.max_src);
    meta["max_tgt"] = std::to_string(task.max_tgt);
  }
  ddp.reset();
  optim::save_checkpoint(o.checkpoint, m, &opt, o.steps, &gen, meta);
  m.eval();
  Result e = evaluate(m, task, o, !o.quiet);
  e.seconds = r.seconds;
  if (!o.quiet)
    std::printf("translate: trained in %.1f s; held-out exact match %.1f%%, BLEU %.1f (%lld sentences, %s); "
                "checkpoint %s\n",
                e.seconds, 100 * e.exact_match, e.bleu, static_cast<long long>(e.examples),
                o.beam > 1 ? ("beam " + std::to_string(o.beam)).c_str() : "greedy", o.checkpoint.c_str());
  return e;
}

Result eval(const Options& o) {
  Task task;
  auto m = load(o.checkpoint, o.data, task);
  Result e = evaluate(*m, task, o, !o.quiet);
  if (!o.quiet)
    std::printf("translate: held-out exact match %.1f%%, BLEU %.1f (%lld sentences, %s)\n", 100 * e.exact_match,
                e.bleu, static_cast<long long>(e.examples),
                o.beam > 1 ? ("beam " + std::to_string(o.beam)).c_str() : "greedy");
  return e;
}

std::string viz(const Options& o, const std::string& sentence, const std::string& png_prefix) {
  Task task;
  auto model = load(o.checkpoint, o.data, task);
  const Seq2Seq& m = *model;
  NoGradGuard ng;
  std::vector<int64_t> ids = encode(task.vocab, sentence);
  ATTN_CHECK(!ids.empty() && static_cast<int64_t>(ids.size()) <= task.max_src, "translate: the sentence must have 1 to ",
             task.max_src, " words, got ", ids.size());
  Tensor src = pad_ids({ids}, static_cast<int64_t>(ids.size()));
  Tensor src_pad = eq(src, full({}, kPad, kInt64));
  std::vector<int64_t> out = o.beam > 1 ? beam_search(m, src, src_pad, o.beam, task.max_tgt)
                                         : greedy(m, src, src_pad, task.max_tgt)[0];
  // The decoder input for the translation, then its cross-attention weights (H, T, S).
  std::vector<int64_t> tin(out.begin(), out.end());
  while (tin.size() > 1 && (tin.back() == kEos || tin.back() == kPad)) tin.pop_back();
  Tensor wh = m.cross_attention(pad_ids({tin}, static_cast<int64_t>(tin.size())), m.memory(src, src_pad), src_pad);
  // Rows: the output tokens each position predicts.
  std::vector<std::string> rows, cols;
  for (size_t t = 1; t <= tin.size(); ++t)
    rows.push_back(t < out.size() ? task.vocab.itos.at(static_cast<size_t>(out[t])) : "?");
  for (int64_t id : ids) cols.push_back(task.vocab.itos.at(static_cast<size_t>(id)));
  const std::string translation = decode(task.vocab, out);
  write_png(png_prefix + "_avg.png", heatmap(mean(wh, {0}), rows, cols, "cross-attention, mean of heads: " + translation,
                                             16, "source words", "output"));
  for (int64_t hh = 0; hh < wh.size(0); ++hh)
    write_png(png_prefix + "_head" + std::to_string(hh) + ".png",
              heatmap(wh.select(0, hh), rows, cols, "cross-attention, head " + std::to_string(hh), 16, "source words",
                      "output"));
  return translation;
}

}  // namespace attn::apps::translate

namespace attn::apps {

namespace {
translate::Options translate_options(const AppOptions& o) {
  translate::Options t;
  if (o.steps > 0) t.steps = o.steps;
  if (o.batch > 0) t.batch = o.batch;
  if (o.lr > 0) t.lr = o.lr;
  t.seed = o.seed;
  t.eval_examples = o.eval_examples;
  t.beam = o.beam;
  t.show = o.show;
  if (!o.checkpoint.empty()) t.checkpoint = o.checkpoint;
  t.quiet = o.quiet;
  if (!o.variant.empty()) t.model = o.variant;
  t.data = o.data;
  t.distributed = o.distributed;
  t.log_json = o.log_json;
  return t;
}
AppResult to_result(const translate::Result& r) {
  AppResult a;
  a.metric = "exact match";
  a.value = r.exact_match;
  a.bleu = r.bleu;
  a.seconds = r.seconds;
  return a;
}
}  // namespace

App translate_app() {
  return {"translate", "English number words to digits with a Transformer encoder-decoder",
          "held-out exact match >= 95% in under a minute", {"transformer", "lstm-bahdanau", "lstm-luong"},
          [](const AppOptions& o) { return to_result(translate::train(translate_options(o))); },
          [](const AppOptions& o) { return to_result(translate::eval(translate_options(o))); },
          nullptr};  // attn viz translate has its own flags (--sentence, --beam); tools/attn calls translate::viz
}

}  // namespace attn::apps
