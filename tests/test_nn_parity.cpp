// Module parity with PyTorch: every case tests/parity/gen_nn.py wrote (a
// module's PyTorch state_dict, inputs, float64 outputs and gradients) is built
// from its configuration, loaded with load_state_dict(strict) by PyTorch's keys,
// run in float32 and float64, and its outputs and the gradients of its inputs
// and of every parameter compared.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include <attn/attn.h>

#include "support/accuracy.h"
#include "support/op_table.h"

namespace attn::testing {
namespace {

using json = nlohmann::json;
using Inputs = std::map<std::string, Tensor>;

struct Case {
  std::string key;
  json cfg;
  std::map<std::string, Tensor> p, in, out, gout, gin, gp, buf;
  std::map<std::string, Tensor> out32, gin32, gp32;  // PyTorch's own float32 results
};

// float32 tolerances per module kind: |attn - torch(float64)| <= atol + rtol * |torch|.
struct Tolerance {
  double rtol, atol;
  const char* why;
};
const Tolerance kDefault{1e-5, 1e-5, "the issue's float32 bar"};
Tolerance tolerance_for(const std::string& kind) {
  // Measured over 45 seeds (101-130, 201-215; T5 over 101-130) with ATTN_PARITY_STRICT=1; every
  // other kind passes the default on all of them. (gen_nn.py keeps out two
  // ill-conditioned regimes where PyTorch's own float32 is as far off: batch
  // norm with 2 values per channel, cosine attention with E = 1.)
  static const Tolerance deep{5e-5, 5e-5, "stacks of up to 2 + 2 layers, some 40 float32 ops deep with a layer "
                                          "norm in every layer: relative error up to 2.5e-5 against float64"};
  static const std::map<std::string, Tolerance> table = {
      {"TransformerEncoder", deep},
      {"TransformerDecoder", deep},
      {"Transformer", deep},
      {"T5RelativePositionBias", {1e-4, 2e-4, "the bias table's gradient sums up to 6000 float32 terms per bucket "
                                              "(every (i, j) of a 40 x 150 grid), in order: error ~ n eps |terms|, "
                                              "measured up to 1.6e-4"}},
  };
  auto it = table.find(kind);
  if (std::getenv("ATTN_PARITY_STRICT") || it == table.end()) return kDefault;
  return it->second;
}
const Tolerance kTolFloat64{1e-9, 1e-9, "float64 against float64: only summation order differs"};

// A module built from a case's configuration, and how to call it.
struct Built {
  std::unique_ptr<nn::Module> module;
  std::function<std::vector<Tensor>(Inputs&)> run;
};

std::optional<int64_t> opt_int(const json& j) {
  return j.is_null() ? std::nullopt : std::optional<int64_t>(j.get<int64_t>());
}
Tensor get(const Inputs& in, const std::string& k) {
  auto it = in.find(k);
  return it == in.end() ? Tensor() : it->second;
}

template <class M>
Built simple(std::unique_ptr<M> m) {
  M* p = m.get();
  return {std::move(m), [p](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("x"))}; }};
}

Built build(const json& c) {
  const std::string kind = c["kind"];
  if (kind == "Linear")
    return simple(std::make_unique<nn::Linear>(nn::LinearOptions(c["in"], c["out"]).bias(c["bias"])));
  if (kind == "Bilinear") {
    auto m = std::make_unique<nn::Bilinear>(nn::BilinearOptions(c["in1"], c["in2"], c["out"]).bias(c["bias"]));
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("x1"), a.at("x2"))}; }};
  }
  if (kind == "Embedding") {
    auto m = std::make_unique<nn::Embedding>(
        nn::EmbeddingOptions(c["num"], c["dim"]).padding_idx(opt_int(c["padding_idx"])));
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("idx"))}; }};
  }
  if (kind == "LayerNorm")
    return simple(std::make_unique<nn::LayerNorm>(nn::LayerNormOptions(c["shape"].get<Shape>())
                                                      .eps(c["eps"])
                                                      .elementwise_affine(c["affine"])
                                                      .bias(c["bias"])));
  if (kind == "BatchNorm1d" || kind == "BatchNorm2d") {
    auto o = nn::BatchNormOptions(c["C"]).eps(c["eps"]).affine(c["affine"]).track_running_stats(c["track"]);
    o.momentum(c["momentum"].is_null() ? std::nullopt : std::optional<double>(c["momentum"].get<double>()));
    if (kind == "BatchNorm1d") {
      auto m = std::make_unique<nn::BatchNorm1d>(o);
      auto* p = m.get();
      return {std::move(m), [p](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("x"))}; }};
    }
    auto m = std::make_unique<nn::BatchNorm2d>(o);
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("x"))}; }};
  }
  if (kind == "ReLU") return simple(std::make_unique<nn::ReLU>());
  if (kind == "Tanh") return simple(std::make_unique<nn::Tanh>());
  if (kind == "Sigmoid") return simple(std::make_unique<nn::Sigmoid>());
  if (kind == "GELU") return simple(std::make_unique<nn::GELU>(c["approximate"].get<std::string>()));
  if (kind == "ELU") return simple(std::make_unique<nn::ELU>(c["alpha"].get<double>()));
  if (kind == "LeakyReLU") return simple(std::make_unique<nn::LeakyReLU>(c["slope"].get<double>()));
  if (kind == "Softmax") return simple(std::make_unique<nn::Softmax>(c["dim"].get<int64_t>()));
  if (kind == "LogSoftmax") return simple(std::make_unique<nn::LogSoftmax>(c["dim"].get<int64_t>()));
  if (kind == "Flatten") return simple(std::make_unique<nn::Flatten>(c["start"].get<int64_t>(), c["end"].get<int64_t>()));
  if (kind == "Dropout") return simple(std::make_unique<nn::Dropout>(nn::DropoutOptions(c["p"].get<double>())));
  auto pair = [](const json& j) { return Pair2(j[0].get<int64_t>(), j[1].get<int64_t>()); };
  if (kind == "Conv2d")
    return simple(std::make_unique<nn::Conv2d>(nn::Conv2dOptions(c["in"], c["out"], pair(c["k"]))
                                                   .stride(pair(c["stride"]))
                                                   .padding(pair(c["padding"]))
                                                   .dilation(pair(c["dilation"]))
                                                   .groups(c["groups"])
                                                   .bias(c["bias"])));
  if (kind == "MaxPool2d") {
    auto o = nn::MaxPool2dOptions(pair(c["k"])).padding(pair(c["padding"])).dilation(pair(c["dilation"])).ceil_mode(c["ceil"]);
    if (!c["stride"].is_null()) o.stride(pair(c["stride"]));
    return simple(std::make_unique<nn::MaxPool2d>(o));
  }
  if (kind == "AvgPool2d") {
    auto o = nn::AvgPool2dOptions(pair(c["k"])).padding(pair(c["padding"])).ceil_mode(c["ceil"]).count_include_pad(
        c["count_include_pad"]);
    if (!c["stride"].is_null()) o.stride(pair(c["stride"]));
    if (!c["divisor"].is_null()) o.divisor_override(c["divisor"].get<int64_t>());
    return simple(std::make_unique<nn::AvgPool2d>(o));
  }
  if (kind == "AdaptiveAvgPool2d") return simple(std::make_unique<nn::AdaptiveAvgPool2d>(pair(c["size"])));

  if (kind == "RNN" || kind == "LSTM" || kind == "GRU") {
    auto o = nn::RNNOptions(c["I"], c["H"])
                 .num_layers(c["layers"])
                 .bias(c["bias"])
                 .batch_first(c["batch_first"])
                 .bidirectional(c["bidirectional"])
                 .dropout(c["layers"].get<int>() > 1 ? c["dropout"].get<double>() : 0.0)
                 .nonlinearity(c["nonlinearity"] == "relu" ? nn::kReLU : nn::kTanh);
    const std::string mode = c["mode"];
    const bool bf = c["batch_first"], sorted = c["enforce_sorted"];
    const int64_t T = c["T"];
    if (kind == "LSTM") {
      auto m = std::make_unique<nn::LSTM>(o);
      auto* p = m.get();
      return {std::move(m), [=](Inputs& a) {
                nn::LSTM::State hx{get(a, "h0"), get(a, "c0")};
                if (mode == "packed") {
                  auto packed = nn::pack_padded_sequence(a.at("x"), a.at("lengths"), bf, sorted);
                  auto [out, st] = p->forward(packed, hx);
                  auto [padded, lens] = nn::pad_packed_sequence(out, bf, 0.0, T);
                  return std::vector<Tensor>{padded, std::get<0>(st), std::get<1>(st)};
                }
                auto [out, st] = p->forward(a.at("x"), hx);
                return std::vector<Tensor>{out, std::get<0>(st), std::get<1>(st)};
              }};
    }
    std::unique_ptr<nn::RNNBase> m;
    std::function<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&)> fp;
    std::function<std::tuple<nn::PackedSequence, Tensor>(const nn::PackedSequence&, const Tensor&)> fk;
    if (kind == "RNN") {
      auto r = std::make_unique<nn::RNN>(o);
      auto* p = r.get();
      fp = [p](const Tensor& x, const Tensor& h) { return p->forward(x, h); };
      fk = [p](const nn::PackedSequence& x, const Tensor& h) { return p->forward(x, h); };
      m = std::move(r);
    } else {
      auto r = std::make_unique<nn::GRU>(o);
      auto* p = r.get();
      fp = [p](const Tensor& x, const Tensor& h) { return p->forward(x, h); };
      fk = [p](const nn::PackedSequence& x, const Tensor& h) { return p->forward(x, h); };
      m = std::move(r);
    }
    return {std::move(m), [=](Inputs& a) {
              if (mode == "packed") {
                auto packed = nn::pack_padded_sequence(a.at("x"), a.at("lengths"), bf, sorted);
                auto [out, h] = fk(packed, get(a, "h0"));
                auto [padded, lens] = nn::pad_packed_sequence(out, bf, 0.0, T);
                return std::vector<Tensor>{padded, h};
              }
              auto [out, h] = fp(a.at("x"), get(a, "h0"));
              return std::vector<Tensor>{out, h};
            }};
  }
  if (kind == "RNNCell" || kind == "GRUCell" || kind == "LSTMCell") {
    auto o = nn::RNNCellOptions(c["I"], c["H"]).bias(c["bias"]).nonlinearity(
        c["nonlinearity"] == "relu" ? nn::kReLU : nn::kTanh);
    if (kind == "LSTMCell") {
      auto m = std::make_unique<nn::LSTMCell>(o);
      auto* p = m.get();
      return {std::move(m), [p](Inputs& a) {
                auto [h, cc] = p->forward(a.at("x"), {get(a, "h"), get(a, "c")});
                return std::vector<Tensor>{h, cc};
              }};
    }
    if (kind == "RNNCell") {
      auto m = std::make_unique<nn::RNNCell>(o);
      auto* p = m.get();
      return {std::move(m), [p](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("x"), get(a, "h"))}; }};
    }
    auto m = std::make_unique<nn::GRUCell>(o);
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("x"), get(a, "h"))}; }};
  }
  if (kind == "MultiheadAttention") {
    auto o = nn::MultiheadAttentionOptions(c["E"], c["H"])
                 .dropout(c["dropout"])
                 .bias(c["bias"])
                 .add_bias_kv(c["add_bias_kv"])
                 .add_zero_attn(c["add_zero_attn"])
                 .kdim(opt_int(c["kdim"]))
                 .vdim(opt_int(c["vdim"]))
                 .batch_first(c["batch_first"]);
    auto m = std::make_unique<nn::MultiheadAttention>(o);
    auto* p = m.get();
    const bool nw = c["need_weights"], avg = c["average"], causal = c["is_causal"];
    return {std::move(m), [=](Inputs& a) {
              Tensor q, k, v;
              if (a.count("x")) {
                q = k = v = a.at("x");
              } else if (a.count("kv")) {
                q = a.at("q"), k = v = a.at("kv");
              } else {
                q = a.at("q"), k = a.at("k"), v = a.at("v");
              }
              auto [out, w] = p->forward(q, k, v, get(a, "kpm"), nw, get(a, "attn_mask"), avg, causal);
              std::vector<Tensor> r{out};
              if (w.defined()) r.push_back(w);
              return r;
            }};
  }
  auto layer_options = [&](const json& j) {
    return nn::TransformerEncoderLayerOptions(j["d_model"], j["nhead"])
        .dim_feedforward(j["ff"])
        .dropout(j["dropout"])
        .activation(j["activation"].get<std::string>())
        .layer_norm_eps(j["eps"])
        .batch_first(j["batch_first"])
        .norm_first(j["norm_first"])
        .bias(j["bias"]);
  };
  auto norm = [&](const json& j) {
    return j["final_norm"].get<bool>()
               ? std::optional<nn::LayerNormOptions>(nn::LayerNormOptions({j["d_model"].get<int64_t>()}).eps(j["eps"]).bias(j["bias"]))
               : std::nullopt;
  };
  auto flag = [&](const char* k) { return c.contains(k) && c[k].get<bool>(); };
  const bool src_causal = flag("src_is_causal"), tgt_causal = flag("tgt_is_causal");
  if (kind == "TransformerEncoderLayer") {
    auto m = std::make_unique<nn::TransformerEncoderLayer>(layer_options(c));
    auto* p = m.get();
    return {std::move(m), [=](Inputs& a) {
              return std::vector<Tensor>{p->forward(a.at("src"), get(a, "src_mask"), get(a, "src_kpm"), src_causal)};
            }};
  }
  if (kind == "TransformerEncoder") {
    auto m = std::make_unique<nn::TransformerEncoder>(
        nn::TransformerEncoderOptions(layer_options(c), c["layers"]).norm(norm(c)));
    auto* p = m.get();
    return {std::move(m), [=](Inputs& a) {
              return std::vector<Tensor>{p->forward(a.at("src"), get(a, "src_mask"), get(a, "src_kpm"), src_causal)};
            }};
  }
  if (kind == "TransformerDecoderLayer" || kind == "TransformerDecoder") {
    auto call = [=](auto* p, Inputs& a) {
      return std::vector<Tensor>{p->forward(a.at("tgt"), a.at("memory"), get(a, "tgt_mask"), get(a, "memory_mask"),
                                            get(a, "tgt_kpm"), get(a, "memory_kpm"), tgt_causal, false)};
    };
    if (kind == "TransformerDecoderLayer") {
      auto m = std::make_unique<nn::TransformerDecoderLayer>(layer_options(c));
      auto* p = m.get();
      return {std::move(m), [=](Inputs& a) { return call(p, a); }};
    }
    auto m = std::make_unique<nn::TransformerDecoder>(
        nn::TransformerDecoderOptions(layer_options(c), c["layers"]).norm(norm(c)));
    auto* p = m.get();
    return {std::move(m), [=](Inputs& a) { return call(p, a); }};
  }
  if (kind == "Transformer") {
    auto m = std::make_unique<nn::Transformer>(nn::TransformerOptions(c["d_model"], c["nhead"])
                                                   .num_encoder_layers(c["enc_layers"])
                                                   .num_decoder_layers(c["layers"])
                                                   .dim_feedforward(c["ff"])
                                                   .dropout(c["dropout"])
                                                   .activation(c["activation"].get<std::string>())
                                                   .layer_norm_eps(c["eps"])
                                                   .batch_first(c["batch_first"])
                                                   .norm_first(c["norm_first"])
                                                   .bias(c["bias"]));
    auto* p = m.get();
    return {std::move(m), [=](Inputs& a) {
              return std::vector<Tensor>{p->forward(a.at("src"), a.at("tgt"), get(a, "src_mask"), get(a, "tgt_mask"),
                                                    get(a, "memory_mask"), get(a, "src_kpm"), get(a, "tgt_kpm"),
                                                    get(a, "memory_kpm"), src_causal, tgt_causal, false)};
            }};
  }
  // ---- the attention family (gen_family.py) ----
  if (kind == "AdditiveAttention" || kind == "LuongAttention") {
    std::function<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&)> f;
    std::unique_ptr<nn::Module> m;
    if (kind == "AdditiveAttention") {
      auto a = std::make_unique<nn::AdditiveAttention>(
          nn::AdditiveAttentionOptions(c["dq"], c["dk"], c["h"]).bias(c["bias"]));
      auto* p = a.get();
      f = [p](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& m) { return p->forward(q, k, v, m); };
      m = std::move(a);
    } else {
      const std::string sc = c["score"];
      auto a = std::make_unique<nn::LuongAttention>(
          nn::LuongAttentionOptions(c["dq"], c["dk"])
              .score(sc == "dot" ? nn::LuongScore::Dot : sc == "general" ? nn::LuongScore::General : nn::LuongScore::Concat)
              .hidden_dim(c["hidden"])
              .scale(c["scale"]));
      auto* p = a.get();
      f = [p](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& m) { return p->forward(q, k, v, m); };
      m = std::move(a);
    }
    return {std::move(m), [f](Inputs& a) {
              auto [ctx, w] = f(a.at("q"), a.at("keys"), get(a, "values"), get(a, "kpm"));
              return std::vector<Tensor>{ctx, w};
            }};
  }
  if (kind == "AttentionPooling") {
    auto m = std::make_unique<nn::AttentionPooling>(c["D"].get<int64_t>(), c["batch_first"].get<bool>());
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) {
              auto [pooled, w] = p->forward(a.at("x"), get(a, "kpm"));
              return std::vector<Tensor>{pooled, w};
            }};
  }
  if (kind == "CosineAttention") {
    auto m = std::make_unique<nn::CosineAttention>(c["init"].get<double>());
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) {
              return std::vector<Tensor>{p->forward(a.at("q"), a.at("k"), a.at("v"), get(a, "mask"))};
            }};
  }
  if (kind == "RotaryEmbedding") {
    auto m = std::make_unique<nn::RotaryEmbedding>(
        nn::RotaryEmbeddingOptions(c["D"]).base(c["base"]).layout(
            c["interleaved"].get<bool>() ? F::RopeLayout::Interleaved : F::RopeLayout::HalfSplit));
    auto* p = m.get();
    const int64_t offset = c["offset"];
    return {std::move(m), [p, offset](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("x"), offset)}; }};
  }
  if (kind == "AlibiSlopes") {
    // The slopes themselves, in the dtype the case runs in (a buffer that
    // follows Module::to says which).
    struct DTypeProbe : nn::Module {
      Tensor probe = zeros({});
      DTypeProbe() { register_buffer("probe", probe, false); }
    };
    auto m = std::make_unique<DTypeProbe>();
    auto* p = m.get();
    const int64_t heads = c["heads"];
    return {std::move(m), [heads, p](Inputs&) { return std::vector<Tensor>{F::alibi_slopes(heads, p->probe.dtype())}; }};
  }
  if (kind == "LinearAttention") {
    auto o = F::LinearAttentionOptions().causal(c["causal"]).chunk(c["chunk"]).eps(c["eps"]);
    return {std::make_unique<nn::Identity>(), [o](Inputs& a) {
              return std::vector<Tensor>{F::linear_attention(a.at("q"), a.at("k"), a.at("v"), o)};
            }};
  }
  if (kind == "LocalitySelfAttention")
    return simple(std::make_unique<nn::LocalitySelfAttention>(
        nn::LocalitySelfAttentionOptions(c["dim"]).heads(c["heads"]).dim_head(c["dim_head"]).dropout(c["dropout"])));
  if (kind == "ShiftedPatchTokenization")
    return simple(std::make_unique<nn::ShiftedPatchTokenization>(
        nn::ShiftedPatchTokenizationOptions(c["C"], c["p"], c["dim"])));
  if (kind == "GATConv" || kind == "GATv2Conv") {
    auto o = nn::GATConvOptions(c["in"], c["out"])
                 .heads(c["heads"])
                 .concat(c["concat"])
                 .negative_slope(c["slope"])
                 .add_self_loops(c["loops"])
                 .bias(c["bias"])
                 .share_weights(c["share"]);
    if (kind == "GATConv") {
      auto m = std::make_unique<nn::GATConv>(o);
      auto* p = m.get();
      return {std::move(m), [p](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("x"), a.at("edge_index"))}; }};
    }
    auto m = std::make_unique<nn::GATv2Conv>(o);
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("x"), a.at("edge_index"))}; }};
  }
  if (kind == "seeds.GAT") {
    auto m = std::make_unique<nn::seeds::GAT>(c["in"], c["hidden"], c["classes"], c["dropout"], c["alpha"], c["heads"]);
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) { return std::vector<Tensor>{p->forward(a.at("x"), a.at("adj"))}; }};
  }
  if (kind == "RelativeMultiheadAttention") {
    auto m = std::make_unique<nn::RelativeMultiheadAttention>(nn::RelativeMultiheadAttentionOptions(c["E"], c["H"])
                                                                  .max_relative_position(c["K"])
                                                                  .relative_values(c["values"])
                                                                  .bias(c["bias"])
                                                                  .batch_first(c["batch_first"]));
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) {
              auto [out, w] = p->forward(a.at("q"), a.at("k"), a.at("v"), get(a, "kpm"), true, get(a, "attn_mask"));
              // Without masks, the output (whose gradients are checked) from the
              // fused path, which runs when the weights are not asked for.
              if (!get(a, "kpm").defined() && !get(a, "attn_mask").defined())
                out = std::get<0>(p->forward(a.at("q"), a.at("k"), a.at("v"), {}, false));
              return std::vector<Tensor>{out, w};
            }};
  }
  if (kind == "T5RelativePositionBias") {
    auto m = std::make_unique<nn::T5RelativePositionBias>(nn::T5RelativePositionBiasOptions(c["H"])
                                                              .num_buckets(c["nb"])
                                                              .max_distance(c["md"])
                                                              .bidirectional(c["bidirectional"]));
    auto* p = m.get();
    const int64_t L = c["L"], S = c["S"], off = c["off"];
    return {std::move(m), [p, L, S, off](Inputs&) { return std::vector<Tensor>{p->forward(L, S, off)}; }};
  }
  if (kind == "seeds.AttentionLayer") {
    auto m = std::make_unique<nn::seeds::AttentionLayer>(c["in"].get<int64_t>(), c["out"].get<int64_t>());
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) {
              return std::vector<Tensor>{p->forward(a.at("q"), a.at("k"), a.at("v"))};
            }};
  }
  if (kind == "seeds.MultiHeadAttention") {
    auto m = std::make_unique<nn::seeds::MultiHeadAttention>(c["E"].get<int64_t>(), c["H"].get<int64_t>());
    auto* p = m.get();
    return {std::move(m), [p](Inputs& a) {
              auto [out, w] = p->forward(a.at("q"), a.at("k"), a.at("v"), get(a, "mask"));
              return std::vector<Tensor>{out, w};
            }};
  }
  throw Error("test_nn_parity: unknown module kind " + kind);
}

std::vector<Case> load_cases() {
  const char* path = std::getenv("ATTN_PARITY_NN_FILE");
  if (!path) return {};
  io::SafetensorsFile f = io::read_safetensors(path);
  std::map<std::string, Case> cases;
  for (auto& [k, meta] : f.metadata) {
    cases[k].key = k;
    cases[k].cfg = json::parse(meta);
  }
  for (auto& [name, t] : f.tensors) {
    auto d1 = name.find('.');
    auto d2 = name.find('.', d1 + 1);
    Case& c = cases.at(name.substr(0, d1));
    std::string group = name.substr(d1 + 1, d2 - d1 - 1), rest = name.substr(d2 + 1);
    std::map<std::string, Tensor>* m = group == "p"      ? &c.p
                                       : group == "in"   ? &c.in
                                       : group == "out"  ? &c.out
                                       : group == "gout" ? &c.gout
                                       : group == "gin"  ? &c.gin
                                       : group == "gp"   ? &c.gp
                                       : group == "out32" ? &c.out32
                                       : group == "gin32" ? &c.gin32
                                       : group == "gp32"  ? &c.gp32
                                       : group == "buf"   ? &c.buf
                                                          : nullptr;
    if (!m) throw std::runtime_error("nn parity file: unknown group in " + name);
    (*m)[rest] = t;
  }
  std::vector<Case> out;
  for (auto& [k, c] : cases) out.push_back(std::move(c));
  return out;
}

// Where the reference is NaN (PyTorch 1.13 on a fully masked query row), attn
// must give what its definition says: attention output 0, so MultiheadAttention
// returns out_proj.bias there, and weights 0. Returns the reference with those
// entries filled in.
Tensor fill_masked_rows(const Tensor& ref, const Tensor& fill) {
  NoGradGuard ng;
  Tensor nan = ref != ref;
  return where(nan, fill.expand(ref.shape()), ref);
}

struct Stats {
  int cases = 0, comparisons = 0, nan_cases = 0;
  std::map<std::string, int> per_kind;
  AccuracyTable accuracy;  // attn's float32 error beside PyTorch's, per kind
};

void run_case(const Case& c, DType dt, Stats& st) {
  const std::string kind = c.cfg["kind"];
  const Tolerance tol = dt == kFloat32 ? tolerance_for(kind) : kTolFloat64;
  const std::string label = c.key + " " + kind + (dt == kFloat32 ? " f32" : " f64");
  Built b = build(c.cfg);
  nn::StateDict sd(c.p.begin(), c.p.end());
  b.module->load_state_dict(sd, true);  // PyTorch's keys, strict
  b.module->to(dt);
  b.module->train(c.cfg["train"].get<bool>());
  Inputs in;
  for (auto& [n, t] : c.in) {
    if (n.rfind("torch_", 0) == 0) continue;  // the form of a mask only PyTorch 1.13 needs
    Tensor x = t.is_floating_point() ? t.to(dt).clone() : t;
    if (c.gin.count(n)) x.requires_grad_(true);
    in[n] = x;
  }
  std::vector<Tensor> outs = b.run(in);
  ASSERT_EQ(outs.size(), c.out.size()) << label << ": number of outputs";
  for (size_t i = 0; i < outs.size(); ++i)  // a float32 module returns float32, a float64 one float64
    if (c.out.at(std::to_string(i)).is_floating_point())
      EXPECT_EQ(outs[i].dtype(), dt) << label << ": dtype of output " << i;
  const bool has_nan = c.cfg["has_nan"];
  for (size_t i = 0; i < outs.size(); ++i) {
    Tensor ref = c.out.at(std::to_string(i));
    if (has_nan) {
      Tensor fill = zeros({}, kFloat64);
      if (kind == "MultiheadAttention" && i == 0) {
        auto* mha = dynamic_cast<nn::MultiheadAttention*>(b.module.get());
        if (mha->out_proj.bias.defined()) fill = mha->out_proj.bias.detach().to(kFloat64);
      }
      ref = fill_masked_rows(ref, fill);
    }
    Comparison cmp = compare(label + " output " + std::to_string(i), outs[i], ref, tol.rtol, tol.atol);
    EXPECT_TRUE(cmp.ok) << cmp.message;
    ++st.comparisons;
    if (dt == kFloat32 && c.out32.count(std::to_string(i)) && ref.is_floating_point())
      st.accuracy.add(kind, outs[i], c.out32.at(std::to_string(i)), ref);
  }
  for (auto& [k, ref] : c.buf) {
    Tensor got;
    for (auto& [n, t] : b.module->named_buffers())
      if (n == k) got = t;
    Comparison cmp = compare(label + " buffer " + k, got, ref, tol.rtol, tol.atol);
    EXPECT_TRUE(cmp.ok) << cmp.message;
    ++st.comparisons;
  }
  if (has_nan) {
    if (dt == kFloat32) ++st.nan_cases;
    // PyTorch's gradients are NaN everywhere once a row is NaN; gen_nn.py
    // then takes them with those rows opened and their output gradient
    // zero, which attn's gradients must equal.
    if (!c.cfg.value("grad_on_finite_rows", false)) {
      ADD_FAILURE() << label << ": a case with NaN rows and no gradient on the finite rows";
      return;
    }
  }
  if (c.gout.empty()) return;
  Tensor loss;
  for (auto& [i, g] : c.gout) {
    Tensor term = sum(outs.at(std::stoul(i)) * g.to(dt));
    loss = loss.defined() ? loss + term : term;
  }
  loss.backward();
  for (auto& [n, ref] : c.gin) {
    Tensor g = in.at(n).grad();
    if (!g.defined()) g = zeros(ref.shape(), dt);
    Comparison cmp = compare(label + " grad of input " + n, g, ref, tol.rtol, tol.atol);
    EXPECT_TRUE(cmp.ok) << cmp.message;
    ++st.comparisons;
    if (dt == kFloat32 && c.gin32.count(n)) st.accuracy.add(kind, g, c.gin32.at(n), ref);
  }
  auto params = b.module->named_parameters();
  EXPECT_EQ(params.size(), c.gp.size()) << label << ": parameters in attn vs PyTorch";
  for (auto& [n, p] : params) {
    auto it = c.gp.find(n);
    if (it == c.gp.end()) {
      ADD_FAILURE() << label << ": no PyTorch gradient for parameter " << n;
      continue;
    }
    Tensor g = p.grad();
    if (!g.defined()) g = zeros(p.shape(), dt);
    Comparison cmp = compare(label + " grad of " + n, g, it->second, tol.rtol, tol.atol);
    EXPECT_TRUE(cmp.ok) << cmp.message;
    ++st.comparisons;
    if (dt == kFloat32 && c.gp32.count(n)) st.accuracy.add(kind, g, c.gp32.at(n), it->second);
  }
}

// Every kind the parity file must hold, and what its PyTorch reference is.
// "trivial" kinds are checked but not counted as random configurations:
// their result does not depend on a drawn configuration in any way worth the
// name (identity in eval mode, a reshape, a function of the head count only).
enum class Reference { TorchModule, Seed, Authors, Definition, Composition };
struct Kind {
  Reference ref;
  bool trivial = false;
};
const std::map<std::string, Kind>& kinds() {
  using R = Reference;
  static const std::map<std::string, Kind> k = {
      // torch.nn modules of PyTorch 1.13, run as they are
      {"Linear", {R::TorchModule}}, {"Bilinear", {R::TorchModule}}, {"Embedding", {R::TorchModule}},
      {"LayerNorm", {R::TorchModule}}, {"BatchNorm1d", {R::TorchModule}}, {"BatchNorm2d", {R::TorchModule}},
      {"ReLU", {R::TorchModule}}, {"Tanh", {R::TorchModule}}, {"Sigmoid", {R::TorchModule}},
      {"GELU", {R::TorchModule}}, {"ELU", {R::TorchModule}}, {"LeakyReLU", {R::TorchModule}},
      {"Softmax", {R::TorchModule}}, {"LogSoftmax", {R::TorchModule}}, {"Flatten", {R::TorchModule, true}},
      {"Dropout", {R::TorchModule, true}}, {"Conv2d", {R::TorchModule}}, {"MaxPool2d", {R::TorchModule}},
      {"AvgPool2d", {R::TorchModule}}, {"AdaptiveAvgPool2d", {R::TorchModule}}, {"RNN", {R::TorchModule}},
      {"LSTM", {R::TorchModule}}, {"GRU", {R::TorchModule}}, {"RNNCell", {R::TorchModule}},
      {"LSTMCell", {R::TorchModule}}, {"GRUCell", {R::TorchModule}}, {"MultiheadAttention", {R::TorchModule}},
      {"TransformerEncoderLayer", {R::TorchModule}}, {"TransformerEncoder", {R::TorchModule}},
      {"TransformerDecoderLayer", {R::TorchModule}}, {"TransformerDecoder", {R::TorchModule}},
      {"Transformer", {R::TorchModule}},
      // the seeds' own PyTorch code, verbatim
      {"seeds.AttentionLayer", {R::Seed}}, {"seeds.MultiHeadAttention", {R::Seed}}, {"seeds.GAT", {R::Seed}},
      // another project's published code or definition, written out in torch
      {"LocalitySelfAttention", {R::Authors}},     // vit-pytorch's vit_for_small_dataset.py
      {"ShiftedPatchTokenization", {R::Authors}},  // the paper's four half-patch shifts, as vit-pytorch
      {"GATConv", {R::Definition}},                // PyTorch Geometric's GATConv arithmetic
      {"GATv2Conv", {R::Definition}},              // PyTorch Geometric's GATv2Conv arithmetic
      {"T5RelativePositionBias", {R::Definition}},  // Hugging Face's _relative_position_bucket
      // attn's own composition of the definition in torch (no module exists
      // in PyTorch 1.13 to run instead)
      {"AdditiveAttention", {R::Composition}}, {"LuongAttention", {R::Composition}},
      {"AttentionPooling", {R::Composition}}, {"CosineAttention", {R::Composition}},
      {"RotaryEmbedding", {R::Composition}}, {"AlibiSlopes", {R::Composition, true}},
      {"LinearAttention", {R::Composition}},  // against its quadratic form
      {"RelativeMultiheadAttention", {R::Composition}},  // against its direct (L, S, D) form
  };
  return k;
}

// What the README states: 960 cases, 20 per kind for 48 kinds, of which the
// 3 trivial kinds' 60 are not counted as random configurations (900 are).
constexpr int kCasesPerKind = 20, kCases = 960, kRandomConfigurations = 900;

TEST(NnParity, ModulesMatchPyTorch) {
  std::vector<Case> cases = load_cases();
  if (!std::getenv("ATTN_PARITY_NN_FILE")) GTEST_SKIP() << "ATTN_PARITY_NN_FILE is not set (ctest sets it)";
  ASSERT_FALSE(cases.empty()) << "the parity file holds no cases";
  Stats st;
  for (const Case& c : cases) {
    for (DType dt : {kFloat32, kFloat64}) {
      try {
        run_case(c, dt, st);
      } catch (const std::exception& e) {
        ADD_FAILURE() << c.key << " " << c.cfg["kind"].get<std::string>() << " threw: " << e.what() << "\n"
                      << c.cfg.dump();
      }
    }
    ++st.cases;
    ++st.per_kind[c.cfg["kind"]];
  }
  std::map<Reference, int> per_reference;
  int random_configurations = 0;
  for (auto& [k, n] : st.per_kind) {
    auto it = kinds().find(k);
    if (it == kinds().end()) {
      ADD_FAILURE() << k << " is not in the table of kinds";
      continue;
    }
    EXPECT_EQ(n, kCasesPerKind) << k;
    per_reference[it->second.ref] += n;
    if (!it->second.trivial) random_configurations += n;
  }
  for (auto& [k, kind] : kinds()) EXPECT_TRUE(st.per_kind.count(k)) << "no cases of " << k;
  std::printf("nn parity: %d cases of %zu kinds, %d random configurations (the rest: Dropout in eval, Flatten, "
              "ALiBi slopes), %d comparisons against PyTorch (%d cases with fully masked rows, gradients on "
              "their finite rows)\n",
              st.cases, st.per_kind.size(), random_configurations, st.comparisons, st.nan_cases);
  std::printf("nn parity references: %d cases against torch.nn modules, %d against the seeds' code, %d against "
              "published code, %d against another library's definition written in torch, %d against attn's own "
              "composition in torch\n",
              per_reference[Reference::TorchModule], per_reference[Reference::Seed], per_reference[Reference::Authors],
              per_reference[Reference::Definition], per_reference[Reference::Composition]);
  st.accuracy.report("module kinds", "ATTN_ACCURACY_NN");
  EXPECT_EQ(st.cases, kCases);
  EXPECT_EQ(random_configurations, kRandomConfigurations);
  EXPECT_EQ(st.nan_cases, 3);
}

}  // namespace
}  // namespace attn::testing
