// caption: the seed's image captioning model (a CNN encoder whose spatial
// features the decoder attends over; an LSTMCell decoder fed the previous
// word and the attended context, Bahdanau attention from its hidden state;
// a linear layer to the vocabulary) on procedurally drawn scenes: two shapes
// in two of the four quadrants of a 32x32 image, captioned "a red disc top
// left and a blue plus bottom right" (objects in reading order). The CNN's
// 8x8 feature cells carry a learned position vector, so the attended
// context says where it looked.
#include <attn/attn.h>

#include <cstdio>
#include <map>
#include <random>
#include <sstream>

#include "common/app.h"
#include "common/png.h"
#include "common/bleu.h"
#include "common/shapes.h"

namespace attn::apps {

namespace {

constexpr int64_t kSize = 32, kFeat = 64, kCells = 64, kEmbed = 32, kHidden = 128, kMaxLen = 12;
const char* kRows[] = {"top", "bottom"};
const char* kCols[] = {"left", "right"};

struct Vocab {
  std::vector<std::string> words = {"<pad>", "<bos>", "<eos>", "a", "and", "top", "bottom", "left", "right"};
  std::map<std::string, int64_t> id;
  Vocab() {
    for (const char* s : kShapeNames) words.push_back(s);
    for (const char* s : kColourNames) words.push_back(s);
    for (size_t i = 0; i < words.size(); ++i) id[words[i]] = static_cast<int64_t>(i);
  }
  int64_t size() const { return static_cast<int64_t>(words.size()); }
};
const Vocab& vocab() {
  static const Vocab v;
  return v;
}
constexpr int64_t kPad = 0, kBos = 1, kEos = 2;

// Draws a scene into img; returns its caption.
std::string draw(std::mt19937_64& rng, float* img) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  noise_background(img, kSize, rng);
  const int q1 = static_cast<int>(rng() % 4), q2 = (q1 + 1 + static_cast<int>(rng() % 3)) % 4;
  std::string caption;
  for (int q : {std::min(q1, q2), std::max(q1, q2)}) {
    const int shape = static_cast<int>(rng() % kNumShapes), colour = static_cast<int>(rng() % kNumColours);
    const float r = 4.5f + 2.0f * u(rng), half = kSize / 2.0f;
    const float cx = (q % 2) * half + r + (half - 2 * r) * u(rng), cy = (q / 2) * half + r + (half - 2 * r) * u(rng);
    draw_shape(img, kSize, shape, cx, cy, r, kColours[colour]);
    if (!caption.empty()) caption += " and";
    std::ostringstream os;
    os << (caption.empty() ? "" : " ") << "a " << kColourNames[colour] << " " << kShapeNames[shape] << " "
       << kRows[q / 2] << " " << kCols[q % 2];
    caption += os.str();
  }
  return caption;
}

std::vector<int64_t> encode(const std::string& s) {
  std::istringstream is(s);
  std::vector<int64_t> out;
  for (std::string w; is >> w;) out.push_back(vocab().id.at(w));
  return out;
}

std::string decode(const std::vector<int64_t>& ids) {
  std::string s;
  for (int64_t t : ids) {
    if (t == kEos) break;
    if (t == kPad || t == kBos) continue;
    s.append(s.empty() ? "" : " ").append(vocab().words.at(static_cast<size_t>(t)));
  }
  return s;
}

struct Batch {
  Tensor images, tgt_in, tgt_out;  // (B, 3, 32, 32), (B, T), (B, T)
  std::vector<std::string> captions;
};

Batch make_batch(std::mt19937_64& rng, int64_t n) {
  std::vector<float> pix(static_cast<size_t>(n * 3 * kSize * kSize));
  std::vector<int64_t> tin, tout;
  Batch b;
  for (int64_t i = 0; i < n; ++i) {
    b.captions.push_back(draw(rng, pix.data() + i * 3 * kSize * kSize));
    std::vector<int64_t> ids = encode(b.captions.back());
    std::vector<int64_t> in = {kBos};
    in.insert(in.end(), ids.begin(), ids.end());
    ids.push_back(kEos);
    for (int64_t t = 0; t < kMaxLen; ++t) {
      tin.push_back(t < static_cast<int64_t>(in.size()) ? in[t] : kPad);
      tout.push_back(t < static_cast<int64_t>(ids.size()) ? ids[t] : kPad);
    }
  }
  b.images = from_vector(pix, {n, 3, kSize, kSize});
  b.tgt_in = from_vector(tin, {n, kMaxLen});
  b.tgt_out = from_vector(tout, {n, kMaxLen});
  return b;
}

struct Captioner : nn::Module {
  nn::Sequential cnn;  // the seed's Encoder(cnn)
  Tensor cell_pos;     // (kCells, kFeat) learned position of each feature cell
  nn::Embedding embed{nn::EmbeddingOptions(vocab().size(), kEmbed)};
  nn::LSTMCell rnn{nn::LSTMCellOptions(kEmbed + kFeat, kHidden)};
  nn::AdditiveAttention attention{nn::AdditiveAttentionOptions(kHidden, kFeat, 64)};
  nn::Linear out{nn::LinearOptions(kHidden, vocab().size())};
  explicit Captioner(const std::string& /*variant*/ = "seed") {
    cnn.emplace_back<nn::Conv2d>(nn::Conv2dOptions(3, 32, 3).padding(1));
    cnn.emplace_back<nn::ReLU>();
    cnn.emplace_back<nn::MaxPool2d>(nn::MaxPool2dOptions(2));
    cnn.emplace_back<nn::Conv2d>(nn::Conv2dOptions(32, kFeat, 3).padding(1));
    cnn.emplace_back<nn::ReLU>();
    cnn.emplace_back<nn::MaxPool2d>(nn::MaxPool2dOptions(2));
    cell_pos = (randn({kCells, kFeat}) * 0.1).detach().requires_grad_(true);
    register_module("cnn", cnn);
    register_parameter("cell_pos", cell_pos);
    register_module("embed", embed);
    register_module("rnn", rnn);
    register_module("attention", attention);
    register_module("out", out);
  }
  // (B, cells, feat)
  Tensor encode_images(const Tensor& images) const {
    Tensor f = cnn.forward(images);  // (B, kFeat, 8, 8)
    return f.flatten(2).transpose(1, 2) + cell_pos;
  }
  struct State {
    Tensor h, c, features, projected;
  };
  State start(const Tensor& images) const {
    State s;
    s.features = encode_images(images);
    const int64_t B = images.size(0);
    s.h = zeros({B, kHidden});
    s.c = zeros({B, kHidden});
    s.projected = attention.project_keys(s.features);
    return s;
  }
  // One decoder step (the seed's Decoder.forward): logits (B, V), attention weights (B, cells).
  std::tuple<Tensor, Tensor> step(const Tensor& input, State& s) const {
    auto [context, w] = attention.forward_projected(s.h, s.projected, s.features);
    Tensor rnn_input = cat({embed.forward(input), context}, 1);
    auto [h, c] = rnn.forward(rnn_input, std::make_tuple(s.h, s.c));
    s.h = h, s.c = c;
    return {out.forward(h), w};
  }
};

std::vector<std::vector<int64_t>> greedy(const Captioner& m, const Tensor& images) {
  NoGradGuard ng;
  const int64_t B = images.size(0);
  Captioner::State s = m.start(images);
  Tensor input = full({B}, kBos, kInt64);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(B));
  for (int64_t t = 0; t < kMaxLen; ++t) {
    Tensor next = argmax(std::get<0>(m.step(input, s)), 1);
    for (int64_t b = 0; b < B; ++b) out[b].push_back(next.select(0, b).item<int64_t>());
    input = next;
  }
  return out;
}

const Defaults kDefaults{1500, 64, 3e-3};

AppResult evaluate(const Captioner& m, const AppOptions& o) {
  std::mt19937_64 rng(o.seed * 1000003 + 13);
  std::vector<std::string> hyps, refs;
  int64_t exact = 0;
  for (int64_t s = 0; s < o.eval_examples; s += 100) {
    Batch b = make_batch(rng, std::min<int64_t>(100, o.eval_examples - s));
    auto out = greedy(m, b.images);
    for (size_t i = 0; i < out.size(); ++i) {
      hyps.push_back(decode(out[i]));
      refs.push_back(b.captions[i]);
      exact += hyps.back() == refs.back();
      if (!o.quiet && static_cast<int64_t>(hyps.size()) <= o.show)
        std::printf("  %-50s %s\n", hyps.back().c_str(), hyps.back() == refs.back() ? "" : ("(truth: " + refs.back() + ")").c_str());
    }
  }
  AppResult r;
  r.metric = "exact captions";
  r.value = o.eval_examples ? static_cast<double>(exact) / static_cast<double>(o.eval_examples) : 0.0;
  r.chance = 1.0 / (6.0 * 16 * 16);  // quadrant pair, then colour and shape of each
  r.bleu = corpus_bleu(hyps, refs);
  if (!o.quiet) std::printf("caption: corpus BLEU %.1f\n", r.bleu);
  return r;
}

}  // namespace

App caption_app() {
  Recipe<Captioner> r;
  r.name = "caption";
  r.summary = "the seed's CNN + attention LSTM captioner on generated two-shape scenes";
  r.target = "exact captions >= 95% in under 4 minutes";
  r.variants = {"seed"};
  r.defaults = kDefaults;
  r.loss = [](Captioner& m, std::mt19937_64& rng, const AppOptions& o) {
    Batch b = make_batch(rng, o.batch);
    Captioner::State s = m.start(b.images);
    std::vector<Tensor> logits;
    for (int64_t t = 0; t < kMaxLen; ++t) logits.push_back(std::get<0>(m.step(b.tgt_in.select(1, t), s)));
    Tensor all = stack(logits, 1).reshape({-1, vocab().size()});
    return F::cross_entropy(all, b.tgt_out.reshape({-1}), F::CrossEntropyFuncOptions().ignore_index(kPad));
  };
  r.evaluate = evaluate;
  r.held_out = [](const AppOptions& o) { return std::to_string(o.eval_examples) + " new scenes"; };
  r.on_image = [](const Captioner& m, const std::string& path, const AppOptions& o) {
    const std::string caption = decode(greedy(m, image_input(path, 3, kSize))[0]);
    if (!o.quiet) std::printf("%s: %s\n", path.c_str(), caption.c_str());
  };
  App a = make_app(r);
  // viz: for each word of the caption of held-out scene o.index, the feature
  // cells (8x8) the decoder attended to, over the scene.
  a.viz = [](const AppOptions& in, const std::string& out) {
    const AppOptions o = with_defaults(in, "caption", kDefaults);
    Captioner m;
    load_app(m, o, "caption");
    NoGradGuard ng;
    std::mt19937_64 rng(o.seed * 1000003 + 13);  // evaluate's stream
    Batch b;
    for (int64_t i = 0; i <= o.index; ++i) b = make_batch(rng, 1);
    Captioner::State s = m.start(b.images);
    Tensor input = full({1}, kBos, kInt64);
    std::vector<std::string> words;
    std::vector<Tensor> weights;
    for (int64_t t = 0; t < kMaxLen; ++t) {
      auto [logits, w] = m.step(input, s);
      input = argmax(logits, 1);
      const int64_t id = input.item<int64_t>();
      if (id == kEos) break;
      words.push_back(vocab().words.at(static_cast<size_t>(id)));
      weights.push_back(w.select(0, 0).reshape({8, 8}));
    }
    const int64_t px = 4, side = kSize * px, box = side + 12, per_row = 5;
    const int64_t rows = 1 + (static_cast<int64_t>(words.size()) + per_row - 1) / per_row;
    std::string caption;
    for (const auto& w : words) caption += (caption.empty() ? "" : " ") + w;
    Image img(std::max<int64_t>(per_row * box + 60, 16 + static_cast<int64_t>(caption.size() + 40) * 6),
              40 + rows * (box + 12));
    draw_text(img, 8, 6, "caption: " + caption);
    draw_text(img, 8, 18, "(truth: " + b.captions[0] + ")");
    draw_image(img, 8, 40, b.images.select(0, 0), px);
    draw_text(img, 8, 40 + side + 2, "scene");
    for (size_t k = 0; k < words.size(); ++k) {
      const Tensor w = weights[k] / max(weights[k]);
      const int64_t col = static_cast<int64_t>(k) % per_row, row = 1 + static_cast<int64_t>(k) / per_row;
      draw_image(img, 8 + col * box, 40 + row * (box + 12), b.images.select(0, 0), px, w);
      draw_text(img, 8 + col * box, 40 + row * (box + 12) + side + 2, words[k]);
    }
    colour_scale(img, 8 + per_row * box + 8, 40, side, 1.0);
    const std::string path = out + ".png";
    write_png(path, img);
    return "caption \"" + caption + "\"; wrote " + path;
  };
  return a;
}

}  // namespace attn::apps
