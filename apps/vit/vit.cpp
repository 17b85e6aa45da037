// vit: the seed's Vision Transformer (PatchEmbedding: a Conv2d with kernel =
// stride = patch; TransformerEncoderBlocks: x + MultiheadAttention(x), then
// x + FFN(x); mean over the patches; a linear classifier), on Fashion-MNIST
// (--dataset fashion-mnist, the default: Debian's dataset-fashion-mnist, 60 000
// training and 10 000 test images of 28x28 grey clothes in 10 classes) or on
// procedurally drawn 32x32 images of four shapes (--dataset shapes). The
// seed's blocks call nn.MultiheadAttention with its default sequence-first
// layout on batch-first patches; here the patches are attended as meant
// (batch_first). Variant "lsa": Shifted Patch Tokenization and Locality
// Self-Attention (Lee, Lee, Song 2021), pre-norm blocks, the same budget.
#include <attn/attn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>

#include "common/app.h"
#include "common/png.h"
#include "common/shapes.h"

namespace attn::apps {

namespace {

// The two datasets' images and the model built for them.
struct Config {
  std::string dataset;
  int64_t channels, size, classes, patch, dim, heads, layers, ff;
  Defaults seed, lsa;  // each variant's default budget
  const Defaults& defaults(const std::string& variant) const { return variant == "lsa" ? lsa : seed; }
};

const Config kShapes{"shapes", 3, 32, kNumShapes, 4, 64, 4, 3, 128, {600, 64, 2e-3}, {600, 64, 2e-3}};
// Fashion-MNIST: the same budget of time, under 10 minutes on 2 cores: 9.6
// epochs for the seed's ViT, 6.9 for SPT + LSA (whose steps cost ~1.4 times
// as much: five shifted copies of each patch, pre-norm blocks, GELU).
const Config kFashion{"fashion-mnist", 1, 28, 10, 4, 64, 4, 4, 128, {9000, 64, 2e-3}, {6500, 64, 2e-3}};

const Config& config_of(const std::string& dataset) {
  if (dataset.empty() || dataset == "fashion-mnist") return kFashion;
  ATTN_CHECK(dataset == "shapes", "vit: --dataset must be fashion-mnist or shapes, got '", dataset, "'");
  return kShapes;
}

// Fashion-MNIST, read once.
const data::FashionMNIST& fashion() {
  static const data::FashionMNIST f = data::load_fashion_mnist();
  return f;
}

// One shapes image (3, 32, 32) in [0, 1] and its class: a shape in a random colour.
void draw(std::mt19937_64& rng, float* img, int64_t& label) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const int64_t size = kShapes.size;
  label = static_cast<int64_t>(rng() % kNumShapes);
  noise_background(img, size, rng);
  const float r = 5.0f + 5.0f * u(rng);
  const float cx = r + (size - 2 * r) * u(rng), cy = r + (size - 2 * r) * u(rng);
  float col[3];
  for (float& c : col) c = 0.4f + 0.6f * u(rng);
  draw_shape(img, size, static_cast<int>(label), cx, cy, r, col);
}

std::pair<Tensor, Tensor> shapes_batch(std::mt19937_64& rng, int64_t n) {
  const int64_t px = 3 * kShapes.size * kShapes.size;
  std::vector<float> pix(static_cast<size_t>(n * px));
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) draw(rng, pix.data() + i * px, labels[i]);
  return {from_vector(pix, {n, 3, kShapes.size, kShapes.size}), from_vector(labels)};
}

struct Augment {
  bool crop = false, flip = false;
};

Augment parse_augment(const std::string& s) {
  Augment a;
  if (s.empty() || s == "none") return a;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(',', start), s.size());
    const std::string item = s.substr(start, end - start);
    if (item == "crop") a.crop = true;
    else if (item == "flip") a.flip = true;
    else throw Error(detail::str("vit: --augment takes none or a comma-separated list of crop and flip, got '", s, "'"));
    start = end + 1;
  }
  return a;
}

// A training batch of Fashion-MNIST drawn at random, optionally shifted by up
// to 2 pixels (a random crop of the image padded by 2) and mirrored.
std::pair<Tensor, Tensor> fashion_batch(std::mt19937_64& rng, int64_t n, const Augment& aug) {
  const data::ImageDataset& d = fashion().train;
  const int64_t s = kFashion.size, N = d.size();
  Tensor x = Tensor::make({n, 1, s, s}, kFloat32, true), y = Tensor::make({n}, kInt64);
  const float* src = d.images.data<float>();
  const int64_t* lab = d.labels.data<int64_t>();
  float* dst = x.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = static_cast<int64_t>(rng() % static_cast<uint64_t>(N));
    y.data<int64_t>()[i] = lab[k];
    const int64_t dx = aug.crop ? static_cast<int64_t>(rng() % 5) - 2 : 0;
    const int64_t dy = aug.crop ? static_cast<int64_t>(rng() % 5) - 2 : 0;
    const bool mirror = aug.flip && (rng() & 1);
    const float* im = src + k * s * s;
    float* out = dst + i * s * s;
    for (int64_t r = 0; r < s; ++r) {
      const int64_t sr = r + dy;
      if (sr < 0 || sr >= s) continue;
      for (int64_t c = 0; c < s; ++c) {
        const int64_t sc0 = c + dx;
        if (sc0 < 0 || sc0 >= s) continue;
        out[r * s + (mirror ? s - 1 - c : c)] = im[sr * s + sc0];
      }
    }
  }
  return {x, y};
}

// The seed's TransformerEncoderBlock.
struct SeedBlock : nn::Module {
  nn::MultiheadAttention attention;
  nn::Sequential ffn;
  explicit SeedBlock(const Config& c)
      : attention(nn::MultiheadAttentionOptions(c.dim, c.heads).dropout(0.1).batch_first(true)) {
    ffn.emplace_back<nn::Linear>(nn::LinearOptions(c.dim, c.ff));
    ffn.emplace_back<nn::ReLU>();
    ffn.emplace_back<nn::Dropout>(0.1);
    ffn.emplace_back<nn::Linear>(nn::LinearOptions(c.ff, c.dim));
    ffn.emplace_back<nn::Dropout>(0.1);
    register_module("attention", attention);
    register_module("ffn", ffn);
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = x + std::get<0>(attention.forward(x, x, x, {}, false));
    return h + ffn.forward(h);
  }
};

// Pre-norm block with Locality Self-Attention.
struct LsaBlock : nn::Module {
  nn::LocalitySelfAttention attention;
  nn::LayerNorm norm;
  nn::Linear fc1, fc2;
  nn::Dropout drop{0.1};
  explicit LsaBlock(const Config& c)
      : attention(nn::LocalitySelfAttentionOptions(c.dim).heads(c.heads).dim_head(c.dim / c.heads).dropout(0.1)),
        norm(nn::LayerNormOptions({c.dim})),
        fc1(nn::LinearOptions(c.dim, c.ff)),
        fc2(nn::LinearOptions(c.ff, c.dim)) {
    register_module("attention", attention);
    register_module("norm", norm);
    register_module("fc1", fc1);
    register_module("fc2", fc2);
    register_module("drop", drop);
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = x + attention.forward(x);  // LSA normalises its own input
    return h + drop.forward(fc2.forward(drop.forward(F::gelu(fc1.forward(norm.forward(h))))));
  }
};

struct Vit : nn::Module {
  std::string variant;
  Config config;
  std::unique_ptr<nn::Conv2d> proj;                   // the seed's PatchEmbedding
  std::unique_ptr<nn::ShiftedPatchTokenization> spt;  // lsa
  Tensor pos;
  nn::ModuleList blocks;
  nn::Linear classifier;
  Vit(const std::string& v, const Config& c)
      : variant(v), config(c), classifier(nn::LinearOptions(c.dim, c.classes)) {
    if (variant == "lsa") {
      spt = std::make_unique<nn::ShiftedPatchTokenization>(
          nn::ShiftedPatchTokenizationOptions(c.channels, c.patch, c.dim));
      register_module("patch_embedding", *spt);
    } else {
      proj = std::make_unique<nn::Conv2d>(nn::Conv2dOptions(c.channels, c.dim, c.patch).stride(c.patch));
      register_module("patch_embedding", *proj);
    }
    // Learned positions (the seed's ViT has none; its patches could not tell
    // where they are), as the ViT paper.
    const int64_t n = (c.size / c.patch) * (c.size / c.patch);
    pos = (randn({1, n, c.dim}) * 0.02).detach().requires_grad_(true);
    register_parameter("pos_embedding", pos);
    for (int64_t i = 0; i < c.layers; ++i) {
      if (variant == "lsa") blocks.emplace_back<LsaBlock>(c);
      else blocks.emplace_back<SeedBlock>(c);
    }
    register_module("transformer_blocks", blocks);
    register_module("classifier", classifier);
  }
  Tensor forward(const Tensor& images) const {
    Tensor x = spt ? spt->forward(images) : proj->forward(images).flatten(2).transpose(1, 2);
    x = x + pos;
    for (size_t i = 0; i < blocks.size(); ++i)
      x = variant == "lsa" ? blocks.at<LsaBlock>(i).forward(x) : blocks.at<SeedBlock>(i).forward(x);
    return classifier.forward(x.mean({1}));
  }
};

const std::vector<std::string>& class_names(const Config& c) {
  static const std::vector<std::string> shapes(kShapeNames, kShapeNames + kNumShapes);
  return c.dataset == "shapes" ? shapes : data::FashionMNIST::classes();
}

// Test accuracy over `count` test images (Fashion-MNIST: its first `count`
// test images, all 10 000 by default; shapes: `count` new images); the
// confusion matrix when asked.
AppResult evaluate(const Vit& m, const AppOptions& o, int64_t count, bool confusion) {
  NoGradGuard ng;
  const Config& c = m.config;
  const auto& names = class_names(c);
  AppResult r;
  r.chance = 1.0 / static_cast<double>(c.classes);
  std::vector<int64_t> cm(static_cast<size_t>(c.classes * c.classes), 0);
  int64_t correct = 0, seen = 0;
  std::mt19937_64 rng(o.seed * 1000003 + 5);
  for (int64_t s = 0; s < count; s += 500) {
    const int64_t n = std::min<int64_t>(500, count - s);
    Tensor x, y;
    if (c.dataset == "shapes") {
      std::tie(x, y) = shapes_batch(rng, n);
    } else {
      x = fashion().test.images.narrow(0, s, n);
      y = fashion().test.labels.narrow(0, s, n);
    }
    Tensor pred = argmax(m.forward(x), 1).contiguous();
    const int64_t* p = pred.data<int64_t>();
    Tensor yc = y.contiguous();
    const int64_t* t = yc.data<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      correct += p[i] == t[i];
      ++cm[static_cast<size_t>(t[i] * c.classes + p[i])];
      if (seen < o.show && !o.quiet && confusion) {
        std::printf("  image %lld: a %s -> %s\n", static_cast<long long>(s + i), names[t[i]].c_str(),
                    names[p[i]].c_str());
        ++seen;
      }
    }
  }
  r.value = count ? static_cast<double>(correct) / static_cast<double>(count) : 0.0;
  if (confusion && !o.quiet) {
    std::printf("confusion matrix (rows: true class, columns: predicted):\n%12s", "");
    for (int64_t j = 0; j < c.classes; ++j) std::printf(" %6.6s", names[j].c_str());
    std::printf("\n");
    for (int64_t i = 0; i < c.classes; ++i) {
      std::printf("%12.12s", names[i].c_str());
      for (int64_t j = 0; j < c.classes; ++j) std::printf(" %6lld", static_cast<long long>(cm[i * c.classes + j]));
      std::printf("\n");
    }
  }
  return r;
}

int64_t test_count(const Config& c, const AppOptions& o) {
  if (c.dataset == "shapes") return o.eval_examples;
  const int64_t n = fashion().test.size();
  return o.eval_examples_set ? std::min(o.eval_examples, n) : n;
}

std::string held_out(const Config& c, const AppOptions& o) {
  if (c.dataset == "shapes") return std::to_string(o.eval_examples) + " new images";
  const int64_t n = test_count(c, o);
  return n == fashion().test.size() ? "the " + std::to_string(n) + " test images of Fashion-MNIST"
                                    : "the first " + std::to_string(n) + " test images of Fashion-MNIST";
}

// --image FILE: the model's input from a PNG or JPEG (grey for Fashion-MNIST,
// resized to the model's size), then the class probabilities.
void classify_file(const Vit& m, const std::string& path, const AppOptions& o) {
  NoGradGuard ng;
  const Config& c = m.config;
  Tensor probs = F::softmax(m.forward(image_input(path, c.channels, c.size)), 1).select(0, 0).contiguous();
  const auto& names = class_names(c);
  std::vector<int64_t> order(static_cast<size_t>(c.classes));
  for (int64_t i = 0; i < c.classes; ++i) order[i] = i;
  const float* p = probs.data<float>();
  std::sort(order.begin(), order.end(), [p](int64_t a, int64_t b) { return p[a] > p[b]; });
  if (o.quiet) return;
  std::printf("%s: %s (%.1f%%)", path.c_str(), names[order[0]].c_str(), 100.0 * p[order[0]]);
  for (int64_t i = 1; i < std::min<int64_t>(3, c.classes); ++i)
    std::printf(", then %s (%.1f%%)", names[order[i]].c_str(), 100.0 * p[order[i]]);
  std::printf("\n");
}

// A checkpoint's model, built for its variant and dataset (one without a
// dataset entry is of the shapes), loaded in eval mode; o gets the options
// with that variant's defaults.
std::unique_ptr<Vit> load(const AppOptions& in, AppOptions& o) {
  AppOptions probe = in;
  if (probe.checkpoint.empty()) probe.checkpoint = "runs/vit.safetensors";
  const io::Metadata meta = checkpoint_metadata(probe, "vit");
  const std::string v = meta.count("variant") ? meta.at("variant") : "seed";
  const Config& c = config_of(meta.count("dataset") ? meta.at("dataset") : "shapes");
  o = with_defaults(in, "vit", c.defaults(v));
  auto m = std::make_unique<Vit>(v, c);
  load_app(*m, o, "vit");
  return m;
}

// viz: attention rollout (Abnar & Zuidema 2020) over one image: each block's
// head-averaged attention plus the identity (the residual), rows
// renormalised, multiplied through the blocks; the model pools the mean of
// its tokens, so a patch's relevance is its column mean of the product.
// Drawn beside the image and overlaid on it; a second file holds every
// layer's and head's attention received per patch (column means).
std::string viz(const AppOptions& in, const std::string& out) {
  AppOptions o;
  const auto loaded = load(in, o);
  const Vit& m = *loaded;
  const std::string& v = m.variant;
  const Config& c = m.config;
  NoGradGuard ng;
  const auto& names = class_names(c);
  Tensor image;
  std::string truth = "?";
  if (!o.image.empty()) {
    image = image_input(o.image, c.channels, c.size);
  } else if (c.dataset == "shapes") {
    std::mt19937_64 rng(o.seed * 1000003 + 5);  // evaluate's stream
    Tensor y;
    for (int64_t i = 0; i <= o.index; ++i) std::tie(image, y) = shapes_batch(rng, 1);
    truth = names[y.item<int64_t>()];
  } else {
    ATTN_CHECK(o.index >= 0 && o.index < fashion().test.size(), "vit: viz --index ", o.index,
               " is not a test image (0 to ", fashion().test.size() - 1, ")");
    image = fashion().test.images.narrow(0, o.index, 1).contiguous();
    truth = names[fashion().test.labels.data<int64_t>()[o.index]];
  }
  // The blocks' attention (1, H, N, N), recomputed beside the forward.
  Tensor x = m.spt ? m.spt->forward(image) : m.proj->forward(image).flatten(2).transpose(1, 2);
  x = x + m.pos;
  std::vector<Tensor> maps;
  for (size_t i = 0; i < m.blocks.size(); ++i) {
    if (v == "lsa") {
      const LsaBlock& b = m.blocks.at<LsaBlock>(i);
      const nn::LocalitySelfAttention& a = b.attention;
      const int64_t N = x.size(1), H = a.options.heads(), d = a.options.dim_head();
      auto qkv = chunk(a.to_qkv.forward(a.norm.forward(x)), 3, -1);
      auto heads = [&](const Tensor& t) { return t.reshape({1, N, H, d}).transpose(1, 2); };
      Tensor scores = matmul(heads(qkv[0]) * exp(a.temperature), heads(qkv[1]).transpose(-2, -1));
      maps.push_back(F::softmax(masked_fill(scores, eye(N, N, kBool), -INFINITY), -1));
      x = b.forward(x);
    } else {
      const SeedBlock& b = m.blocks.at<SeedBlock>(i);
      maps.push_back(std::get<1>(b.attention.forward(x, x, x, {}, true, {}, false)));
      x = b.forward(x);
    }
  }
  const int64_t pred = argmax(m.classifier.forward(x.mean({1})), 1).item<int64_t>();
  const int64_t N = x.size(1), g = c.size / c.patch;
  Tensor rollout = eye(N, N);
  for (const Tensor& w : maps) {
    Tensor a = w.select(0, 0).mean({0}) * 0.5 + eye(N, N) * 0.5;
    rollout = matmul(a / a.sum({-1}, true), rollout);
  }
  Tensor rel = rollout.mean({0});
  rel = (rel / max(rel)).reshape({g, g}).contiguous();
  // Panels: the image, and the image under the relevance (scale px per pixel).
  const int64_t px = c.size <= 28 ? 8 : 7, side = c.size * px, top = 40;
  Image img(2 * side + 110, side + top + 30);
  draw_text(img, 8, 6, "vit attention rollout: predicted " + names[pred] + " (true " + truth + ")");
  draw_text(img, 8, 20, "left: the image, right: patch relevance over it");
  draw_image(img, 0, top, image.select(0, 0), px);
  draw_image(img, side + 10, top, image.select(0, 0), px, rel);
  draw_text(img, 8, top + side + 8, "pixels");
  draw_text(img, side + 10, top + side + 8, "patches (" + std::to_string(g) + "x" + std::to_string(g) + ")");
  colour_scale(img, 2 * side + 24, top, side, 1.0);
  const std::string rollout_path = out + "_rollout.png";
  write_png(rollout_path, img);
  // Every layer and head: attention received per patch (column means), each map scaled to its maximum.
  const int64_t H = maps[0].size(1), L = static_cast<int64_t>(maps.size()), cell = 6, box = g * cell + 8;
  const std::string grid_title = "vit: attention received per patch, by layer (rows) and head (columns)";
  Image grid(std::max<int64_t>(70 + H * box + 50, 16 + static_cast<int64_t>(grid_title.size()) * 6), 40 + L * box);
  draw_text(grid, 8, 6, grid_title);
  for (int64_t h = 0; h < H; ++h) draw_text(grid, 70 + h * box, 22, "head " + std::to_string(h));
  for (int64_t l = 0; l < L; ++l) {
    draw_text(grid, 8, 40 + l * box + g * cell / 2 - 3, "layer " + std::to_string(l));
    for (int64_t h = 0; h < H; ++h) {
      Tensor recv = maps[l].select(0, 0).select(0, h).mean({0});
      recv = (recv / max(recv)).contiguous();
      const float* q = recv.data<float>();
      for (int64_t k = 0; k < N; ++k) {
        uint8_t br, bg, bb;
        scale_colour(q[k], br, bg, bb);
        for (int64_t dy = 0; dy < cell; ++dy)
          for (int64_t dx = 0; dx < cell; ++dx)
            grid.set(70 + h * box + (k % g) * cell + dx, 40 + l * box + (k / g) * cell + dy, br, bg, bb);
      }
    }
  }
  colour_scale(grid, 70 + H * box + 8, 40, std::max<int64_t>(60, L * box - 8), 1.0);
  const std::string heads_path = out + "_heads.png";
  write_png(heads_path, grid);
  return "predicted " + names[pred] + " (true " + truth + "); wrote " + rollout_path + " and " + heads_path;
}

}  // namespace

App vit_app() {
  App a;
  a.name = "vit";
  a.summary = "the seed's Vision Transformer on Fashion-MNIST (--dataset shapes: generated images of four shapes; "
              "variant lsa: SPT + LSA)";
  a.target = "Fashion-MNIST test accuracy >= 88% in under 10 minutes (shapes: >= 90% in under 2 minutes)";
  a.variants = {"seed", "lsa"};
  a.viz = viz;
  a.train = [](const AppOptions& in) {
    const Config& c = config_of(in.dataset);
    const std::string v = in.variant.empty() ? "seed" : in.variant;
    const AppOptions o = with_defaults(in, "vit", c.defaults(v));
    const Augment aug = parse_augment(o.augment);
    ATTN_CHECK(c.dataset != "shapes" || (!aug.crop && !aug.flip), "vit: --augment is for --dataset fashion-mnist");
    if (c.dataset != "shapes") fashion();  // read (and checked) before the model is built
    manual_seed(o.seed);
    Vit m(v, c);
    std::mt19937_64 rng(o.seed);
    TrainHooks hooks;
    hooks.examples_per_step = o.batch;
    hooks.metric_name = "test_accuracy";
    hooks.metric = [&m, &o, &c] {  // a quick look on the first 1000 test images
      m.eval();
      const double acc = evaluate(m, o, std::min<int64_t>(1000, test_count(c, o)), false).value;
      m.train();
      return acc;
    };
    const double secs = train_loop(
        m, o, "vit",
        [&](int64_t) {
          auto [x, y] = c.dataset == "shapes" ? shapes_batch(rng, o.batch) : fashion_batch(rng, o.batch, aug);
          return F::cross_entropy(m.forward(x), y);
        },
        {{"variant", v}, {"dataset", c.dataset}}, 1.0, hooks);
    AppResult e = evaluate(m, o, test_count(c, o), false);
    e.seconds = secs;
    report(o, "vit (" + v + ", " + c.dataset + ")", e, held_out(c, o));
    return e;
  };
  a.eval = [](const AppOptions& in) {
    AppOptions o;
    const auto loaded = load(in, o);
    const Vit& m = *loaded;
    const std::string& v = m.variant;
    const Config& c = m.config;
    if (!o.image.empty()) {
      classify_file(m, o.image, o);
      return AppResult{};
    }
    AppResult e = evaluate(m, o, test_count(c, o), true);
    report(o, "vit (" + v + ", " + c.dataset + ")", e, held_out(c, o));
    return e;
  };
  return a;
}

}  // namespace attn::apps
