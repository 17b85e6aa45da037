// gat: node classification on a generated graph (a stochastic block model:
// 5 communities of 400 nodes, each node ~8 edges inside its community and
// ~4 across, noisy features whose class signal alone gives ~45%), trained
// full-batch on 10% of the labels and evaluated on the other 90%.
// Variants: "gatconv" (two GATConv layers over the edge list, 8 heads, as
// the GAT paper's Cora model) and "gatv2" (the same with GATv2Conv, whose
// attention ranks neighbours per target). Reported beside a no-attention baseline trained the
// same way: two mean-aggregation layers (each node averages itself and its
// neighbours, then a linear map).
#include <attn/attn.h>

#include <algorithm>
#include <map>
#include <cstdio>
#include <random>
#include <set>

#include "common/app.h"

namespace attn::apps {

namespace {

constexpr int64_t kClasses = 5, kPerClass = 400, kNodes = kClasses * kPerClass, kFeatures = 32;

struct Graph {
  Tensor x, edge_index, labels, train_idx, test_idx, agg_src, agg_dst, inv_deg;
};

Graph make_graph(uint64_t seed) {
  std::mt19937_64 rng(seed * 31 + 7);
  std::normal_distribution<double> normal(0.0, 1.0);
  Graph g;
  std::vector<int64_t> labels(kNodes);
  for (int64_t i = 0; i < kNodes; ++i) labels[i] = i % kClasses;
  // Class centroids, then features = 0.3 * centroid + noise.
  std::vector<double> centroid(kClasses * kFeatures), feat(kNodes * kFeatures);
  for (double& c : centroid) c = normal(rng);
  for (int64_t i = 0; i < kNodes; ++i)
    for (int64_t f = 0; f < kFeatures; ++f) feat[i * kFeatures + f] = 0.3 * centroid[labels[i] * kFeatures + f] + normal(rng);
  std::set<std::pair<int64_t, int64_t>> edges;
  auto link = [&](int64_t a, int64_t b) {
    if (a != b) edges.insert({a, b}), edges.insert({b, a});
  };
  for (int64_t i = 0; i < kNodes; ++i) {
    for (int k = 0; k < 2; ++k) link(i, labels[i] + kClasses * static_cast<int64_t>(rng() % kPerClass));  // same class
    for (int k = 0; k < 4; ++k) link(i, static_cast<int64_t>(rng() % kNodes));                            // anywhere
  }
  std::vector<int64_t> src, dst;
  for (auto [a, b] : edges) src.push_back(a), dst.push_back(b);
  std::vector<int64_t> ei = src;
  ei.insert(ei.end(), dst.begin(), dst.end());
  g.edge_index = from_vector(ei, {2, static_cast<int64_t>(src.size())});
  g.x = from_vector(feat, {kNodes, kFeatures}).to(kFloat32);
  g.labels = from_vector(labels);
  // Mean aggregation over the neighbours and the node itself.
  std::vector<int64_t> as = src, ad = dst;
  std::vector<double> deg(kNodes, 1.0);
  for (int64_t i = 0; i < kNodes; ++i) as.push_back(i), ad.push_back(i);
  for (int64_t d : dst) deg[d] += 1;
  for (double& d : deg) d = 1.0 / d;
  g.agg_src = from_vector(as);
  g.agg_dst = from_vector(ad);
  g.inv_deg = from_vector(deg, {kNodes, 1}).to(kFloat32);
  // 10% of the nodes (40 per class) labelled for training.
  std::vector<int64_t> order(kNodes), tr, te;
  for (int64_t i = 0; i < kNodes; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int64_t> per(kClasses, 0);
  for (int64_t i : order) {
    if (per[labels[i]] < kPerClass / 10) ++per[labels[i]], tr.push_back(i);
    else te.push_back(i);
  }
  g.train_idx = from_vector(tr);
  g.test_idx = from_vector(te);
  return g;
}

Tensor mean_aggregate(const Graph& g, const Tensor& h) {
  return index_add(zeros_like(h), 0, g.agg_dst, index_select(h, 0, g.agg_src)) * g.inv_deg;
}

struct Models : nn::Module {
  std::string variant;
  std::unique_ptr<nn::GATConv> conv1, conv2;
  std::unique_ptr<nn::GATv2Conv> v2a, v2b;
  nn::Linear base1{nn::LinearOptions(kFeatures, 64)}, base2{nn::LinearOptions(64, kClasses)};
  nn::Dropout drop{0.5};
  explicit Models(const std::string& v) : variant(v) {
    if (variant == "gatv2") {
      v2a = std::make_unique<nn::GATv2Conv>(nn::GATv2ConvOptions(kFeatures, 8).heads(8).dropout(0.6));
      v2b = std::make_unique<nn::GATv2Conv>(nn::GATv2ConvOptions(64, kClasses).heads(1).concat(false).dropout(0.6));
      register_module("conv1", *v2a);
      register_module("conv2", *v2b);
    } else {
      conv1 = std::make_unique<nn::GATConv>(nn::GATConvOptions(kFeatures, 8).heads(8).dropout(0.6));
      conv2 = std::make_unique<nn::GATConv>(nn::GATConvOptions(64, kClasses).heads(1).concat(false).dropout(0.6));
      register_module("conv1", *conv1);
      register_module("conv2", *conv2);
    }
    register_module("base1", base1);
    register_module("base2", base2);
    register_module("drop", drop);
  }
  Tensor gat(const Graph& g) const {
    if (v2a) return v2b->forward(drop.forward(F::elu(v2a->forward(drop.forward(g.x), g.edge_index))), g.edge_index);
    Tensor h = F::elu(conv1->forward(drop.forward(g.x), g.edge_index));
    return conv2->forward(drop.forward(h), g.edge_index);
  }
  Tensor baseline(const Graph& g) const {
    Tensor h = relu(base1.forward(mean_aggregate(g, drop.forward(g.x))));
    return base2.forward(mean_aggregate(g, drop.forward(h)));
  }
};

const Defaults kDefaults{500, 0, 5e-3};

double accuracy(const Tensor& logits, const Graph& g) {
  Tensor pred = index_select(argmax(logits, 1), 0, g.test_idx);
  return eq(pred, index_select(g.labels, 0, g.test_idx)).to(kFloat64).mean().item<double>();
}

// The graph of a seed, built once.
const Graph& graph(uint64_t seed) {
  static std::map<uint64_t, Graph> graphs;
  auto it = graphs.find(seed);
  if (it == graphs.end()) it = graphs.emplace(seed, make_graph(seed)).first;
  return it->second;
}

AppResult evaluate(const Models& m, const AppOptions& o) {
  NoGradGuard ng;
  const Graph& g = graph(o.seed);
  AppResult r;
  r.value = accuracy(m.gat(g), g);
  r.chance = accuracy(m.baseline(g), g);
  r.baseline_name = "mean-aggregation baseline";
  return r;
}

}  // namespace

App gat_app() {
  Recipe<Models> r;
  r.name = "gat";
  r.summary = "node classification on a stochastic block model, GAT beside a mean-aggregation baseline";
  r.target = "GAT accuracy >= 75% (chance 20%) in under 30 s, shown beside the baseline";
  r.variants = {"gatconv", "gatv2"};
  r.defaults = kDefaults;
  // Both models in one loop (one optimizer over both: their parameters are disjoint).
  r.loss = [](Models& m, std::mt19937_64&, const AppOptions& o) {
    const Graph& g = graph(o.seed);
    auto loss = [&](const Tensor& logits) {
      return F::cross_entropy(index_select(logits, 0, g.train_idx), index_select(g.labels, 0, g.train_idx));
    };
    return loss(m.gat(g)) + loss(m.baseline(g));
  };
  r.evaluate = evaluate;
  r.held_out = [](const AppOptions& o) {
    const Graph& g = graph(o.seed);
    return std::to_string(g.test_idx.numel()) + " unlabelled nodes of " + std::to_string(kNodes) + " (" +
           std::to_string(g.edge_index.size(1)) + " edges)";
  };
  r.clip = 0;
  return make_app(r);
}

}  // namespace attn::apps
