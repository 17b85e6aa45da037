// Models in the layouts people hold, against the framework that defines them:
// torchvision's VisionTransformer (small configurations and vit_b_16 at 224)
// and SwinTransformer v1 and v2
// (tests/parity/gen_models.py saves random ones with torch.save at test time), loaded by attn from the .pt file by
// torchvision's keys (strict), run in eval mode: logits and the gradient of
// the logits with respect to the image, float32 against torchvision in
// float64; float64 to rounding. Presets, configuration errors, bad images.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>

#include "support/op_table.h"

namespace attn {
namespace {

using json = nlohmann::json;
using models::SwinTransformer;
using models::SwinTransformerOptions;
using models::VisionTransformer;
using models::VisionTransformerOptions;

std::string dir() {
  const char* d = std::getenv("ATTN_MODELS_DIR");
  return d ? d : "";
}

VisionTransformerOptions vit_options(const json& c) {
  VisionTransformerOptions o(c.at("image_size"), c.at("patch_size"), c.at("num_layers"), c.at("num_heads"),
                             c.at("hidden_dim"), c.at("mlp_dim"));
  o.num_classes(c.value("num_classes", int64_t{1000}))
      .dropout(c.value("dropout", 0.0))
      .attention_dropout(c.value("attention_dropout", 0.0));
  if (c.contains("representation_size")) o.representation_size(c.at("representation_size").get<int64_t>());
  return o;
}

double max_abs(const Tensor& t) { return amax(abs(t.to(kFloat64)).reshape({-1}), {0}).item<double>(); }

// The bar for float32: within 1e-4 of the largest reference entry.
void expect_close(const std::string& what, const Tensor& got, const Tensor& ref, double rel) {
  const double atol = rel * max_abs(ref);
  testing::Comparison c = testing::compare(what, got, ref, 0.0, atol);
  EXPECT_TRUE(c.ok) << c.message;
  std::printf("%s: max error %.3g of max |ref| %.3g (%.2g of the tolerance)\n", what.c_str(), c.max_abs,
              max_abs(ref), c.max_abs / atol);
}

// Loads a case's .pt into `model` (torchvision's keys, strict), runs it in
// eval mode in dtype `dt`, and compares logits and d logits / d images with
// the float64 reference: within 1e-4 of the largest entry in float32, 1e-12
// in float64.
void check_case(nn::Module& model, const std::function<Tensor(const Tensor&)>& forward, const std::string& key,
                const io::SafetensorsFile& f, DType dt) {
  auto T = [&](const std::string& name) { return f.tensors.at(key + "." + name); };
  model.load(dir() + "/" + key + ".pt");
  model.to(dt);
  model.eval();
  Tensor images = T("images").to(dt).detach().clone().requires_grad_(true);
  Tensor logits = forward(images);
  EXPECT_EQ(logits.dtype(), dt);
  (logits * T("glogits").to(dt)).sum().backward();
  const std::string what = key + (dt == kFloat32 ? " f32" : " f64");
  const double rel = dt == kFloat32 ? 1e-4 : 1e-12;
  expect_close(what + " logits", logits, T("logits"), rel);
  expect_close(what + " d logits / d images", images.grad(), T("gimages"), rel);
}

TEST(Models, TorchvisionVisionTransformerMatches) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_MODELS_DIR is not set (ctest sets it)";
  io::SafetensorsFile f = io::read_safetensors(dir() + "/cases.safetensors");
  int n = 0;
  for (const auto& [key, cfg_text] : f.metadata) {
    if (key.rfind("vit_", 0) != 0) continue;
    SCOPED_TRACE(key + " " + cfg_text);
    const json cfg = json::parse(cfg_text);
    const bool full = cfg.contains("preset");  // vit_b_16 itself: float32 only
    for (DType dt : {kFloat32, kFloat64}) {
      if (full && dt == kFloat64) continue;
      VisionTransformer vit(full ? VisionTransformerOptions::preset(cfg.at("preset")) : vit_options(cfg));
      check_case(vit, [&](const Tensor& x) { return vit.forward(x); }, key, f, dt);
    }
    ++n;
  }
  EXPECT_EQ(n, 5);  // 4 small configurations and vit_b_16
}

SwinTransformerOptions swin_options(const json& c) {
  SwinTransformerOptions o(c.at("patch_size"), c.at("embed_dim"), c.at("depths"), c.at("num_heads"),
                           c.at("window_size"));
  o.num_classes(c.value("num_classes", int64_t{1000})).version(c.value("version", 1));
  return o;
}

TEST(Models, TorchvisionSwinTransformerMatches) {
  if (dir().empty()) GTEST_SKIP() << "ATTN_MODELS_DIR is not set (ctest sets it)";
  io::SafetensorsFile f = io::read_safetensors(dir() + "/cases.safetensors");
  int n = 0, v2 = 0;
  for (const auto& [key, cfg_text] : f.metadata) {
    if (key.rfind("swin_", 0) != 0) continue;
    SCOPED_TRACE(key + " " + cfg_text);
    const json cfg = json::parse(cfg_text);
    for (DType dt : {kFloat32, kFloat64}) {
      SwinTransformer swin(swin_options(cfg));
      // The buffers attn computes are the ones torchvision saved.
      const nn::StateDict mine = swin.state_dict();
      const io::TensorMap saved = io::load_torch(dir() + "/" + key + ".pt");
      for (const auto& [name, t] : saved) {
        if (name.find("relative_position_index") != std::string::npos ||
            name.find("relative_coords_table") != std::string::npos) {
          EXPECT_TRUE(equal(mine.at(name), t)) << name;
        }
      }
      check_case(swin, [&](const Tensor& x) { return swin.forward(x); }, key, f, dt);
    }
    ++n;
    v2 += cfg.value("version", 1) == 2;
  }
  EXPECT_EQ(n, 5);
  EXPECT_EQ(v2, 2);
}

TEST(Models, SwinTransformerPresetsAndTraining) {
  // swin_t has 28.3M parameters in torchvision, swin_v2_t 28.4M.
  for (auto [name, expected] : {std::pair<const char*, int64_t>{"swin_t", 28288354}, {"swin_v2_t", 28351570}}) {
    SwinTransformer m(SwinTransformerOptions::preset(name));
    int64_t count = 0;
    for (const auto& [n, p] : m.named_parameters()) count += p.numel();
    EXPECT_EQ(count, expected) << name;
  }
  EXPECT_EQ(SwinTransformerOptions::presets().size(), 6u);
  EXPECT_THROW(SwinTransformerOptions::preset("swin_xl"), Error);
  EXPECT_THROW(SwinTransformer(SwinTransformerOptions({4, 4}, 16, {2, 2}, {3, 4}, {4, 4})), Error);  // 16 % 3
  EXPECT_THROW(SwinTransformer(SwinTransformerOptions({4, 4}, 16, {2, 2}, {2}, {4, 4})), Error);
  // A few training steps in train mode (dropout, stochastic depth): the loss falls.
  manual_seed(3);
  SwinTransformer m(SwinTransformerOptions({4, 4}, 16, {2, 2}, {2, 4}, {4, 4}).num_classes(3).dropout(0.1).version(2));
  m.train();
  optim::AdamW opt(m.parameters(), optim::AdamWOptions(3e-3));
  Generator g(4);
  Tensor x = randn({6, 3, 32, 32}, kFloat32, &g);
  Tensor y = from_vector(std::vector<int64_t>{0, 1, 2, 0, 1, 2});
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    Tensor loss = F::cross_entropy(m.forward(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first);
  EXPECT_THROW(m.forward(randn({1, 1, 32, 32})), Error);
  EXPECT_THROW(m.forward(randn({1, 3, 2, 2})), Error);
}

TEST(Models, VisionTransformerPresetsAndKeys) {
  // The presets' sizes (parameter counts as torchvision's: vit_b_16 86.6M).
  VisionTransformer b16(VisionTransformerOptions::preset("vit_b_16"));
  int64_t count = 0;
  for (const auto& [name, p] : b16.named_parameters()) count += p.numel();
  EXPECT_EQ(count, 86567656);
  const auto sd = b16.state_dict();
  for (const char* k : {"class_token", "conv_proj.weight", "encoder.pos_embedding",
                        "encoder.layers.encoder_layer_11.self_attention.in_proj_weight",
                        "encoder.layers.encoder_layer_0.mlp.3.bias", "encoder.ln.weight", "heads.head.weight"})
    EXPECT_TRUE(sd.count(k)) << k;
  EXPECT_EQ(sd.at("encoder.pos_embedding").shape(), (Shape{1, 197, 768}));
  EXPECT_EQ(VisionTransformerOptions::presets().size(), 5u);
  EXPECT_THROW(VisionTransformerOptions::preset("vit_z_99"), Error);
  // Configurations torchvision refuses, and images of the wrong size.
  EXPECT_THROW(VisionTransformer(VisionTransformerOptions(30, 8, 1, 2, 32, 64)), Error);
  EXPECT_THROW(VisionTransformer(VisionTransformerOptions(32, 8, 1, 3, 32, 64)), Error);
  VisionTransformer small(VisionTransformerOptions(32, 8, 1, 2, 32, 64).num_classes(4));
  small.eval();
  EXPECT_EQ(small.forward(randn({2, 3, 32, 32})).shape(), (Shape{2, 4}));
  try {
    small.forward(randn({2, 3, 64, 64}));
    ADD_FAILURE() << "a 64x64 image was accepted by a 32x32 model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(B, 3, 32, 32) for image_size 32, got (2, 3, 64, 64)"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(small.forward(randn({2, 1, 32, 32})), Error);
  EXPECT_THROW(small.forward(randn({3, 32, 32})), Error);
}

}  // namespace
}  // namespace attn
