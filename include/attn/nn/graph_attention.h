// Graph attention: GATConv and GATv2Conv over an edge list, as PyTorch
// Geometric defines them, and the seeds' dense GraphAttentionLayer and GAT.
//
// Legend: N = nodes, E = edges, H = heads, C = out_channels per head.
//   x: (N, in_channels); edge_index: int64 (2, E), row 0 the source j, row 1
//   the target i (messages flow j -> i; each target's incoming edges are
//   normalised by a softmax). Memory O(E * H * C): no N x N matrix.
// With add_self_loops (the default) existing self-loops are removed and one
// per node added, as PyG; a node with no incoming edge gets only the bias.
#pragma once

#include <cstdint>
#include <memory>
#include <tuple>
#include <vector>

#include "attn/generator.h"
#include "attn/nn/layers.h"
#include "attn/nn/module.h"
#include "attn/tensor.h"

namespace attn::nn {

struct GATConvOptions {
  GATConvOptions(int64_t in_channels, int64_t out_channels) : in_channels_(in_channels), out_channels_(out_channels) {}
  ATTN_ARG(int64_t, in_channels);
  ATTN_ARG(int64_t, out_channels);
  ATTN_ARG(int64_t, heads) = 1;
  ATTN_ARG(bool, concat) = true;             // heads concatenated (H * C), else averaged (C)
  ATTN_ARG(double, negative_slope) = 0.2;    // of the LeakyReLU on the scores
  ATTN_ARG(double, dropout) = 0.0;           // on the attention coefficients, in training mode
  ATTN_ARG(bool, add_self_loops) = true;
  ATTN_ARG(bool, bias) = true;
  ATTN_ARG(bool, share_weights) = false;     // GATv2Conv: one projection for sources and targets
  ATTN_ARG(Generator*, generator) = nullptr;
};
using GATv2ConvOptions = GATConvOptions;

// The edge list actually used (self-loops removed and added when asked),
// and per edge and head the attention coefficient: (edge_index (2, E'), alpha (E', H)).
using GraphAttention = std::tuple<Tensor, Tensor>;

// GAT (Velickovic et al. 2018): alpha_ij = softmax_j(LeakyReLU(a_src . W x_j +
// a_dst . W x_i)); out_i = sum_j alpha_ij W x_j. Parameters lin.weight
// (H C, in), att_src, att_dst (1, H, C) (glorot), bias (H C or C) (zeros).
class GATConv : public Module {
 public:
  explicit GATConv(const GATConvOptions& options);
  void reset_parameters();
  Tensor forward(const Tensor& x, const Tensor& edge_index) const;
  std::tuple<Tensor, GraphAttention> forward_with_attention(const Tensor& x, const Tensor& edge_index) const;
  std::string extra_repr() const override;
  GATConvOptions options;
  Linear lin;
  Tensor att_src, att_dst, bias;
};

// GATv2 (Brody et al. 2022): alpha_ij = softmax_j(a . LeakyReLU(W_l x_j + W_r x_i));
// out_i = sum_j alpha_ij W_l x_j. Parameters lin_l.weight/bias, lin_r.weight/bias
// (the same module under both names with share_weights), att (1, H, C), bias.
class GATv2Conv : public Module {
 public:
  explicit GATv2Conv(const GATv2ConvOptions& options);
  void reset_parameters();
  Tensor forward(const Tensor& x, const Tensor& edge_index) const;
  std::tuple<Tensor, GraphAttention> forward_with_attention(const Tensor& x, const Tensor& edge_index) const;
  std::string extra_repr() const override;
  GATv2ConvOptions options;
  Linear lin_l;
  std::unique_ptr<Linear> lin_r_own;  // null with share_weights
  Linear& lin_r;
  Tensor att, bias;
};

namespace seeds {

// The seed's dense GraphAttentionLayer: Wh = h W, e_ij = LeakyReLU(a1 . Wh_i +
// a2 . Wh_j), softmax over j where adj > 0 (others -9e15, as the seed), dropout,
// h' = attention Wh, then ELU when concat. Parameters W (in, out), a (2 out, 1),
// xavier-uniform with gain 1.414. h (N, in), adj (N, N).
class GraphAttentionLayer : public Module {
 public:
  GraphAttentionLayer(int64_t in_features, int64_t out_features, double dropout, double alpha, bool concat = true,
                      Generator* generator = nullptr);
  Tensor forward(const Tensor& h, const Tensor& adj) const;
  int64_t in_features, out_features;
  double dropout, alpha;
  bool concat;
  Generator* generator;
  Tensor W, a;
};

// The seed's GAT: nheads GraphAttentionLayers (attention_0 ...) concatenated,
// then out_attention, ELU and log_softmax; dropout on the inputs of both.
class GAT : public Module {
 public:
  GAT(int64_t num_features, int64_t hidden_size, int64_t num_classes, double dropout, double alpha, int64_t nheads,
      Generator* generator = nullptr);
  Tensor forward(const Tensor& x, const Tensor& adj) const;
  double dropout;
  Generator* generator;
  std::vector<std::unique_ptr<GraphAttentionLayer>> attentions;  // children attention_0, attention_1, ...
  std::unique_ptr<GraphAttentionLayer> out_attention;
};

}  // namespace seeds

}  // namespace attn::nn
