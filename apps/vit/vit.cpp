// vit: the seed's Vision Transformer (PatchEmbedding: a Conv2d with kernel =
// stride = patch; TransformerEncoderBlocks: x + MultiheadAttention(x), then
// x + FFN(x); mean over the patches; a linear classifier) on procedurally
// drawn 32x32 images of four shapes (disc, square, triangle, plus) in random
// colours, sizes and places over a noisy background. The seed's blocks
// call nn.MultiheadAttention with its default sequence-first layout on
// batch-first patches; here the patches are attended as meant (batch_first).
// Variant "lsa": Shifted Patch Tokenization and Locality Self-Attention
// (Lee, Lee, Song 2021), pre-norm blocks.
#include <attn/attn.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "common/app.h"
#include "common/shapes.h"

namespace attn::apps {

namespace {

constexpr int64_t kSize = 32, kPatch = 4, kDim = 64, kHeads = 4, kLayers = 3, kFF = 128, kClasses = 4;

// One image (3, 32, 32) in [0, 1] and its class: a shape in a random colour.
void draw(std::mt19937_64& rng, float* img, int64_t& label) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  label = static_cast<int64_t>(rng() % kClasses);
  noise_background(img, kSize, rng);
  const float r = 5.0f + 5.0f * u(rng);
  const float cx = r + (kSize - 2 * r) * u(rng), cy = r + (kSize - 2 * r) * u(rng);
  float col[3];
  for (float& c : col) c = 0.4f + 0.6f * u(rng);
  draw_shape(img, kSize, static_cast<int>(label), cx, cy, r, col);
}

std::pair<Tensor, Tensor> batch(std::mt19937_64& rng, int64_t n) {
  std::vector<float> pix(static_cast<size_t>(n * 3 * kSize * kSize));
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) draw(rng, pix.data() + i * 3 * kSize * kSize, labels[i]);
  return {from_vector(pix, {n, 3, kSize, kSize}), from_vector(labels)};
}

// The seed's TransformerEncoderBlock.
struct SeedBlock : nn::Module {
  nn::MultiheadAttention attention{nn::MultiheadAttentionOptions(kDim, kHeads).dropout(0.1).batch_first(true)};
  nn::Sequential ffn;
  SeedBlock() {
    ffn.emplace_back<nn::Linear>(nn::LinearOptions(kDim, kFF));
    ffn.emplace_back<nn::ReLU>();
    ffn.emplace_back<nn::Dropout>(0.1);
    ffn.emplace_back<nn::Linear>(nn::LinearOptions(kFF, kDim));
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
  nn::LocalitySelfAttention attention{nn::LocalitySelfAttentionOptions(kDim).heads(kHeads).dim_head(kDim / kHeads).dropout(0.1)};
  nn::LayerNorm norm{nn::LayerNormOptions({kDim})};
  nn::Linear fc1{nn::LinearOptions(kDim, kFF)}, fc2{nn::LinearOptions(kFF, kDim)};
  nn::Dropout drop{0.1};
  LsaBlock() {
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
  std::unique_ptr<nn::Conv2d> proj;                      // the seed's PatchEmbedding
  std::unique_ptr<nn::ShiftedPatchTokenization> spt;     // lsa
  Tensor pos;
  nn::ModuleList blocks;
  nn::Linear classifier{nn::LinearOptions(kDim, kClasses)};
  explicit Vit(const std::string& v) : variant(v) {
    if (variant == "lsa") {
      spt = std::make_unique<nn::ShiftedPatchTokenization>(nn::ShiftedPatchTokenizationOptions(3, kPatch, kDim));
      register_module("patch_embedding", *spt);
    } else {
      proj = std::make_unique<nn::Conv2d>(nn::Conv2dOptions(3, kDim, kPatch).stride(kPatch));
      register_module("patch_embedding", *proj);
    }
    // Learned positions (the seed's ViT has none; its patches could not tell
    // where they are), as the ViT paper.
    pos = (randn({1, (kSize / kPatch) * (kSize / kPatch), kDim}) * 0.02).detach().requires_grad_(true);
    register_parameter("pos_embedding", pos);
    for (int64_t i = 0; i < kLayers; ++i) {
      if (variant == "lsa") blocks.emplace_back<LsaBlock>();
      else blocks.emplace_back<SeedBlock>();
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

const Defaults kDefaults{600, 64, 2e-3};

AppResult evaluate(const Vit& m, const AppOptions& o) {
  NoGradGuard ng;
  std::mt19937_64 rng(o.seed * 1000003 + 5);
  AppResult r;
  r.chance = 1.0 / kClasses;
  int64_t correct = 0, seen = 0;
  for (int64_t s = 0; s < o.eval_examples; s += 100) {
    auto [x, y] = batch(rng, std::min<int64_t>(100, o.eval_examples - s));
    Tensor pred = argmax(m.forward(x), 1);
    correct += sum(eq(pred, y).to(kInt64)).item<int64_t>();
    for (int64_t i = 0; i < y.numel() && seen < o.show && !o.quiet; ++i, ++seen)
      std::printf("  image %lld: a %s -> %s\n", static_cast<long long>(s + i), kShapeNames[y.select(0, i).item<int64_t>()],
                  kShapeNames[pred.select(0, i).item<int64_t>()]);
  }
  r.value = o.eval_examples ? static_cast<double>(correct) / static_cast<double>(o.eval_examples) : 0.0;
  return r;
}

}  // namespace

App vit_app() {
  Recipe<Vit> r;
  r.name = "vit";
  r.summary = "the seed's Vision Transformer on generated images of four shapes (variant lsa: SPT + LSA)";
  r.target = "accuracy >= 90% (chance 25%) in under 2 minutes";
  r.variants = {"seed", "lsa"};
  r.defaults = kDefaults;
  r.loss = [](Vit& m, std::mt19937_64& rng, const AppOptions& o) {
    auto [x, y] = batch(rng, o.batch);
    return F::cross_entropy(m.forward(x), y);
  };
  r.evaluate = evaluate;
  r.held_out = [](const AppOptions& o) { return std::to_string(o.eval_examples) + " new images"; };
  return make_app(r);
}

}  // namespace attn::apps
