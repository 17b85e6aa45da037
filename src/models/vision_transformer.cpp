// torchvision's VisionTransformer, built from attn's nn modules with
// torchvision 0.14's names (see attn/models/vision_transformer.h).
#include "attn/models/vision_transformer.h"

#include "attn/error.h"

namespace attn::models {

namespace {

struct Preset {
  const char* name;
  int64_t patch, layers, heads, hidden, mlp;
};
constexpr Preset kPresets[] = {{"vit_b_16", 16, 12, 12, 768, 3072},
                               {"vit_b_32", 32, 12, 12, 768, 3072},
                               {"vit_l_16", 16, 24, 16, 1024, 4096},
                               {"vit_l_32", 32, 24, 16, 1024, 4096},
                               {"vit_h_14", 14, 32, 16, 1280, 5120}};

const VisionTransformerOptions& checked(const VisionTransformerOptions& o) {
  const char* op = "VisionTransformer";
  ATTN_CHECK(o.image_size() > 0 && o.patch_size() > 0 && o.num_layers() >= 0 && o.num_heads() > 0 &&
                 o.hidden_dim() > 0 && o.mlp_dim() > 0 && o.num_classes() > 0,
             op, ": sizes must be positive (image_size ", o.image_size(), ", patch_size ", o.patch_size(),
             ", num_layers ", o.num_layers(), ", num_heads ", o.num_heads(), ", hidden_dim ", o.hidden_dim(),
             ", mlp_dim ", o.mlp_dim(), ", num_classes ", o.num_classes(), ")");
  ATTN_CHECK(o.image_size() % o.patch_size() == 0, op, ": image_size ", o.image_size(),
             " is not divisible by patch_size ", o.patch_size());
  ATTN_CHECK(o.hidden_dim() % o.num_heads() == 0, op, ": hidden_dim ", o.hidden_dim(),
             " is not divisible by num_heads ", o.num_heads());
  ATTN_CHECK(!o.representation_size() || *o.representation_size() > 0, op, ": representation_size must be positive");
  return o;
}

nn::LayerNormOptions norm(int64_t dim) { return nn::LayerNormOptions({dim}).eps(1e-6); }

}  // namespace

VisionTransformerOptions VisionTransformerOptions::preset(const std::string& name) {
  for (const Preset& p : kPresets)
    if (name == p.name) return VisionTransformerOptions(224, p.patch, p.layers, p.heads, p.hidden, p.mlp);
  std::string known;
  for (const Preset& p : kPresets) known += std::string(known.empty() ? "" : ", ") + p.name;
  throw Error("VisionTransformer: no preset named \"" + name + "\" (presets: " + known + ")");
}

std::vector<std::string> VisionTransformerOptions::presets() {
  std::vector<std::string> out;
  for (const Preset& p : kPresets) out.push_back(p.name);
  return out;
}

ViTEncoderBlock::ViTEncoderBlock(int64_t num_heads, int64_t hidden_dim, int64_t mlp_dim, double dropout_p,
                                 double attention_dropout)
    : Module("EncoderBlock"),
      ln_1(norm(hidden_dim)),
      self_attention(nn::MultiheadAttentionOptions(hidden_dim, num_heads).dropout(attention_dropout).batch_first(true)),
      dropout(nn::DropoutOptions(dropout_p)),
      ln_2(norm(hidden_dim)) {
  mlp.emplace_back<nn::Linear>(nn::LinearOptions(hidden_dim, mlp_dim));
  mlp.emplace_back<nn::GELU>();
  mlp.emplace_back<nn::Dropout>(nn::DropoutOptions(dropout_p));
  mlp.emplace_back<nn::Linear>(nn::LinearOptions(mlp_dim, hidden_dim));
  mlp.emplace_back<nn::Dropout>(nn::DropoutOptions(dropout_p));
  register_module("ln_1", ln_1);
  register_module("self_attention", self_attention);
  register_module("dropout", dropout);
  register_module("ln_2", ln_2);
  register_module("mlp", mlp);
}

Tensor ViTEncoderBlock::forward(const Tensor& input) {
  Tensor h = ln_1.forward(input);
  Tensor x = dropout.forward(std::get<0>(self_attention.forward(h, h, h, {}, false))) + input;
  return x + mlp.forward(ln_2.forward(x));
}

ViTEncoder::ViTEncoder(int64_t seq_length, const VisionTransformerOptions& o)
    : Module("Encoder"), dropout(nn::DropoutOptions(o.dropout())), ln(norm(o.hidden_dim())) {
  pos_embedding = randn({1, seq_length, o.hidden_dim()}) * 0.02;  // torchvision: normal(std=0.02)
  register_parameter("pos_embedding", pos_embedding);
  register_module("dropout", dropout);
  for (int64_t i = 0; i < o.num_layers(); ++i) {
    blocks.push_back(std::make_unique<ViTEncoderBlock>(o.num_heads(), o.hidden_dim(), o.mlp_dim(), o.dropout(),
                                                       o.attention_dropout()));
    layers.add("encoder_layer_" + std::to_string(i), *blocks.back());
  }
  register_module("layers", layers);
  register_module("ln", ln);
}

Tensor ViTEncoder::forward(const Tensor& input) {
  Tensor x = dropout.forward(input + pos_embedding);
  for (auto& b : blocks) x = b->forward(x);
  return ln.forward(x);
}

VisionTransformer::VisionTransformer(const VisionTransformerOptions& options)
    : Module("VisionTransformer"),
      conv_proj(nn::Conv2dOptions(3, checked(options).hidden_dim(), options.patch_size()).stride(options.patch_size())),
      encoder((options.image_size() / options.patch_size()) * (options.image_size() / options.patch_size()) + 1,
              options),
      options_(options) {
  class_token = zeros({1, 1, options.hidden_dim()});
  register_module("conv_proj", conv_proj);
  register_parameter("class_token", class_token);
  register_module("encoder", encoder);
  const int64_t head_in = options.representation_size().value_or(options.hidden_dim());
  if (options.representation_size()) {
    pre_logits = std::make_unique<nn::Linear>(nn::LinearOptions(options.hidden_dim(), head_in));
    heads.add("pre_logits", *pre_logits);
    heads.add("act", act);
  }
  head = std::make_unique<nn::Linear>(nn::LinearOptions(head_in, options.num_classes()));
  heads.add("head", *head);
  register_module("heads", heads);
}

Tensor VisionTransformer::features(const Tensor& images) {
  const char* op = "VisionTransformer";
  const int64_t S = options_.image_size(), P = options_.patch_size(), D = options_.hidden_dim();
  ATTN_CHECK(images.defined() && images.dim() == 4, op, ": images must be (B, 3, ", S, ", ", S, "), got ",
             images.defined() ? shape_str(images.shape()) : "an undefined tensor");
  ATTN_CHECK(images.size(1) == 3 && images.size(2) == S && images.size(3) == S, op, ": images must be (B, 3, ", S,
             ", ", S, ") for image_size ", S, ", got ", shape_str(images.shape()));
  const int64_t B = images.size(0), n = S / P;
  Tensor x = conv_proj.forward(images).reshape({B, D, n * n}).permute({0, 2, 1});  // (B, N, D)
  x = cat({class_token.expand({B, 1, D}), x}, 1);
  return encoder.forward(x).select(1, 0);
}

Tensor VisionTransformer::forward(const Tensor& images) {
  Tensor x = features(images);
  if (pre_logits) x = act.forward(pre_logits->forward(x));
  return head->forward(x);
}

}  // namespace attn::models
