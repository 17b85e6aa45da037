// multimodal: the seed's MultimodalAttentionModel (an LSTM over the question's
// word vectors; a CNN: Conv2d(3, 64, 3, padding 1), ReLU, MaxPool2d(2),
// Flatten, Linear to the image vector; the image vector appended to the text
// steps; MultiheadAttention (4 heads) over them; a linear classifier on the
// last, the image's, position) on a synthetic visual question task: an
// image holds one shape in one of four colours; the question asks "what
// colour is the shape" or "what shape is the one", so the answer (one of 4
// colours and 4 shapes) needs both the question and the image. (With two
// objects and questions binding one's colour to the other's shape, this
// one-image-token model stays near 50% after 2000 steps: its single image
// vector and one attention layer do not bind attributes to objects.) As in
// the other applications, the seed's sequence-first attention call on
// batch-first features is made batch-first.
#include <attn/attn.h>

#include <cstdio>
#include <map>
#include <random>

#include "common/app.h"
#include "common/png.h"
#include "common/shapes.h"

namespace attn::apps {

namespace {

constexpr int64_t kSize = 24, kHidden = 64, kWordDim = 32;

struct Vocab {
  std::vector<std::string> words = {"<pad>", "what", "colour", "shape", "is", "the", "one"};
  std::map<std::string, int64_t> id;
  Vocab() {
    for (const char* s : kShapeNames) words.push_back(s);
    for (const char* s : kColourNames) words.push_back(s);
    for (size_t i = 0; i < words.size(); ++i) id[words[i]] = static_cast<int64_t>(i);
  }
};
const Vocab& vocab() {
  static const Vocab v;
  return v;
}
constexpr int64_t kQuestionLen = 6;
constexpr int64_t kAnswers = kNumColours + kNumShapes;  // colours, then shapes

struct Sample {
  std::vector<int64_t> question;
  int64_t answer;
  std::string text;
};

Sample draw(std::mt19937_64& rng, float* img) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  noise_background(img, kSize, rng);
  const int shape = static_cast<int>(rng() % kNumShapes), colour = static_cast<int>(rng() % kNumColours);
  const float r = 4.0f + 4.0f * u(rng);
  draw_shape(img, kSize, shape, r + (kSize - 2 * r) * u(rng), r + (kSize - 2 * r) * u(rng), r, kColours[colour]);
  Sample s;
  const bool ask_colour = rng() % 2;
  std::vector<std::string> q = ask_colour ? std::vector<std::string>{"what", "colour", "is", "the", "shape", "<pad>"}
                                          : std::vector<std::string>{"what", "shape", "is", "the", "one", "<pad>"};
  s.answer = ask_colour ? colour : kNumColours + shape;
  for (const auto& w : q) {
    s.question.push_back(vocab().id.at(w));
    if (w != "<pad>") s.text.append(s.text.empty() ? "" : " ").append(w);
  }
  return s;
}

struct Batch {
  Tensor images, questions, answers;
  std::vector<std::string> texts;
};

Batch make_batch(std::mt19937_64& rng, int64_t n) {
  std::vector<float> pix(static_cast<size_t>(n * 3 * kSize * kSize));
  std::vector<int64_t> q, a;
  Batch b;
  for (int64_t i = 0; i < n; ++i) {
    Sample s = draw(rng, pix.data() + i * 3 * kSize * kSize);
    q.insert(q.end(), s.question.begin(), s.question.end());
    a.push_back(s.answer);
    b.texts.push_back(s.text);
  }
  b.images = from_vector(pix, {n, 3, kSize, kSize});
  b.questions = from_vector(q, {n, kQuestionLen});
  b.answers = from_vector(a);
  return b;
}

struct MultimodalAttentionModel : nn::Module {
  nn::Embedding words{nn::EmbeddingOptions(static_cast<int64_t>(vocab().words.size()), kWordDim)};
  nn::LSTM text_encoder{nn::LSTMOptions(kWordDim, kHidden).batch_first(true)};
  nn::Sequential image_encoder;
  nn::MultiheadAttention attention{nn::MultiheadAttentionOptions(kHidden, 4).batch_first(true)};
  nn::Linear classifier{nn::LinearOptions(kHidden, kAnswers)};
  explicit MultimodalAttentionModel(const std::string& /*variant*/ = "seed") {
    image_encoder.emplace_back<nn::Conv2d>(nn::Conv2dOptions(3, 64, 3).padding(1));
    image_encoder.emplace_back<nn::ReLU>();
    image_encoder.emplace_back<nn::MaxPool2d>(nn::MaxPool2dOptions(2).stride(2));
    image_encoder.emplace_back<nn::Flatten>();
    image_encoder.emplace_back<nn::Linear>(nn::LinearOptions(64 * (kSize / 2) * (kSize / 2), kHidden));
    register_module("words", words);
    register_module("text_encoder", text_encoder);
    register_module("image_encoder", image_encoder);
    register_module("attention", attention);
    register_module("classifier", classifier);
  }
  Tensor forward(const Tensor& questions, const Tensor& images) const {
    Tensor text_features = std::get<0>(text_encoder.forward(words.forward(questions)));
    Tensor image_features = image_encoder.forward(images);
    Tensor combined = cat({text_features, image_features.unsqueeze(1)}, 1);
    Tensor attended = std::get<0>(attention.forward(combined, combined, combined, {}, false));
    return classifier.forward(attended.select(1, attended.size(1) - 1));
  }
};

const Defaults kDefaults{800, 64, 2e-3};

std::string answer_name(int64_t a) { return a < kNumColours ? kColourNames[a] : kShapeNames[a - kNumColours]; }

AppResult evaluate(const MultimodalAttentionModel& m, const AppOptions& o) {
  NoGradGuard ng;
  std::mt19937_64 rng(o.seed * 1000003 + 11);
  AppResult r;
  r.chance = 1.0 / 4;  // the question alone narrows the answer to 4 colours or 4 shapes
  int64_t correct = 0, shown = 0;
  for (int64_t s = 0; s < o.eval_examples; s += 100) {
    Batch b = make_batch(rng, std::min<int64_t>(100, o.eval_examples - s));
    Tensor pred = argmax(m.forward(b.questions, b.images), 1);
    correct += sum(eq(pred, b.answers).to(kInt64)).item<int64_t>();
    for (int64_t i = 0; i < b.answers.numel() && shown < o.show && !o.quiet; ++i, ++shown)
      std::printf("  %-32s -> %-8s (truth: %s)\n", (b.texts[i] + "?").c_str(),
                  answer_name(pred.select(0, i).item<int64_t>()).c_str(),
                  answer_name(b.answers.select(0, i).item<int64_t>()).c_str());
  }
  r.value = o.eval_examples ? static_cast<double>(correct) / static_cast<double>(o.eval_examples) : 0.0;
  return r;
}

}  // namespace

App multimodal_app() {
  Recipe<MultimodalAttentionModel> r;
  r.name = "multimodal";
  r.summary = "the seed's text-LSTM + CNN + multi-head-attention model on visual questions";
  r.target = "accuracy >= 90% (a guess from the question alone: 25%) in under 2 minutes";
  r.variants = {"seed"};
  r.defaults = kDefaults;
  r.loss = [](MultimodalAttentionModel& m, std::mt19937_64& rng, const AppOptions& o) {
    Batch b = make_batch(rng, o.batch);
    return F::cross_entropy(m.forward(b.questions, b.images), b.answers);
  };
  r.evaluate = evaluate;
  r.held_out = [](const AppOptions& o) { return std::to_string(o.eval_examples) + " new image-question pairs"; };
  // --image: both questions the model was trained on, about the user's image.
  r.on_image = [](const MultimodalAttentionModel& m, const std::string& path, const AppOptions& o) {
    const Tensor image = image_input(path, 3, kSize);
    for (const std::vector<std::string>& q : {std::vector<std::string>{"what", "colour", "is", "the", "shape", "<pad>"},
                                              std::vector<std::string>{"what", "shape", "is", "the", "one", "<pad>"}}) {
      std::vector<int64_t> ids;
      std::string text;
      for (const auto& w : q) {
        ids.push_back(vocab().id.at(w));
        if (w != "<pad>") text.append(text.empty() ? "" : " ").append(w);
      }
      const int64_t a = argmax(m.forward(from_vector(ids, {1, kQuestionLen}), image), 1).item<int64_t>();
      if (!o.quiet) std::printf("%s: %s? %s\n", path.c_str(), text.c_str(), answer_name(a).c_str());
    }
  };
  App a = make_app(r);
  // viz: the attention (heads averaged) among the question's words and the
  // image token for held-out pair o.index, and the image.
  a.viz = [](const AppOptions& in, const std::string& out) {
    const AppOptions o = with_defaults(in, "multimodal", kDefaults);
    MultimodalAttentionModel m;
    load_app(m, o, "multimodal");
    NoGradGuard ng;
    std::mt19937_64 rng(o.seed * 1000003 + 11);  // evaluate's stream
    Batch b;
    for (int64_t i = 0; i <= o.index; ++i) b = make_batch(rng, 1);
    Tensor text = std::get<0>(m.text_encoder.forward(m.words.forward(b.questions)));
    Tensor combined = cat({text, m.image_encoder.forward(b.images).unsqueeze(1)}, 1);
    Tensor w = std::get<1>(m.attention.forward(combined, combined, combined, {}, true)).select(0, 0);
    std::vector<std::string> labels;
    const Tensor qc = b.questions.contiguous();
    for (int64_t k = 0; k < kQuestionLen; ++k) labels.push_back(vocab().words.at(static_cast<size_t>(qc.data<int64_t>()[k])));
    labels.push_back("IMAGE");
    const int64_t answer = argmax(m.forward(b.questions, b.images), 1).item<int64_t>();
    Image heat = heatmap(w, labels, labels, "multimodal: " + b.texts[0] + "? " + answer_name(answer) + " (truth: " +
                                                answer_name(b.answers.item<int64_t>()) + ")",
                         24, "keys", "queries");
    // The image beside the map.
    const int64_t px = 5, side = kSize * px;
    Image img(heat.width + side + 20, std::max(heat.height, side + 50));
    for (int64_t y = 0; y < heat.height; ++y)
      for (int64_t x = 0; x < heat.width; ++x) {
        const uint8_t* p = heat.rgb.data() + (y * heat.width + x) * 3;
        img.set(x, y, p[0], p[1], p[2]);
      }
    draw_image(img, heat.width + 8, 30, b.images.select(0, 0), px);
    draw_text(img, heat.width + 8, 34 + side, "the image");
    const std::string path = out + ".png";
    write_png(path, img);
    return "wrote " + path;
  };
  return a;
}

}  // namespace attn::apps
