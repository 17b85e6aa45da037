// Graph attention over edge lists (GATConv, GATv2Conv) and the seeds' dense
// GAT. The per-target softmax is a segment softmax: the scores' max per target
// (index_reduce amax, a constant shift) is subtracted, exp, the sums per
// target by index_add, and each edge divided by its target's sum (at least 1,
// the max's own term, so never 0).
#include "attn/nn/graph_attention.h"

#include <cmath>

#include "attn/autograd.h"
#include "attn/nn/init.h"
#include "attn/ops.h"

namespace attn::nn {

namespace {

const char* kGat = "GATConv";

// Checks x and edge_index; returns (src, dst) after the self-loop rule.
std::tuple<Tensor, Tensor> edges(const char* op, const Tensor& x, const Tensor& edge_index, int64_t in_channels,
                                 bool add_loops) {
  ATTN_CHECK(x.defined() && x.dim() == 2 && x.size(1) == in_channels, op, ": x must be (N, ", in_channels, "), got ",
             x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  ATTN_CHECK(edge_index.defined() && edge_index.dtype() == kInt64 && edge_index.dim() == 2 && edge_index.size(0) == 2,
             op, ": edge_index must be int64 (2, E), got ",
             edge_index.defined() ? dtype_name(edge_index.dtype()) + std::string(" ") + shape_str(edge_index.shape())
                                  : std::string("undefined"));
  const int64_t N = x.size(0), E = edge_index.size(1);
  Tensor ei = edge_index.contiguous();
  const int64_t* p = ei.data<int64_t>();
  std::vector<int64_t> src, dst;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t j = p[e], i = p[E + e];
    ATTN_CHECK(j >= 0 && j < N && i >= 0 && i < N, op, ": edge ", e, " (", j, " -> ", i, ") is out of range for ", N,
               " nodes");
    if (add_loops && i == j) continue;  // replaced by the one self-loop per node below
    src.push_back(j);
    dst.push_back(i);
  }
  if (add_loops)
    for (int64_t n = 0; n < N; ++n) src.push_back(n), dst.push_back(n);
  const int64_t M = static_cast<int64_t>(src.size());
  return {from_vector(src, {M}), from_vector(dst, {M})};
}

// Softmax of scores (E, H) over the edges of each target; dropout in training.
Tensor segment_softmax(const Tensor& scores, const Tensor& dst, int64_t N, double p, bool training, Generator* gen) {
  const int64_t H = scores.size(1);
  Tensor m = index_reduce(full({N, H}, -INFINITY, scores.dtype()), 0, dst, scores.detach(), "amax", true);
  Tensor ex = exp(scores - index_select(m, 0, dst));
  Tensor den = index_add(zeros({N, H}, scores.dtype()), 0, dst, ex);
  Tensor alpha = ex / index_select(den, 0, dst);
  return F::dropout(alpha, p, training, gen);
}

// sum over incoming edges of alpha * messages: (N, H, C), then concat or mean, then bias.
Tensor aggregate(const Tensor& msg, const Tensor& alpha, const Tensor& dst, int64_t N, bool concat,
                 const Tensor& bias) {
  const int64_t H = msg.size(1), C = msg.size(2);
  Tensor out = index_add(zeros({N, H, C}, msg.dtype()), 0, dst, msg * alpha.unsqueeze(-1));
  out = concat ? out.reshape({N, H * C}) : mean(out, {1});
  return bias.defined() ? out + bias : out;
}

void check_options(const char* op, const GATConvOptions& o) {
  ATTN_CHECK(o.in_channels() > 0 && o.out_channels() > 0 && o.heads() > 0, op,
             ": in_channels, out_channels and heads must be positive");
  ATTN_CHECK(o.dropout() >= 0 && o.dropout() <= 1, op, ": dropout must be in [0, 1], got ", o.dropout());
}

// PyG's glorot: U(-b, b), b = sqrt(6 / (size(-2) + size(-1))).
void glorot(Tensor& t) {
  const double b = std::sqrt(6.0 / static_cast<double>(t.size(-2) + t.size(-1)));
  init::uniform_(t, -b, b);
}

}  // namespace

// ---- GATConv ---------------------------------------------------------------------------
GATConv::GATConv(const GATConvOptions& o)
    : Module("GATConv"),
      options((check_options(kGat, o), o)),
      lin(LinearOptions(o.in_channels(), o.heads() * o.out_channels()).bias(false)) {
  register_module("lin", lin);
  att_src = empty({1, o.heads(), o.out_channels()});
  att_dst = empty({1, o.heads(), o.out_channels()});
  register_parameter("att_src", att_src);
  register_parameter("att_dst", att_dst);
  if (o.bias()) {
    bias = empty({o.concat() ? o.heads() * o.out_channels() : o.out_channels()});
    register_parameter("bias", bias);
  }
  reset_parameters();
}

void GATConv::reset_parameters() {
  glorot(lin.weight);
  glorot(att_src);
  glorot(att_dst);
  if (bias.defined()) init::zeros_(bias);
}

std::tuple<Tensor, GraphAttention> GATConv::forward_with_attention(const Tensor& x, const Tensor& edge_index) const {
  auto [src, dst] = edges(kGat, x, edge_index, options.in_channels(), options.add_self_loops());
  const int64_t N = x.size(0), H = options.heads(), C = options.out_channels();
  Tensor xs = lin.forward(x).reshape({N, H, C});
  Tensor a_src = sum(xs * att_src, {-1}), a_dst = sum(xs * att_dst, {-1});  // (N, H)
  Tensor e = F::leaky_relu(index_select(a_src, 0, src) + index_select(a_dst, 0, dst), options.negative_slope());
  Tensor alpha = segment_softmax(e, dst, N, options.dropout(), is_training(), options.generator());
  Tensor out = aggregate(index_select(xs, 0, src), alpha, dst, N, options.concat(), bias);
  return {out, GraphAttention{stack({src, dst}, 0), alpha}};
}

Tensor GATConv::forward(const Tensor& x, const Tensor& edge_index) const {
  return std::get<0>(forward_with_attention(x, edge_index));
}

std::string GATConv::extra_repr() const {
  return std::to_string(options.in_channels()) + ", " + std::to_string(options.out_channels()) +
         ", heads=" + std::to_string(options.heads());
}

// ---- GATv2Conv -------------------------------------------------------------------------
GATv2Conv::GATv2Conv(const GATv2ConvOptions& o)
    : Module("GATv2Conv"),
      options((check_options("GATv2Conv", o), o)),
      lin_l(LinearOptions(o.in_channels(), o.heads() * o.out_channels()).bias(o.bias())),
      lin_r_own(o.share_weights()
                    ? nullptr
                    : std::make_unique<Linear>(LinearOptions(o.in_channels(), o.heads() * o.out_channels()).bias(o.bias()))),
      lin_r(o.share_weights() ? lin_l : *lin_r_own) {
  att = empty({1, o.heads(), o.out_channels()});
  register_parameter("att", att);
  if (o.bias()) {
    bias = empty({o.concat() ? o.heads() * o.out_channels() : o.out_channels()});
    register_parameter("bias", bias);
  }
  register_module("lin_l", lin_l);
  register_module("lin_r", lin_r);  // the same module twice with share_weights, as PyG's state_dict
  reset_parameters();
}

void GATv2Conv::reset_parameters() {
  glorot(lin_l.weight);
  if (lin_l.bias.defined()) init::zeros_(lin_l.bias);
  if (!options.share_weights()) {
    glorot(lin_r.weight);
    if (lin_r.bias.defined()) init::zeros_(lin_r.bias);
  }
  glorot(att);
  if (bias.defined()) init::zeros_(bias);
}

std::tuple<Tensor, GraphAttention> GATv2Conv::forward_with_attention(const Tensor& x, const Tensor& edge_index) const {
  auto [src, dst] = edges("GATv2Conv", x, edge_index, options.in_channels(), options.add_self_loops());
  const int64_t N = x.size(0), H = options.heads(), C = options.out_channels();
  Tensor xl = lin_l.forward(x).reshape({N, H, C}), xr = lin_r.forward(x).reshape({N, H, C});
  Tensor xj = index_select(xl, 0, src);
  Tensor e = sum(F::leaky_relu(xj + index_select(xr, 0, dst), options.negative_slope()) * att, {-1});  // (E, H)
  Tensor alpha = segment_softmax(e, dst, N, options.dropout(), is_training(), options.generator());
  Tensor out = aggregate(xj, alpha, dst, N, options.concat(), bias);
  return {out, GraphAttention{stack({src, dst}, 0), alpha}};
}

Tensor GATv2Conv::forward(const Tensor& x, const Tensor& edge_index) const {
  return std::get<0>(forward_with_attention(x, edge_index));
}

std::string GATv2Conv::extra_repr() const {
  return std::to_string(options.in_channels()) + ", " + std::to_string(options.out_channels()) +
         ", heads=" + std::to_string(options.heads());
}

// ---- The seeds' dense GAT ------------------------------------------------------------------
namespace seeds {

GraphAttentionLayer::GraphAttentionLayer(int64_t in, int64_t out, double dropout_, double alpha_, bool concat_,
                                         Generator* gen)
    : Module("GraphAttentionLayer"),
      in_features(in),
      out_features(out),
      dropout(dropout_),
      alpha(alpha_),
      concat(concat_),
      generator(gen) {
  ATTN_CHECK(in > 0 && out > 0, "GraphAttentionLayer: in_features and out_features must be positive");
  W = empty({in, out});
  a = empty({2 * out, 1});
  register_parameter("W", W);
  register_parameter("a", a);
  init::xavier_uniform_(W, 1.414);
  init::xavier_uniform_(a, 1.414);
}

Tensor GraphAttentionLayer::forward(const Tensor& h, const Tensor& adj) const {
  ATTN_CHECK(h.defined() && h.dim() == 2 && h.size(1) == in_features, "GraphAttentionLayer: h must be (N, ",
             in_features, "), got ", h.defined() ? shape_str(h.shape()) : std::string("undefined"));
  const int64_t N = h.size(0);
  ATTN_CHECK(adj.defined() && adj.shape() == (Shape{N, N}), "GraphAttentionLayer: adj must be (", N, ", ", N,
             "), got ", adj.defined() ? shape_str(adj.shape()) : std::string("undefined"));
  Tensor Wh = mm(h, W);                                              // (N, out)
  Tensor Wh1 = matmul(Wh, a.narrow(0, 0, out_features));           // (N, 1)
  Tensor Wh2 = matmul(Wh, a.narrow(0, out_features, out_features));
  Tensor e = F::leaky_relu(Wh1 + Wh2.t(), alpha);                   // (N, N)
  Tensor connected = adj.dtype() == kBool ? adj : adj > 0.0;
  Tensor attention = F::softmax(where(connected, e, -9e15), 1);     // the seed's fill, not -inf
  attention = F::dropout(attention, dropout, is_training(), generator);
  Tensor hp = matmul(attention, Wh);
  return concat ? F::elu(hp) : hp;
}

GAT::GAT(int64_t num_features, int64_t hidden, int64_t num_classes, double dropout_, double alpha, int64_t nheads,
         Generator* gen)
    : Module("GAT"), dropout(dropout_), generator(gen) {
  ATTN_CHECK(nheads > 0, "GAT: nheads must be positive, got ", nheads);
  for (int64_t i = 0; i < nheads; ++i) {
    attentions.push_back(std::make_unique<GraphAttentionLayer>(num_features, hidden, dropout_, alpha, true, gen));
    register_module("attention_" + std::to_string(i), *attentions.back());
  }
  out_attention = std::make_unique<GraphAttentionLayer>(hidden * nheads, num_classes, dropout_, alpha, false, gen);
  register_module("out_attention", *out_attention);
}

Tensor GAT::forward(const Tensor& x_in, const Tensor& adj) const {
  Tensor x = F::dropout(x_in, dropout, is_training(), generator);
  std::vector<Tensor> hs;
  for (auto& att : attentions) hs.push_back(att->forward(x, adj));
  x = F::dropout(cat(hs, 1), dropout, is_training(), generator);
  x = F::elu(out_attention->forward(x, adj));
  return F::log_softmax(x, 1);
}

}  // namespace seeds

}  // namespace attn::nn
