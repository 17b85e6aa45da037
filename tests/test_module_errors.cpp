// The bad-input matrix over every public module: each module is described by
// a valid call and its input slots (kind, accepted ranks, the dimension whose
// size the module fixes, optional or not); the test derives the bad inputs
// from that description — every slot in turn made float64 (beside float32
// weights), int64, bool or undefined, one rank too many or too few, a wrong
// feature size, masks of the wrong shape or dtype, indices out of range — and
// requires an attn::Error whose message names what failed, never a crash or
// a silent result. Zero-size inputs (batch 0, sequence 0) give the empty
// results PyTorch gives. Prints how many cases it tried.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <functional>
#include <regex>
#include <string>
#include <vector>

using namespace attn;
namespace F = attn::nn::functional;

namespace {

// Float: a float input that must match float32 weights (Free: a float input
// of a module without weights, which takes any float dtype as PyTorch does);
// Any: any dtype (an adjacency compared with > 0, as the seed's code does).
enum class Kind { Float, Free, Any, Index, BoolMask, FloatMask };

struct Slot {
  std::string name;
  Tensor valid;
  Kind kind = Kind::Float;
  std::vector<int64_t> ranks;  // accepted ranks (empty: any)
  int64_t fixed_dim = -1;      // a dimension whose size the module fixes (-1: none)
  bool optional = false;       // an undefined tensor is accepted
  int64_t index_limit = 0;     // Index: valid values are [0, index_limit)
};

struct ZeroCase {
  std::string name;
  std::function<Tensor()> run;
  Shape expected;
};

struct ModuleCase {
  std::string name;
  std::function<void(const std::vector<Tensor>&)> call;
  std::vector<Slot> slots;
  std::vector<ZeroCase> zeros;
};

struct Tally {
  int cases = 0, errors = 0;
  std::vector<std::string> samples;
};

// A message that names what failed: "<op or Module>: <what>".
const std::regex kNamed(R"(^[A-Za-z_][A-Za-z0-9_.:<> ]*: .{12,})");

void expect_error(Tally& t, const std::string& module, const std::string& what,
                  const std::function<void()>& f) {
  ++t.cases;
  try {
    f();
  } catch (const Error& e) {
    ++t.errors;
    const std::string m = e.what();
    EXPECT_TRUE(std::regex_search(m, kNamed)) << module << ", " << what << ": unclear message: " << m;
    if (t.samples.size() < 400) t.samples.push_back(module + " | " + what + " | " + m);
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << module << ", " << what << ": a " << typeid(e).name() << " instead of attn::Error: " << e.what();
    return;
  }
  ADD_FAILURE() << module << ", " << what << ": accepted";
}

// size + 1 along `dim` (repeats the first slice).
Tensor grow(const Tensor& x, int64_t dim) { return cat({x, x.narrow(dim, 0, 1)}, dim); }

void run_matrix(Tally& t, const ModuleCase& mc) {
  std::vector<Tensor> valid;
  for (const Slot& s : mc.slots) valid.push_back(s.valid);
  ++t.cases;
  ASSERT_NO_THROW(mc.call(valid)) << mc.name << ": the valid call failed";
  for (size_t i = 0; i < mc.slots.size(); ++i) {
    const Slot& s = mc.slots[i];
    if (!s.valid.defined()) continue;
    auto with = [&](const Tensor& bad) {
      std::vector<Tensor> in = valid;
      in[i] = bad;
      return [in, &mc] { mc.call(in); };
    };
    const std::string slot = s.name + " ";
    switch (s.kind) {
      case Kind::Float:
        expect_error(t, mc.name, slot + "float64 beside float32 weights", with(s.valid.to(kFloat64)));
        expect_error(t, mc.name, slot + "int64", with(s.valid.to(kInt64)));
        expect_error(t, mc.name, slot + "bool", with(s.valid.to(kBool)));
        break;
      case Kind::Free:
        ++t.cases;
        EXPECT_NO_THROW(with(s.valid.to(kFloat64))()) << mc.name << ": float64 " << s.name;
        expect_error(t, mc.name, slot + "int64", with(s.valid.to(kInt64)));
        expect_error(t, mc.name, slot + "bool", with(s.valid.to(kBool)));
        break;
      case Kind::Any:
        break;
      case Kind::Index:
        expect_error(t, mc.name, slot + "float32 indices", with(s.valid.to(kFloat32)));
        expect_error(t, mc.name, slot + "bool indices", with(s.valid.to(kBool)));
        expect_error(t, mc.name, slot + "index == limit", with(full_like(s.valid, static_cast<double>(s.index_limit))));
        expect_error(t, mc.name, slot + "index -limit - 1",
                     with(full_like(s.valid, static_cast<double>(-s.index_limit - 1))));
        break;
      case Kind::BoolMask:
        expect_error(t, mc.name, slot + "int64 mask", with(s.valid.to(kInt64)));
        expect_error(t, mc.name, slot + "mask one column too many", with(grow(s.valid, s.valid.dim() - 1)));
        break;
      case Kind::FloatMask:
        expect_error(t, mc.name, slot + "int64 mask", with(s.valid.to(kInt64)));
        expect_error(t, mc.name, slot + "float64 mask beside float32", with(s.valid.to(kFloat64)));
        expect_error(t, mc.name, slot + "mask one column too many", with(grow(s.valid, s.valid.dim() - 1)));
        break;
    }
    if (!s.ranks.empty()) {
      const int64_t lo = *std::min_element(s.ranks.begin(), s.ranks.end());
      const int64_t hi = *std::max_element(s.ranks.begin(), s.ranks.end());
      expect_error(t, mc.name, slot + "rank " + std::to_string(hi + 1), with(s.valid.unsqueeze(0)));
      if (lo >= 1 && s.valid.dim() == lo)
        expect_error(t, mc.name, slot + "rank " + std::to_string(lo - 1), with(s.valid.select(0, 0)));
    }
    if (s.fixed_dim >= 0)
      expect_error(t, mc.name, slot + "size of dim " + std::to_string(s.fixed_dim) + " + 1", with(grow(s.valid, s.fixed_dim)));
    if (!s.optional) expect_error(t, mc.name, slot + "undefined", with(Tensor()));
  }
  for (const ZeroCase& z : mc.zeros) {
    ++t.cases;
    try {
      const Tensor out = z.run();
      EXPECT_EQ(out.shape(), z.expected) << mc.name << ", " << z.name;
    } catch (const std::exception& e) {
      ADD_FAILURE() << mc.name << ", " << z.name << ": " << e.what();
    }
  }
}

Tensor r(const Shape& s, Generator& g) { return randn(s, kFloat32, &g); }

}  // namespace

TEST(ModuleErrors, EveryModuleRejectsBadInputWithAClearError) {
  manual_seed(1);
  Generator g(2);
  const int64_t B = 2, L = 3, S = 4, E = 8;
  Tally t;
  std::vector<ModuleCase> cases;

  // ---- layers ----
  nn::Linear lin(E, 5);
  cases.push_back({"Linear", [&](auto& in) { lin.forward(in[0]); }, {{"x", r({B, E}, g), Kind::Float, {}, 1}},
                   {{"batch 0", [&] { return lin.forward(r({0, E}, g)); }, {0, 5}}}});
  nn::Bilinear bil(nn::BilinearOptions(E, 3, 5));
  cases.push_back({"Bilinear", [&](auto& in) { bil.forward(in[0], in[1]); },
                   {{"x1", r({B, E}, g), Kind::Float, {}, 1}, {"x2", r({B, 3}, g), Kind::Float, {}, 1}},
                   {{"batch 0", [&] { return bil.forward(r({0, E}, g), r({0, 3}, g)); }, {0, 5}}}});
  nn::Embedding emb(nn::EmbeddingOptions(10, E));
  cases.push_back({"Embedding", [&](auto& in) { emb.forward(in[0]); },
                   {{"indices", from_vector(std::vector<int64_t>{1, 2, 9}), Kind::Index, {}, -1, false, 10}},
                   {{"0 indices", [&] { return emb.forward(zeros({0, 3}, kInt64)); }, {0, 3, E}}}});
  nn::LayerNorm ln(nn::LayerNormOptions({E}));
  cases.push_back({"LayerNorm", [&](auto& in) { ln.forward(in[0]); }, {{"x", r({B, L, E}, g), Kind::Float, {}, 2}},
                   {{"batch 0", [&] { return ln.forward(r({0, L, E}, g)); }, {0, L, E}}}});
  nn::BatchNorm1d bn1{nn::BatchNormOptions(E)};
  cases.push_back({"BatchNorm1d", [&](auto& in) { bn1.forward(in[0]); }, {{"x", r({B, E, L}, g), Kind::Float, {2, 3}, 1}}});
  nn::BatchNorm2d bn2(nn::BatchNormOptions(3));
  cases.push_back({"BatchNorm2d", [&](auto& in) { bn2.forward(in[0]); }, {{"x", r({B, 3, 4, 4}, g), Kind::Float, {4}, 1}}});
  nn::Conv2d conv(nn::Conv2dOptions(3, 4, 3));
  cases.push_back({"Conv2d", [&](auto& in) { conv.forward(in[0]); }, {{"x", r({B, 3, 6, 6}, g), Kind::Float, {3, 4}, 1}},
                   {{"batch 0", [&] { return conv.forward(r({0, 3, 6, 6}, g)); }, {0, 4, 4, 4}}}});
  nn::MaxPool2d mp(nn::MaxPool2dOptions(2));
  cases.push_back({"MaxPool2d", [&](auto& in) { mp.forward(in[0]); }, {{"x", r({B, 3, 6, 6}, g), Kind::Free, {3, 4}}}});
  nn::AvgPool2d ap(nn::AvgPool2dOptions(2));
  cases.push_back({"AvgPool2d", [&](auto& in) { ap.forward(in[0]); }, {{"x", r({B, 3, 6, 6}, g), Kind::Free, {3, 4}}}});
  nn::AdaptiveAvgPool2d aap(2);
  cases.push_back({"AdaptiveAvgPool2d", [&](auto& in) { aap.forward(in[0]); },
                   {{"x", r({B, 3, 6, 6}, g), Kind::Free, {3, 4}}}});

  // ---- recurrent ----
  nn::LSTM lstm(nn::LSTMOptions(E, 6).batch_first(true));
  cases.push_back({"LSTM", [&](auto& in) { lstm.forward(in[0], {in[1], in[2]}); },
                   {{"input", r({B, L, E}, g), Kind::Float, {2, 3}, 2},
                    {"h0", r({1, B, 6}, g), Kind::Float, {2, 3}, 2, true},
                    {"c0", r({1, B, 6}, g), Kind::Float, {2, 3}, 2, true}},
                   {{"batch 0", [&] { return std::get<0>(lstm.forward(r({0, L, E}, g))); }, {0, L, 6}}}});
  nn::GRU gru(nn::GRUOptions(E, 6));
  cases.push_back({"GRU", [&](auto& in) { gru.forward(in[0], in[1]); },
                   {{"input", r({L, B, E}, g), Kind::Float, {2, 3}, 2},
                    {"h0", r({1, B, 6}, g), Kind::Float, {2, 3}, 2, true}}});
  nn::RNN rnn(nn::RNNOptions(E, 6).bidirectional(true).num_layers(2));
  cases.push_back({"RNN", [&](auto& in) { rnn.forward(in[0], in[1]); },
                   {{"input", r({L, B, E}, g), Kind::Float, {2, 3}, 2},
                    {"h0", r({4, B, 6}, g), Kind::Float, {2, 3}, 2, true}}});
  nn::LSTMCell lcell(nn::LSTMCellOptions(E, 6));
  cases.push_back({"LSTMCell", [&](auto& in) { lcell.forward(in[0], {in[1], in[2]}); },
                   {{"input", r({B, E}, g), Kind::Float, {1, 2}, 1},
                    {"h", r({B, 6}, g), Kind::Float, {1, 2}, 1, true},
                    {"c", r({B, 6}, g), Kind::Float, {1, 2}, 1, true}},
                   {{"batch 0", [&] { return std::get<0>(lcell.forward(r({0, E}, g))); }, {0, 6}}}});
  nn::GRUCell gcell(nn::GRUCellOptions(E, 6));
  cases.push_back({"GRUCell", [&](auto& in) { gcell.forward(in[0], in[1]); },
                   {{"input", r({B, E}, g), Kind::Float, {1, 2}, 1}, {"h", r({B, 6}, g), Kind::Float, {1, 2}, 1, true}}});
  nn::RNNCell rcell(nn::RNNCellOptions(E, 6));
  cases.push_back({"RNNCell", [&](auto& in) { rcell.forward(in[0], in[1]); },
                   {{"input", r({B, E}, g), Kind::Float, {1, 2}, 1}, {"h", r({B, 6}, g), Kind::Float, {1, 2}, 1, true}}});

  // ---- attention ----
  nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(E, 2).batch_first(true));
  cases.push_back({"MultiheadAttention",
                   [&](auto& in) { mha.forward(in[0], in[1], in[2], in[3], true, in[4]); },
                   {{"query", r({B, L, E}, g), Kind::Float, {2, 3}, 2},
                    {"key", r({B, S, E}, g), Kind::Float, {2, 3}, 2},
                    {"value", r({B, S, E}, g), Kind::Float, {2, 3}, 2},
                    {"key_padding_mask", zeros({B, S}, kBool), Kind::BoolMask, {}, -1, true},
                    {"attn_mask", zeros({L, S}), Kind::FloatMask, {}, -1, true}},
                   {{"L 0", [&] { return std::get<0>(mha.forward(r({B, 0, E}, g), r({B, S, E}, g), r({B, S, E}, g))); }, {B, 0, E}},
                    {"S 0", [&] { return std::get<0>(mha.forward(r({B, L, E}, g), r({B, 0, E}, g), r({B, 0, E}, g))); }, {B, L, E}},
                    {"batch 0", [&] { return std::get<0>(mha.forward(r({0, L, E}, g), r({0, S, E}, g), r({0, S, E}, g))); }, {0, L, E}}}});
  nn::AdditiveAttention add(nn::AdditiveAttentionOptions(E, 6, 5));
  cases.push_back({"AdditiveAttention", [&](auto& in) { add.forward(in[0], in[1], in[2], in[3]); },
                   {{"query", r({B, E}, g), Kind::Float, {2, 3}, 1},
                    {"keys", r({B, S, 6}, g), Kind::Float, {3}, 2},
                    {"values", r({B, S, 7}, g), Kind::Float, {3}, -1, true},
                    {"key_padding_mask", zeros({B, S}, kBool), Kind::BoolMask, {}, -1, true}}});
  nn::LuongAttention luong(nn::LuongAttentionOptions(E, 6));
  cases.push_back({"LuongAttention", [&](auto& in) { luong.forward(in[0], in[1], in[2], in[3]); },
                   {{"query", r({B, E}, g), Kind::Float, {2, 3}, 1},
                    {"keys", r({B, S, 6}, g), Kind::Float, {3}, 2},
                    {"values", r({B, S, 7}, g), Kind::Float, {3}, -1, true},
                    {"key_padding_mask", zeros({B, S}, kBool), Kind::BoolMask, {}, -1, true}}});
  nn::AttentionPooling pool(E);
  cases.push_back({"AttentionPooling", [&](auto& in) { pool.forward(in[0], in[1]); },
                   {{"x", r({B, L, E}, g), Kind::Float, {3}, 2},
                    {"key_padding_mask", zeros({B, L}, kBool), Kind::BoolMask, {}, -1, true}}});
  nn::CosineAttention cosine;
  cases.push_back({"CosineAttention", [&](auto& in) { cosine.forward(in[0], in[1], in[2], in[3]); },
                   {{"q", r({B, L, E}, g), Kind::Float, {}, 2},
                    {"k", r({B, S, E}, g), Kind::Float, {}, 2},
                    {"v", r({B, S, E}, g), Kind::Float},
                    {"attn_mask", ones({L, S}, kBool), Kind::BoolMask, {}, -1, true}}});
  nn::RelativeMultiheadAttention rel(nn::RelativeMultiheadAttentionOptions(E, 2).max_relative_position(2).batch_first(true));
  cases.push_back({"RelativeMultiheadAttention", [&](auto& in) { rel.forward(in[0], in[1], in[2], in[3], true, in[4]); },
                   {{"query", r({B, L, E}, g), Kind::Float, {2, 3}, 2},
                    {"key", r({B, S, E}, g), Kind::Float, {2, 3}, 2},
                    {"value", r({B, S, E}, g), Kind::Float, {2, 3}, 2},
                    {"key_padding_mask", zeros({B, S}, kBool), Kind::BoolMask, {}, -1, true},
                    {"attn_mask", zeros({L, S}), Kind::FloatMask, {}, -1, true}}});
  nn::RotaryEmbedding rope{nn::RotaryEmbeddingOptions(E)};
  cases.push_back({"RotaryEmbedding", [&](auto& in) { rope.forward(in[0]); }, {{"x", r({B, L, E}, g), Kind::Free, {}, 2}}});
  nn::LocalitySelfAttention lsa(nn::LocalitySelfAttentionOptions(E).heads(2).dim_head(4));
  cases.push_back({"LocalitySelfAttention", [&](auto& in) { lsa.forward(in[0]); }, {{"x", r({B, L, E}, g), Kind::Float, {3}, 2}},
                   {{"batch 0", [&] { return lsa.forward(r({0, L, E}, g)); }, {0, L, E}}}});
  nn::ShiftedPatchTokenization spt(nn::ShiftedPatchTokenizationOptions(3, 2, E));
  cases.push_back({"ShiftedPatchTokenization", [&](auto& in) { spt.forward(in[0]); },
                   {{"x", r({B, 3, 4, 4}, g), Kind::Float, {4}, 1}}});
  nn::seeds::AttentionLayer al(E, 5);
  cases.push_back({"seeds::AttentionLayer", [&](auto& in) { al.forward(in[0], in[1], in[2]); },
                   {{"query", r({B, L, E}, g), Kind::Float, {}, 2},
                    {"key", r({B, S, E}, g), Kind::Float, {}, 2},
                    {"value", r({B, S, E}, g), Kind::Float, {}, 2}}});
  nn::seeds::MultiHeadAttention smha(E, 2);
  cases.push_back({"seeds::MultiHeadAttention", [&](auto& in) { smha.forward(in[0], in[1], in[2], in[3]); },
                   {{"query", r({B, L, E}, g), Kind::Float, {3}, 2},
                    {"key", r({B, S, E}, g), Kind::Float, {3}, 2},
                    {"value", r({B, S, E}, g), Kind::Float, {3}, 2},
                    {"mask", ones({L, S}, kBool), Kind::BoolMask, {}, -1, true}}});

  // ---- graphs ----
  const Tensor edges = from_vector(std::vector<int64_t>{0, 1, 2, 3, 1, 2, 3, 0}, {2, 4});
  nn::GATConv gat(nn::GATConvOptions(E, 3).heads(2));
  cases.push_back({"GATConv", [&](auto& in) { gat.forward(in[0], in[1]); },
                   {{"x", r({5, E}, g), Kind::Float, {2}, 1},
                    {"edge_index", edges, Kind::Index, {2}, 0, false, 5}},
                   {{"0 edges", [&] { return gat.forward(r({5, E}, g), zeros({2, 0}, kInt64)); }, {5, 6}}}});
  nn::GATv2Conv gat2(nn::GATv2ConvOptions(E, 3).heads(2));
  cases.push_back({"GATv2Conv", [&](auto& in) { gat2.forward(in[0], in[1]); },
                   {{"x", r({5, E}, g), Kind::Float, {2}, 1},
                    {"edge_index", edges, Kind::Index, {2}, 0, false, 5}}});
  nn::seeds::GraphAttentionLayer gal(E, 3, 0.0, 0.2);
  cases.push_back({"seeds::GraphAttentionLayer", [&](auto& in) { gal.forward(in[0], in[1]); },
                   {{"h", r({5, E}, g), Kind::Float, {2}, 1}, {"adj", ones({5, 5}), Kind::Any, {2}, 1}}});

  // ---- transformers ----
  nn::TransformerEncoderLayer enc(nn::TransformerEncoderLayerOptions(E, 2).dim_feedforward(16).dropout(0.0).batch_first(true));
  cases.push_back({"TransformerEncoderLayer", [&](auto& in) { enc.forward(in[0], in[1], in[2]); },
                   {{"src", r({B, L, E}, g), Kind::Float, {2, 3}, 2},
                    {"src_mask", zeros({L, L}), Kind::FloatMask, {}, -1, true},
                    {"src_key_padding_mask", zeros({B, L}, kBool), Kind::BoolMask, {}, -1, true}},
                   {{"batch 0", [&] { return enc.forward(r({0, L, E}, g)); }, {0, L, E}}}});
  nn::TransformerDecoderLayer dec(nn::TransformerDecoderLayerOptions(E, 2).dim_feedforward(16).dropout(0.0).batch_first(true));
  cases.push_back({"TransformerDecoderLayer", [&](auto& in) { dec.forward(in[0], in[1], in[2], in[3], in[4], in[5]); },
                   {{"tgt", r({B, L, E}, g), Kind::Float, {2, 3}, 2},
                    {"memory", r({B, S, E}, g), Kind::Float, {2, 3}, 2},
                    {"tgt_mask", zeros({L, L}), Kind::FloatMask, {}, -1, true},
                    {"memory_mask", zeros({L, S}), Kind::FloatMask, {}, -1, true},
                    {"tgt_key_padding_mask", zeros({B, L}, kBool), Kind::BoolMask, {}, -1, true},
                    {"memory_key_padding_mask", zeros({B, S}, kBool), Kind::BoolMask, {}, -1, true}}});
  nn::Transformer tr(nn::TransformerOptions(E, 2).num_encoder_layers(1).num_decoder_layers(1).dim_feedforward(16)
                         .dropout(0.0).batch_first(true));
  cases.push_back({"Transformer", [&](auto& in) { tr.forward(in[0], in[1], {}, in[2]); },
                   {{"src", r({B, S, E}, g), Kind::Float, {2, 3}, 2},
                    {"tgt", r({B, L, E}, g), Kind::Float, {2, 3}, 2},
                    {"tgt_mask", zeros({L, L}), Kind::FloatMask, {}, -1, true}}});

  for (const ModuleCase& mc : cases) run_matrix(t, mc);

  // Sizes whose products overflow int64, and shapes that cannot exist.
  const int64_t big = int64_t{1} << 40;
  expect_error(t, "factories", "zeros of 2^80 elements", [&] { zeros({big, big}); });
  expect_error(t, "views", "expand to 2^80 elements", [&] { r({1, 1}, g).expand({big, big}); });
  expect_error(t, "views", "reshape to 2^80 elements", [&] { r({4}, g).reshape({big, big}); });
  expect_error(t, "views", "negative size", [&] { r({4}, g).reshape({-2, -2}); });
  expect_error(t, "factories", "negative size", [&] { zeros({-1, 3}); });
  expect_error(t, "Linear", "2^40 x 2^40 features", [&] { nn::Linear huge(big, big); });
  expect_error(t, "Embedding", "2^40 x 2^40 table", [&] { nn::Embedding huge(nn::EmbeddingOptions(big, big)); });
  expect_error(t, "MultiheadAttention", "embed_dim not divisible by heads",
               [&] { nn::MultiheadAttention m(nn::MultiheadAttentionOptions(E, 3)); });
  expect_error(t, "Conv2d", "channels not divisible by groups",
               [&] { nn::Conv2d c(nn::Conv2dOptions(3, 4, 3).groups(2)); });

  std::printf("module bad-input matrix: %zu modules, %d cases tried, %d attn::Errors as required\n", cases.size(),
              t.cases, t.errors);
  if (std::getenv("ATTN_PRINT_ERRORS"))
    for (const std::string& s : t.samples) std::printf("  %s\n", s.c_str());
}
