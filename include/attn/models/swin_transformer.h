// torchvision's SwinTransformer, v1 (arXiv 2103.14030) and v2 (arXiv
// 2111.09883), with torchvision 0.14's constructor arguments, presets and
// state_dict keys:
//   features.0.0 (patch Conv2d), features.0.2 (LayerNorm),
//   features.{1,3,5,7}.N.{norm1, attn.{qkv, proj, relative_position_bias_table
//   | logit_scale, cpb_mlp.0, cpb_mlp.2}, norm2, mlp.0, mlp.3},
//   features.{2,4,6}.{reduction, norm} (patch merging), norm, head,
//   and the buffers attn.relative_position_index (and v2's
//   attn.relative_coords_table), computed as torchvision computes them.
//
// Shifted-window attention runs through the fused kernel, one window a batch
// entry: the relative position bias (v1: the learned table; v2: 16 sigmoid of
// the continuous-position MLP) and the shift mask (-100 between regions) are
// one additive float mask per window, so no (N, N) matrix over the whole
// image exists and the bias table's gradient comes from the kernel. v2's
// scaled cosine attention is the same kernel on normalised q and k, q scaled
// by exp(min(logit_scale, log 100)) per head.
//
//   attn::models::SwinTransformer swin(attn::models::SwinTransformerOptions::preset("swin_t"));
//   swin.load("swin_t.pt");  // torch.save(torchvision.models.swin_t().state_dict(), "swin_t.pt")
//   swin.eval();
//   attn::Tensor logits = swin.forward(images);  // (B, 3, H, W) -> (B, 1000)
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attn/models/vision_transformer.h"
#include "attn/nn.h"

namespace attn::models {

struct SwinTransformerOptions {
  SwinTransformerOptions(std::vector<int64_t> patch_size, int64_t embed_dim, std::vector<int64_t> depths,
                         std::vector<int64_t> num_heads, std::vector<int64_t> window_size)
      : patch_size_(std::move(patch_size)), embed_dim_(embed_dim), depths_(std::move(depths)),
        num_heads_(std::move(num_heads)), window_size_(std::move(window_size)) {}
  ATTN_ARG(std::vector<int64_t>, patch_size);   // (h, w)
  ATTN_ARG(int64_t, embed_dim);
  ATTN_ARG(std::vector<int64_t>, depths);       // blocks per stage
  ATTN_ARG(std::vector<int64_t>, num_heads);    // heads per stage
  ATTN_ARG(std::vector<int64_t>, window_size);  // (h, w)
  ATTN_ARG(double, mlp_ratio) = 4.0;
  ATTN_ARG(double, dropout) = 0.0;
  ATTN_ARG(double, attention_dropout) = 0.0;
  ATTN_ARG(double, stochastic_depth_prob) = 0.1;  // rises linearly over the blocks, as torchvision
  ATTN_ARG(int64_t, num_classes) = 1000;
  ATTN_ARG(int, version) = 1;  // 2: SwinTransformerBlockV2, ShiftedWindowAttentionV2, PatchMergingV2

 public:
  // torchvision's swin_t, swin_s, swin_b, swin_v2_t, swin_v2_s, swin_v2_b.
  static SwinTransformerOptions preset(const std::string& name);
  static std::vector<std::string> presets();
};

// Shifted-window multi-head self-attention on (B, H, W, C).
class ShiftedWindowAttention : public nn::Module {
 public:
  ShiftedWindowAttention(int64_t dim, std::vector<int64_t> window_size, std::vector<int64_t> shift_size,
                         int64_t num_heads, double attention_dropout, double dropout, int version);
  Tensor forward(const Tensor& x);
  // The (heads, N, N) bias added to every window's scores.
  Tensor relative_position_bias();

  nn::Linear qkv, proj;
  Tensor relative_position_bias_table;  // v1: ((2wh-1)(2ww-1), heads)
  Tensor logit_scale;                   // v2: (heads, 1, 1)
  nn::Sequential cpb_mlp;               // v2: Linear(2, 512), ReLU, Linear(512, heads, bias=false)
  Tensor relative_position_index;       // buffer: (N * N) int64
  Tensor relative_coords_table;         // v2 buffer: (1, 2wh-1, 2ww-1, 2)

 private:
  // Per padded map size and shift: the token order of the windows (the roll
  // and the partition as one gather), its inverse, and the shift mask.
  struct Layout {
    Tensor gather, scatter, shift_mask;
  };
  const Layout& layout(int64_t pH, int64_t pW, int64_t s0, int64_t s1);
  std::map<std::array<int64_t, 4>, Layout> layouts_;
  std::vector<int64_t> window_, shift_;
  int64_t heads_;
  double attention_dropout_, dropout_;
  int version_;
};

class SwinTransformerBlock : public nn::Module {
 public:
  SwinTransformerBlock(int64_t dim, int64_t num_heads, std::vector<int64_t> window_size,
                       std::vector<int64_t> shift_size, const SwinTransformerOptions& o, double stochastic_depth_prob);
  Tensor forward(const Tensor& x);  // (B, H, W, C)
  nn::LayerNorm norm1;
  ShiftedWindowAttention attn;
  nn::LayerNorm norm2;
  nn::Sequential mlp;  // 0: Linear, 1: GELU, 2: Dropout, 3: Linear, 4: Dropout

 private:
  Tensor stochastic_depth(const Tensor& x) const;
  double sd_prob_;
  int version_;
};

// 2x2 neighbourhoods to one token: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C).
class PatchMerging : public nn::Module {
 public:
  PatchMerging(int64_t dim, int version);
  Tensor forward(const Tensor& x);
  nn::Linear reduction;  // 4C -> 2C, no bias
  nn::LayerNorm norm;    // v1: over 4C before the reduction; v2: over 2C after it

 private:
  int version_;
};

class SwinTransformer : public nn::Module {
 public:
  explicit SwinTransformer(const SwinTransformerOptions& options);
  // images (B, 3, H, W) (any H, W the patch size divides) -> logits (B, num_classes).
  Tensor forward(const Tensor& images);
  const SwinTransformerOptions& options() const { return options_; }

  NamedSequential features;  // 0: patch embedding; odd: stages; even > 0: patch merging
  nn::Sequential patch_embed;  // features.0: Conv2d, Permute (no parameters), LayerNorm
  std::vector<std::unique_ptr<nn::Sequential>> stages;
  std::vector<std::vector<SwinTransformerBlock*>> blocks;
  std::vector<std::unique_ptr<PatchMerging>> merges;
  nn::LayerNorm norm;
  nn::Linear head;

 private:
  SwinTransformerOptions options_;
};

}  // namespace attn::models
