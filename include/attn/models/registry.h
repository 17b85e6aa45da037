// The image classifiers by architecture name, as `attn run` and `attn
// classify` build them: "vit" (VisionTransformer), "swin" and "swin_v2"
// (SwinTransformer v1 and v2), each from a preset name or a JSON file whose
// keys are the torchvision constructor's argument names (lists as arrays),
// with the preset's ImageNet evaluation transform.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attn/nn.h"

namespace attn::models {

// torchvision's ImageClassification transform: resize the shorter side to
// resize_size, centre-crop crop_size, scale to [0, 1], normalise with the
// ImageNet mean and std.
struct ImageTransform {
  int64_t resize_size = 256, crop_size = 224;
  bool bicubic = false;  // else bilinear
};

struct ImageClassifier {
  std::string arch, config;
  std::unique_ptr<nn::Module> module;
  std::function<Tensor(const Tensor&)> forward;  // (B, 3, H, W) -> (B, num_classes)
  ImageTransform transform;
  int64_t num_classes = 0;
};

// arch: "vit", "swin" or "swin_v2"; config: a preset (vit_b_16 ... vit_h_14,
// swin_t ... swin_b, swin_v2_t ... swin_v2_b) or a JSON file. attn::Error for
// an unknown architecture, preset, key or value.
ImageClassifier image_classifier(const std::string& arch, const std::string& config);
std::vector<std::string> image_architectures();

// Loads weights (safetensors or a torch.save state_dict) strictly, as
// Module::load; a state_dict that does not fit is an error naming the file,
// the model, the keys (the first of each list) and the likely cause.
void load_weights(nn::Module& module, const std::string& path);

// An image (3, H, W) float32 in [0, 1] to the model's input (3, crop, crop).
Tensor apply_transform(const Tensor& image, const ImageTransform& t);

// ImageNet-1k's class names (1000, in the models' output order).
const std::vector<std::string>& imagenet_classes();

}  // namespace attn::models
