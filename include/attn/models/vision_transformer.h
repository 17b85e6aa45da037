// torchvision's VisionTransformer (torchvision.models.vision_transformer,
// arXiv 2010.11929): the same constructor arguments, presets and state_dict
// keys as torchvision 0.14, so a state_dict saved with
// torch.save(model.state_dict(), "vit.pt") loads by its keys:
//   class_token, conv_proj.{weight,bias}, encoder.pos_embedding,
//   encoder.layers.encoder_layer_N.{ln_1, self_attention, ln_2, mlp.0, mlp.3},
//   encoder.ln, heads.head (and heads.pre_logits with representation_size).
//
//   attn::models::VisionTransformer vit(attn::models::VisionTransformerOptions::preset("vit_b_16"));
//   vit.load("vit_b_16.pt");  // torch.save(torchvision.models.vit_b_16().state_dict(), "vit_b_16.pt")
//   vit.eval();
//   attn::Tensor logits = vit.forward(images);  // (B, 3, 224, 224) -> (B, 1000)
//
// Not supported: conv_stem_configs (the ViT-C variants), norm layers other
// than LayerNorm(eps=1e-6).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attn/nn.h"

namespace attn::models {

// A container whose children have the names torchvision gives them
// ("encoder_layer_0", "pre_logits", ...); printed as a Sequential. The
// children are owned elsewhere.
class NamedSequential : public nn::Module {
 public:
  NamedSequential() : Module("Sequential") {}
  void add(const std::string& name, nn::Module& child) { add_child(name, &child); }
};

struct VisionTransformerOptions {
  VisionTransformerOptions(int64_t image_size, int64_t patch_size, int64_t num_layers, int64_t num_heads,
                           int64_t hidden_dim, int64_t mlp_dim)
      : image_size_(image_size), patch_size_(patch_size), num_layers_(num_layers), num_heads_(num_heads),
        hidden_dim_(hidden_dim), mlp_dim_(mlp_dim) {}
  ATTN_ARG(int64_t, image_size);
  ATTN_ARG(int64_t, patch_size);
  ATTN_ARG(int64_t, num_layers);
  ATTN_ARG(int64_t, num_heads);
  ATTN_ARG(int64_t, hidden_dim);
  ATTN_ARG(int64_t, mlp_dim);
  ATTN_ARG(double, dropout) = 0.0;
  ATTN_ARG(double, attention_dropout) = 0.0;
  ATTN_ARG(int64_t, num_classes) = 1000;
  ATTN_ARG(std::optional<int64_t>, representation_size) = std::nullopt;


 public:
  // torchvision's vit_b_16, vit_b_32, vit_l_16, vit_l_32, vit_h_14 (image 224).
  static VisionTransformerOptions preset(const std::string& name);
  static std::vector<std::string> presets();
};

// One encoder block: x + attn(ln_1(x)), then + mlp(ln_2(.)) (pre-norm).
class ViTEncoderBlock : public nn::Module {
 public:
  ViTEncoderBlock(int64_t num_heads, int64_t hidden_dim, int64_t mlp_dim, double dropout, double attention_dropout);
  Tensor forward(const Tensor& x);  // (B, N, hidden) -> (B, N, hidden)
  nn::LayerNorm ln_1;
  nn::MultiheadAttention self_attention;
  nn::Dropout dropout;
  nn::LayerNorm ln_2;
  nn::Sequential mlp;  // 0: Linear, 1: GELU, 2: Dropout, 3: Linear, 4: Dropout
};

class ViTEncoder : public nn::Module {
 public:
  ViTEncoder(int64_t seq_length, const VisionTransformerOptions& o);
  Tensor forward(const Tensor& x);  // adds pos_embedding, runs the blocks, the final norm
  Tensor pos_embedding;             // (1, seq_length, hidden)
  nn::Dropout dropout;
  NamedSequential layers;  // children encoder_layer_0 ... encoder_layer_{L-1}
  nn::LayerNorm ln;
  std::vector<std::unique_ptr<ViTEncoderBlock>> blocks;
};

class VisionTransformer : public nn::Module {
 public:
  explicit VisionTransformer(const VisionTransformerOptions& options);
  // images (B, 3, image_size, image_size) -> logits (B, num_classes).
  Tensor forward(const Tensor& images);
  // The classification token after the final norm: (B, hidden), before the head.
  Tensor features(const Tensor& images);
  const VisionTransformerOptions& options() const { return options_; }

  nn::Conv2d conv_proj;
  Tensor class_token;  // (1, 1, hidden)
  ViTEncoder encoder;
  NamedSequential heads;  // pre_logits, act (Tanh) with representation_size; head
  std::unique_ptr<nn::Linear> pre_logits, head;
  nn::Tanh act;

 private:
  VisionTransformerOptions options_;
};

}  // namespace attn::models
