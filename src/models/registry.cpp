// Image classifiers by architecture and preset or JSON configuration, the
// weights loader with its hints, and torchvision's evaluation transform (see
// attn/models/registry.h).
#include "attn/models/registry.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "attn/error.h"
#include "attn/io.h"
#include "attn/models/swin_transformer.h"
#include "attn/models/vision_transformer.h"

namespace attn::models {

std::string_view imagenet_classes_text();  // generated from src/models/data/imagenet_classes.txt

namespace {

using json = nlohmann::json;

// The transforms of torchvision's pretrained weights for each preset.
ImageTransform preset_transform(const std::string& name) {
  if (name == "vit_l_16") return {242, 224, false};
  if (name == "swin_t") return {232, 224, true};
  if (name == "swin_s") return {246, 224, true};
  if (name == "swin_b") return {238, 224, true};
  if (name == "swin_v2_t" || name == "swin_v2_s") return {260, 256, true};
  if (name == "swin_v2_b") return {272, 256, true};
  return {256, 224, false};
}

json read_config(const std::string& path, const std::set<std::string>& allowed, const std::string& arch) {
  std::ifstream f(path);
  if (!f) throw Error("config: " + path + " is neither a " + arch + " preset nor a readable JSON file");
  json j;
  try {
    j = json::parse(f);
  } catch (const std::exception& e) {
    throw Error("config: " + path + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw Error("config: " + path + ": the JSON must be an object of constructor arguments");
  for (const auto& [k, v] : j.items())
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw Error("config: " + path + ": \"" + k + "\" is not an argument of " + arch + " (arguments: " + list + ")");
    }
  return j;
}

template <class T>
T get(const json& j, const std::string& key, const std::string& path) {
  if (!j.contains(key)) throw Error("config: " + path + ": \"" + key + "\" is required");
  try {
    return j.at(key).get<T>();
  } catch (const std::exception&) {
    throw Error("config: " + path + ": \"" + key + "\" has the wrong type: " + j.at(key).dump());
  }
}

template <class T>
T get_or(const json& j, const std::string& key, T fallback, const std::string& path) {
  return j.contains(key) ? get<T>(j, key, path) : fallback;
}

ImageTransform transform_from(const json& j, ImageTransform t, const std::string& path) {
  t.crop_size = get_or<int64_t>(j, "crop_size", t.crop_size, path);
  t.resize_size = get_or<int64_t>(j, "resize_size", t.resize_size, path);
  const std::string interp = get_or<std::string>(j, "interpolation", t.bicubic ? "bicubic" : "bilinear", path);
  if (interp != "bilinear" && interp != "bicubic")
    throw Error("config: " + path + ": interpolation must be \"bilinear\" or \"bicubic\", got \"" + interp + "\"");
  t.bicubic = interp == "bicubic";
  return t;
}

ImageClassifier vit(const std::string& config) {
  ImageClassifier c;
  std::unique_ptr<VisionTransformerOptions> o;
  const auto presets = VisionTransformerOptions::presets();
  if (std::find(presets.begin(), presets.end(), config) != presets.end()) {
    o = std::make_unique<VisionTransformerOptions>(VisionTransformerOptions::preset(config));
    c.transform = preset_transform(config);
  } else {
    const json j = read_config(config,
                               {"image_size", "patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim",
                                "dropout", "attention_dropout", "num_classes", "representation_size", "crop_size",
                                "resize_size", "interpolation"},
                               "vit");
    o = std::make_unique<VisionTransformerOptions>(
        get<int64_t>(j, "image_size", config), get<int64_t>(j, "patch_size", config),
        get<int64_t>(j, "num_layers", config), get<int64_t>(j, "num_heads", config),
        get<int64_t>(j, "hidden_dim", config), get<int64_t>(j, "mlp_dim", config));
    o->dropout(get_or<double>(j, "dropout", 0.0, config))
        .attention_dropout(get_or<double>(j, "attention_dropout", 0.0, config))
        .num_classes(get_or<int64_t>(j, "num_classes", 1000, config));
    if (j.contains("representation_size") && !j.at("representation_size").is_null())
      o->representation_size(get<int64_t>(j, "representation_size", config));
    const int64_t s = o->image_size();
    c.transform = transform_from(j, {s * 256 / 224, s, false}, config);
  }
  auto m = std::make_unique<VisionTransformer>(*o);
  VisionTransformer* p = m.get();
  c.forward = [p](const Tensor& x) { return p->forward(x); };
  c.num_classes = o->num_classes();
  c.module = std::move(m);
  return c;
}

ImageClassifier swin(const std::string& arch, const std::string& config) {
  ImageClassifier c;
  const int version = arch == "swin_v2" ? 2 : 1;
  std::unique_ptr<SwinTransformerOptions> o;
  const auto presets = SwinTransformerOptions::presets();
  if (std::find(presets.begin(), presets.end(), config) != presets.end()) {
    o = std::make_unique<SwinTransformerOptions>(SwinTransformerOptions::preset(config));
    if (o->version() != version)
      throw Error("config: " + config + " is a " + (o->version() == 2 ? "swin_v2" : "swin") + " preset, not a " + arch +
                  " one");
    c.transform = preset_transform(config);
  } else {
    const json j = read_config(config,
                               {"patch_size", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio",
                                "dropout", "attention_dropout", "stochastic_depth_prob", "num_classes", "crop_size",
                                "resize_size", "interpolation"},
                               arch);
    o = std::make_unique<SwinTransformerOptions>(
        get<std::vector<int64_t>>(j, "patch_size", config), get<int64_t>(j, "embed_dim", config),
        get<std::vector<int64_t>>(j, "depths", config), get<std::vector<int64_t>>(j, "num_heads", config),
        get<std::vector<int64_t>>(j, "window_size", config));
    o->mlp_ratio(get_or<double>(j, "mlp_ratio", 4.0, config))
        .dropout(get_or<double>(j, "dropout", 0.0, config))
        .attention_dropout(get_or<double>(j, "attention_dropout", 0.0, config))
        .stochastic_depth_prob(get_or<double>(j, "stochastic_depth_prob", 0.1, config))
        .num_classes(get_or<int64_t>(j, "num_classes", 1000, config))
        .version(version);
    c.transform = transform_from(j, {256, 224, version == 2}, config);
  }
  auto m = std::make_unique<SwinTransformer>(*o);
  SwinTransformer* p = m.get();
  c.forward = [p](const Tensor& x) { return p->forward(x); };
  c.num_classes = o->num_classes();
  c.module = std::move(m);
  return c;
}

// Resampling weights for one axis (PIL's: the kernel widened by the scale
// when shrinking, so every source pixel counts): out[i] = sum w * in[j].
struct Taps {
  std::vector<int64_t> first;
  std::vector<std::vector<double>> w;
};
Taps taps(int64_t in, int64_t out, bool bicubic) {
  auto kernel = [bicubic](double x) {
    x = std::abs(x);
    if (!bicubic) return x < 1 ? 1 - x : 0.0;
    const double a = -0.5;  // PIL's bicubic
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
  };
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = (bicubic ? 2.0 : 1.0) * std::max(scale, 1.0), f = std::max(scale, 1.0);
  Taps t;
  for (int64_t i = 0; i < out; ++i) {
    const double center = (static_cast<double>(i) + 0.5) * scale;
    const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(center - support)));
    const int64_t hi = std::min<int64_t>(in, static_cast<int64_t>(std::ceil(center + support)));
    std::vector<double> w;
    double total = 0;
    for (int64_t j = lo; j < hi; ++j) {
      w.push_back(kernel((static_cast<double>(j) + 0.5 - center) / f));
      total += w.back();
    }
    for (double& x : w) x = total != 0 ? x / total : 0;
    t.first.push_back(lo);
    t.w.push_back(std::move(w));
  }
  return t;
}

}  // namespace

std::vector<std::string> image_architectures() { return {"vit", "swin", "swin_v2"}; }

ImageClassifier image_classifier(const std::string& arch, const std::string& config) {
  ImageClassifier c;
  if (arch == "vit") c = vit(config);
  else if (arch == "swin" || arch == "swin_v2") c = swin(arch, config);
  else throw Error("unknown architecture \"" + arch + "\" (architectures: vit, swin, swin_v2)");
  c.arch = arch;
  c.config = config;
  return c;
}

void load_weights(nn::Module& module, const std::string& path) {
  try {
    module.load(path);  // strict: load_state_dict names the keys and the likely cause
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind("load_", 0) == 0 || what.rfind(path, 0) == 0) throw;  // the file itself could not be read
    throw Error(path + ": these weights do not fit the " + module.type_name() + ": " + what);
  }
}

Tensor apply_transform(const Tensor& image, const ImageTransform& t) {
  ATTN_CHECK(image.dim() == 3 && image.size(0) == 3, "apply_transform: the image must be (3, H, W), got ",
             shape_str(image.shape()));
  const int64_t H = image.size(1), W = image.size(2);
  ATTN_CHECK(H > 0 && W > 0, "apply_transform: the image is empty");
  // The shorter side to resize_size, the other in proportion (torchvision's rule).
  int64_t oh, ow;
  if (H <= W) {
    oh = t.resize_size;
    ow = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(t.resize_size) * W / H));
  } else {
    ow = t.resize_size;
    oh = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(t.resize_size) * H / W));
  }
  ATTN_CHECK(oh >= t.crop_size && ow >= t.crop_size, "apply_transform: a resize to ", oh, "x", ow,
             " cannot be cropped to ", t.crop_size);
  const Tensor src = image.to(kFloat64).contiguous();
  const double* s = src.data<double>();
  const Taps ty = taps(H, oh, t.bicubic), tx = taps(W, ow, t.bicubic);
  // torchvision's centre crop: int(round((size - crop) / 2)) on each axis.
  const int64_t top_c = static_cast<int64_t>(std::round((oh - t.crop_size) / 2.0));
  const int64_t left_c = static_cast<int64_t>(std::round((ow - t.crop_size) / 2.0));
  const double mean[3] = {0.485, 0.456, 0.406}, stdv[3] = {0.229, 0.224, 0.225};
  const int64_t C = t.crop_size;
  std::vector<float> out(static_cast<size_t>(3 * C * C));
  std::vector<double> row(static_cast<size_t>(W));
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < C; ++y) {
      const int64_t oy = y + top_c;
      std::fill(row.begin(), row.end(), 0.0);
      for (size_t k = 0; k < ty.w[static_cast<size_t>(oy)].size(); ++k) {
        const int64_t sy = ty.first[static_cast<size_t>(oy)] + static_cast<int64_t>(k);
        const double wy = ty.w[static_cast<size_t>(oy)][k];
        for (int64_t x = 0; x < W; ++x) row[static_cast<size_t>(x)] += wy * s[(c * H + sy) * W + x];
      }
      for (int64_t x = 0; x < C; ++x) {
        const int64_t ox = x + left_c;
        double v = 0;
        for (size_t k = 0; k < tx.w[static_cast<size_t>(ox)].size(); ++k)
          v += tx.w[static_cast<size_t>(ox)][k] * row[static_cast<size_t>(tx.first[static_cast<size_t>(ox)]) + k];
        v = std::clamp(v, 0.0, 1.0);
        out[static_cast<size_t>((c * C + y) * C + x)] = static_cast<float>((v - mean[c]) / stdv[c]);
      }
    }
  return from_vector(out, {3, C, C});
}

const std::vector<std::string>& imagenet_classes() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    std::string_view text = imagenet_classes_text();
    size_t start = 0;
    while (start < text.size()) {
      const size_t nl = text.find('\n', start);
      const size_t end = nl == std::string_view::npos ? text.size() : nl;
      if (end > start) v.emplace_back(text.substr(start, end - start));
      start = end + 1;
    }
    return v;
  }();
  return names;
}

}  // namespace attn::models
