// torchvision's SwinTransformer v1 and v2 from attn's nn modules and the fused
// attention kernel (see attn/models/swin_transformer.h). Shapes: B = batch,
// H, W = feature map, C = channels, N = tokens per window (wh * ww),
// nW = windows per image.
#include "attn/models/swin_transformer.h"

#include <cmath>

#include "attn/attention.h"
#include "attn/autograd.h"
#include "attn/error.h"

namespace attn::models {

namespace {

struct Preset {
  const char* name;
  int64_t embed;
  std::vector<int64_t> depths, heads;
  int64_t window;
  double sd;
  int version;
};
const std::vector<Preset>& presets_table() {
  static const std::vector<Preset> p = {
      {"swin_t", 96, {2, 2, 6, 2}, {3, 6, 12, 24}, 7, 0.2, 1},
      {"swin_s", 96, {2, 2, 18, 2}, {3, 6, 12, 24}, 7, 0.3, 1},
      {"swin_b", 128, {2, 2, 18, 2}, {4, 8, 16, 32}, 7, 0.5, 1},
      {"swin_v2_t", 96, {2, 2, 6, 2}, {3, 6, 12, 24}, 8, 0.2, 2},
      {"swin_v2_s", 96, {2, 2, 18, 2}, {3, 6, 12, 24}, 8, 0.3, 2},
      {"swin_v2_b", 128, {2, 2, 18, 2}, {4, 8, 16, 32}, 8, 0.5, 2},
  };
  return p;
}

const SwinTransformerOptions& checked(const SwinTransformerOptions& o) {
  const char* op = "SwinTransformer";
  ATTN_CHECK(o.patch_size().size() == 2 && o.window_size().size() == 2, op,
             ": patch_size and window_size must have 2 entries, got ", o.patch_size().size(), " and ",
             o.window_size().size());
  ATTN_CHECK(o.patch_size()[0] > 0 && o.patch_size()[1] > 0 && o.window_size()[0] > 0 && o.window_size()[1] > 0 &&
                 o.embed_dim() > 0 && o.num_classes() > 0 && o.mlp_ratio() > 0,
             op, ": sizes must be positive");
  ATTN_CHECK(!o.depths().empty() && o.depths().size() == o.num_heads().size(), op,
             ": depths and num_heads must name the same stages, got ", o.depths().size(), " and ",
             o.num_heads().size());
  for (size_t s = 0; s < o.depths().size(); ++s) {
    const int64_t dim = o.embed_dim() << s;
    ATTN_CHECK(o.depths()[s] >= 0 && o.num_heads()[s] > 0 && dim % o.num_heads()[s] == 0, op, ": stage ", s,
               " has ", dim, " channels, not divisible by its ", o.num_heads()[s], " heads");
  }
  ATTN_CHECK(o.version() == 1 || o.version() == 2, op, ": version must be 1 or 2, got ", o.version());
  return o;
}

// Python's slice bounds on a length n: None is the end, negatives count back.
int64_t py_index(std::optional<int64_t> i, int64_t n, int64_t none) {
  if (!i) return none;
  return *i < 0 ? std::max<int64_t>(0, n + *i) : std::min(*i, n);
}

class Permute : public nn::Module {
 public:
  explicit Permute(Shape dims) : Module("Permute"), dims_(std::move(dims)) {}
  Tensor forward(const Tensor& x) const { return x.permute(dims_); }

 private:
  Shape dims_;
};

}  // namespace

SwinTransformerOptions SwinTransformerOptions::preset(const std::string& name) {
  for (const Preset& p : presets_table())
    if (name == p.name)
      return SwinTransformerOptions({4, 4}, p.embed, p.depths, p.heads, {p.window, p.window})
          .stochastic_depth_prob(p.sd)
          .version(p.version);
  std::string known;
  for (const Preset& p : presets_table()) known += std::string(known.empty() ? "" : ", ") + p.name;
  throw Error("SwinTransformer: no preset named \"" + name + "\" (presets: " + known + ")");
}

std::vector<std::string> SwinTransformerOptions::presets() {
  std::vector<std::string> out;
  for (const Preset& p : presets_table()) out.push_back(p.name);
  return out;
}

ShiftedWindowAttention::ShiftedWindowAttention(int64_t dim, std::vector<int64_t> window_size,
                                               std::vector<int64_t> shift_size, int64_t num_heads,
                                               double attention_dropout, double dropout, int version)
    : Module(version == 2 ? "ShiftedWindowAttentionV2" : "ShiftedWindowAttention"),
      qkv(nn::LinearOptions(dim, 3 * dim)),
      proj(nn::LinearOptions(dim, dim)),
      window_(std::move(window_size)),
      shift_(std::move(shift_size)),
      heads_(num_heads),
      attention_dropout_(attention_dropout),
      dropout_(dropout),
      version_(version) {
  const int64_t wh = window_[0], ww = window_[1];
  register_module("qkv", qkv);
  register_module("proj", proj);
  if (version_ == 1) {
    relative_position_bias_table = randn({(2 * wh - 1) * (2 * ww - 1), num_heads}) * 0.02;
    register_parameter("relative_position_bias_table", relative_position_bias_table);
  } else {
    logit_scale = full({num_heads, 1, 1}, std::log(10.0));
    register_parameter("logit_scale", logit_scale);
    cpb_mlp.emplace_back<nn::Linear>(nn::LinearOptions(2, 512));
    cpb_mlp.emplace_back<nn::ReLU>();
    cpb_mlp.emplace_back<nn::Linear>(nn::LinearOptions(512, num_heads).bias(false));
    register_module("cpb_mlp", cpb_mlp);
    {  // v2 starts the key bias at zero (and keeps it out of the forward)
      NoGradGuard ng;
      qkv.bias.narrow(0, dim, dim).fill_(0.0);
    }
    // The continuous positions: sign(t) log2(|t| + 1) / 3 of t = 8 d / (w - 1).
    std::vector<float> table;
    for (int64_t i = -(wh - 1); i < wh; ++i)
      for (int64_t j = -(ww - 1); j < ww; ++j)
        for (auto [d, w] : {std::pair<int64_t, int64_t>{i, wh}, {j, ww}}) {
          const float t = static_cast<float>(d) / static_cast<float>(w - 1) * 8.0f;
          const float s = t > 0 ? 1.0f : t < 0 ? -1.0f : 0.0f;
          table.push_back(s * std::log2(std::fabs(t) + 1.0f) / 3.0f);
        }
    relative_coords_table = from_vector(table, {1, 2 * wh - 1, 2 * ww - 1, 2});
    register_buffer("relative_coords_table", relative_coords_table);
  }
  // Index of (i, j) in the window into the (2wh-1)(2ww-1) relative offsets.
  const int64_t N = wh * ww;
  std::vector<int64_t> index(static_cast<size_t>(N * N));
  for (int64_t a = 0; a < N; ++a)
    for (int64_t b = 0; b < N; ++b) {
      const int64_t dh = a / ww - b / ww + wh - 1, dw = a % ww - b % ww + ww - 1;
      index[static_cast<size_t>(a * N + b)] = dh * (2 * ww - 1) + dw;
    }
  relative_position_index = from_vector(index, {N * N});
  register_buffer("relative_position_index", relative_position_index);
}

const ShiftedWindowAttention::Layout& ShiftedWindowAttention::layout(int64_t pH, int64_t pW, int64_t s0, int64_t s1) {
  const std::array<int64_t, 4> key{pH, pW, s0, s1};
  auto it = layouts_.find(key);
  if (it != layouts_.end()) return it->second;
  const int64_t wh = window_[0], ww = window_[1], N = wh * ww, nw = pW / ww, nW = (pH / wh) * nw;
  // Token n of window w sits at (r, c) of the rolled map, which is pixel
  // ((r + s0) % pH, (c + s1) % pW) of the padded image.
  std::vector<int64_t> gather(static_cast<size_t>(nW * N)), scatter(static_cast<size_t>(pH * pW));
  for (int64_t w = 0; w < nW; ++w)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t r = (w / nw) * wh + n / ww, c = (w % nw) * ww + n % ww;
      const int64_t src = ((r + s0) % pH) * pW + (c + s1) % pW;
      gather[static_cast<size_t>(w * N + n)] = src;
      scatter[static_cast<size_t>(src)] = w * N + n;
    }
  Layout lay{from_vector(gather), from_vector(scatter), Tensor()};
  if (s0 + s1 > 0) {
    // Regions of the rolled map, labelled as torchvision's slices label them;
    // keys of another region than the query's get -100.
    std::vector<int64_t> label(static_cast<size_t>(pH * pW), 0);
    const std::optional<int64_t> hs[3][2] = {{0, -wh}, {-wh, -s0}, {-s0, std::nullopt}};
    const std::optional<int64_t> ws[3][2] = {{0, -ww}, {-ww, -s1}, {-s1, std::nullopt}};
    int64_t count = 0;
    for (const auto& h : hs)
      for (const auto& w : ws) {
        for (int64_t r = py_index(h[0], pH, 0); r < py_index(h[1], pH, pH); ++r)
          for (int64_t c = py_index(w[0], pW, 0); c < py_index(w[1], pW, pW); ++c)
            label[static_cast<size_t>(r * pW + c)] = count;
        ++count;
      }
    std::vector<float> shift_mask(static_cast<size_t>(nW * N * N));
    for (int64_t wi = 0; wi < nW; ++wi)
      for (int64_t a = 0; a < N; ++a)
        for (int64_t b = 0; b < N; ++b) {
          auto at = [&](int64_t n) {
            const int64_t r = (wi / nw) * wh + n / ww, c = (wi % nw) * ww + n % ww;
            return label[static_cast<size_t>(r * pW + c)];
          };
          shift_mask[static_cast<size_t>((wi * N + a) * N + b)] = at(a) == at(b) ? 0.0f : -100.0f;
        }
    lay.shift_mask = from_vector(shift_mask, {nW, 1, N, N});
  }
  return layouts_.emplace(key, std::move(lay)).first->second;
}

Tensor ShiftedWindowAttention::relative_position_bias() {
  const int64_t N = window_[0] * window_[1];
  Tensor table = version_ == 1 ? relative_position_bias_table
                               : cpb_mlp.forward(relative_coords_table).reshape({-1, heads_});
  // Gathered along the table's rows from its transpose: (heads, N * N) comes
  // out contiguous, so the shift mask's add runs along unit strides.
  Tensor bias = index_select(table.t(), 1, relative_position_index).reshape({heads_, N, N});
  return version_ == 1 ? bias : sigmoid(bias) * 16.0;
}

Tensor ShiftedWindowAttention::forward(const Tensor& input) {
  const char* op = "ShiftedWindowAttention";
  ATTN_CHECK(input.dim() == 4 && input.size(3) == qkv.weight.size(1), op, ": input must be (B, H, W, ",
             qkv.weight.size(1), "), got ", shape_str(input.shape()));
  const int64_t B = input.size(0), H = input.size(1), W = input.size(2), C = input.size(3);
  const int64_t wh = window_[0], ww = window_[1], N = wh * ww, hd = C / heads_;
  const int64_t pad_b = (wh - H % wh) % wh, pad_r = (ww - W % ww) % ww;
  Tensor x = (pad_b || pad_r) ? pad(input, {0, 0, 0, pad_r, 0, pad_b}) : input;
  const int64_t pH = H + pad_b, pW = W + pad_r, nh = pH / wh, nw = pW / ww, nW = nh * nw;
  int64_t s0 = wh >= pH ? 0 : shift_[0], s1 = ww >= pW ? 0 : shift_[1];
  const bool shifted = s0 + s1 > 0;
  const Layout& lay = layout(pH, pW, s0, s1);
  // The roll by (-s0, -s1) and the window partition as one gather:
  // (B, pH * pW, C) -> (B, nW * N, C), window by window.
  x = index_select(x.reshape({B, pH * pW, C}), 1, lay.gather).reshape({B, nW, N, C});
  Tensor qkv_bias = qkv.bias;
  if (version_ == 2 && qkv_bias.defined())  // the key bias stays out of v2's forward
    qkv_bias = cat({qkv_bias.narrow(0, 0, C), zeros({C}, qkv_bias.dtype()), qkv_bias.narrow(0, 2 * C, C)}, 0);
  Tensor t = F::linear(x, qkv.weight, qkv_bias).reshape({B, nW, N, 3, heads_, hd}).permute({3, 0, 1, 4, 2, 5});
  Tensor q = t.select(0, 0), k = t.select(0, 1), v = t.select(0, 2);  // (B, nW, heads, N, hd)
  F::SdpaOptions o;
  if (version_ == 2) {  // scaled cosine attention: cos(q, k) * exp(min(logit_scale, log 100)) per head
    q = F::normalize(q, -1) * exp(clamp_max(logit_scale, std::log(100.0)));
    k = F::normalize(k, -1);
    o.scale(1.0);
  }
  Tensor mask = relative_position_bias();  // (heads, N, N)
  if (shifted) mask = mask.unsqueeze(0) + lay.shift_mask.to(mask.dtype());  // (nW, heads, N, N)
  o.attn_mask(mask).dropout_p(is_training() ? attention_dropout_ : 0.0);
  Tensor out = F::scaled_dot_product_attention(q, k, v, o);  // (B, nW, heads, N, hd)
  out = proj.forward(out.transpose(2, 3).reshape({B, nW, N, C}));
  out = F::dropout(out, dropout_, is_training());
  // Back to the image, unrolled: the inverse gather.
  out = index_select(out.reshape({B, nW * N, C}), 1, lay.scatter).reshape({B, pH, pW, C});
  if (pad_b || pad_r) out = out.narrow(1, 0, H).narrow(2, 0, W).contiguous();
  return out;
}

SwinTransformerBlock::SwinTransformerBlock(int64_t dim, int64_t num_heads, std::vector<int64_t> window_size,
                                           std::vector<int64_t> shift_size, const SwinTransformerOptions& o,
                                           double stochastic_depth_prob)
    : Module(o.version() == 2 ? "SwinTransformerBlockV2" : "SwinTransformerBlock"),
      norm1(nn::LayerNormOptions({dim})),
      attn(dim, std::move(window_size), std::move(shift_size), num_heads, o.attention_dropout(), o.dropout(),
           o.version()),
      norm2(nn::LayerNormOptions({dim})),
      sd_prob_(stochastic_depth_prob),
      version_(o.version()) {
  const int64_t hidden = static_cast<int64_t>(static_cast<double>(dim) * o.mlp_ratio());
  mlp.emplace_back<nn::Linear>(nn::LinearOptions(dim, hidden));
  mlp.emplace_back<nn::GELU>();
  mlp.emplace_back<nn::Dropout>(nn::DropoutOptions(o.dropout()));
  mlp.emplace_back<nn::Linear>(nn::LinearOptions(hidden, dim));
  mlp.emplace_back<nn::Dropout>(nn::DropoutOptions(o.dropout()));
  register_module("norm1", norm1);
  register_module("attn", attn);
  register_module("norm2", norm2);
  register_module("mlp", mlp);
}

// torchvision's StochasticDepth(p, "row"): in training, each sample's branch is
// dropped with probability p and the kept ones scaled by 1 / (1 - p).
Tensor SwinTransformerBlock::stochastic_depth(const Tensor& x) const {
  if (!is_training() || sd_prob_ == 0.0) return x;
  const double keep = 1.0 - sd_prob_;
  Tensor noise = (rand({x.size(0), 1, 1, 1}, x.dtype()) < keep).to(x.dtype());
  return x * (noise / keep);
}

Tensor SwinTransformerBlock::forward(const Tensor& x) {
  if (version_ == 1) {  // pre-norm
    Tensor y = x + stochastic_depth(attn.forward(norm1.forward(x)));
    return y + stochastic_depth(mlp.forward(norm2.forward(y)));
  }
  Tensor y = x + stochastic_depth(norm1.forward(attn.forward(x)));  // v2: post-norm (res-post-norm)
  return y + stochastic_depth(norm2.forward(mlp.forward(y)));
}

PatchMerging::PatchMerging(int64_t dim, int version)
    : Module(version == 2 ? "PatchMergingV2" : "PatchMerging"),
      reduction(nn::LinearOptions(4 * dim, 2 * dim).bias(false)),
      norm(nn::LayerNormOptions({version == 2 ? 2 * dim : 4 * dim})),
      version_(version) {
  register_module("reduction", reduction);
  register_module("norm", norm);
}

Tensor PatchMerging::forward(const Tensor& input) {
  const int64_t H = input.size(-3), W = input.size(-2);
  Tensor x = (H % 2 || W % 2) ? pad(input, {0, 0, 0, W % 2, 0, H % 2}) : input;
  const int64_t h = x.size(-3), w = x.size(-2);
  auto part = [&](int64_t r, int64_t c) { return x.slice(-3, r, h, 2).slice(-2, c, w, 2); };
  x = cat({part(0, 0), part(1, 0), part(0, 1), part(1, 1)}, -1);  // (..., H/2, W/2, 4C)
  return version_ == 1 ? reduction.forward(norm.forward(x)) : norm.forward(reduction.forward(x));
}

SwinTransformer::SwinTransformer(const SwinTransformerOptions& options)
    : Module("SwinTransformer"),
      norm(nn::LayerNormOptions({checked(options).embed_dim() << (options.depths().size() - 1)})),
      head(nn::LinearOptions(options.embed_dim() << (options.depths().size() - 1), options.num_classes())),
      options_(options) {
  const auto& o = options_;
  patch_embed.emplace_back<nn::Conv2d>(nn::Conv2dOptions(3, o.embed_dim(), Pair2(o.patch_size()[0], o.patch_size()[1]))
                                           .stride(Pair2(o.patch_size()[0], o.patch_size()[1])));
  patch_embed.emplace_back<Permute>(Shape{0, 2, 3, 1});
  patch_embed.emplace_back<nn::LayerNorm>(nn::LayerNormOptions({o.embed_dim()}));
  features.add("0", patch_embed);
  int64_t total = 0, id = 0;
  for (int64_t d : o.depths()) total += d;
  for (size_t s = 0; s < o.depths().size(); ++s) {
    const int64_t dim = o.embed_dim() << s;
    stages.push_back(std::make_unique<nn::Sequential>());
    blocks.emplace_back();
    for (int64_t i = 0; i < o.depths()[s]; ++i, ++id) {
      const double sd = total > 1 ? o.stochastic_depth_prob() * static_cast<double>(id) / static_cast<double>(total - 1)
                                  : 0.0;
      std::vector<int64_t> shift = {i % 2 ? o.window_size()[0] / 2 : 0, i % 2 ? o.window_size()[1] / 2 : 0};
      blocks.back().push_back(
          &stages.back()->emplace_back<SwinTransformerBlock>(dim, o.num_heads()[s], o.window_size(), shift, o, sd));
    }
    features.add(std::to_string(2 * s + 1), *stages.back());
    if (s + 1 < o.depths().size()) {
      merges.push_back(std::make_unique<PatchMerging>(dim, o.version()));
      features.add(std::to_string(2 * s + 2), *merges.back());
    }
  }
  register_module("features", features);
  register_module("norm", norm);
  register_module("head", head);
}

Tensor SwinTransformer::forward(const Tensor& images) {
  const char* op = "SwinTransformer";
  const auto& p = options_.patch_size();
  ATTN_CHECK(images.defined() && images.dim() == 4 && images.size(1) == 3, op,
             ": images must be (B, 3, H, W), got ", images.defined() ? shape_str(images.shape()) : "undefined");
  ATTN_CHECK(images.size(2) >= p[0] && images.size(3) >= p[1], op, ": images of ", images.size(2), "x",
             images.size(3), " are smaller than one ", p[0], "x", p[1], " patch");
  Tensor x = patch_embed.forward(images);  // (B, H/p, W/p, C)
  for (size_t s = 0; s < stages.size(); ++s) {
    x = stages[s]->forward(x);
    if (s < merges.size()) x = merges[s]->forward(x);
  }
  x = norm.forward(x);
  return head.forward(x.mean({1, 2}));  // AdaptiveAvgPool2d(1) over H, W, then flatten
}

}  // namespace attn::models
