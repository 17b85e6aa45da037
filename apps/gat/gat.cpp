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
#include <cmath>
#include <map>
#include <cstdio>
#include <random>
#include <set>

#include "common/app.h"
#include "common/png.h"

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
  App a = make_app(r);
  // viz: unlabelled node o.index (of the test nodes) and its neighbours, each
  // edge drawn by its first-layer attention coefficient (heads averaged),
  // nodes coloured by class.
  a.viz = [](const AppOptions& in, const std::string& out) {
    AppOptions probe = in;
    if (probe.checkpoint.empty()) probe.checkpoint = "runs/gat.safetensors";
    const io::Metadata meta = checkpoint_metadata(probe, "gat");
    const std::string v = meta.count("variant") ? meta.at("variant") : "gatconv";
    const AppOptions o = with_defaults(in, "gat", kDefaults);
    Models m(v);
    load_app(m, o, "gat");
    NoGradGuard ng;
    const Graph& g = graph(o.seed);
    ATTN_CHECK(o.index >= 0 && o.index < g.test_idx.numel(), "gat: viz --index ", o.index, " is not one of the ",
               g.test_idx.numel(), " unlabelled nodes");
    const int64_t node = g.test_idx.contiguous().data<int64_t>()[o.index];
    auto [outputs, att] = m.v2a ? m.v2a->forward_with_attention(g.x, g.edge_index)
                                : m.conv1->forward_with_attention(g.x, g.edge_index);
    (void)outputs;
    const Tensor edges = std::get<0>(att).contiguous(), alpha = std::get<1>(att).mean({1}).contiguous();
    const int64_t E = edges.size(1);
    const int64_t* src = edges.data<int64_t>();
    const int64_t* dst = src + E;
    std::vector<std::pair<int64_t, float>> nb;  // (source, coefficient) of the edges into the node
    for (int64_t e = 0; e < E; ++e)
      if (dst[e] == node) nb.emplace_back(src[e], alpha.data<float>()[e]);
    std::sort(nb.begin(), nb.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    const int64_t pred = argmax(m.gat(g).select(0, node), 0).item<int64_t>();
    const int64_t* labels = g.labels.contiguous().data<int64_t>();
    const uint8_t palette[kClasses][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}};
    const int64_t W = 620, H = 520, cx = 260, cy = 280, radius = 190;
    Image img(W, H);
    draw_text(img, 8, 6, "gat (" + v + "): node " + std::to_string(node) + ", class " + std::to_string(labels[node]) +
                             ", predicted " + std::to_string(pred) + ", " + std::to_string(nb.size()) +
                             " incoming edges (self-loop included)");
    draw_text(img, 8, 20, "edges: first-layer attention (heads averaged), darker and thicker = more");
    float top = 0;
    for (const auto& [s, w] : nb) top = std::max(top, w);
    auto disc = [&](double x, double y, int64_t r, const uint8_t c[3]) {
      for (int64_t dy = -r; dy <= r; ++dy)
        for (int64_t dx = -r; dx <= r; ++dx)
          if (dx * dx + dy * dy <= r * r) img.set(static_cast<int64_t>(x) + dx, static_cast<int64_t>(y) + dy, c[0], c[1], c[2]);
    };
    const size_t n = nb.size();
    for (size_t i = 0; i < n; ++i) {
      const double ang = 2 * 3.14159265358979 * static_cast<double>(i) / static_cast<double>(std::max<size_t>(n, 1));
      const double x = cx + radius * std::cos(ang), y = cy + radius * std::sin(ang);
      uint8_t c[3];
      scale_colour(top > 0 ? nb[i].second / top : 0, c[0], c[1], c[2]);
      if (nb[i].first != node) draw_line(img, x, y, cx, cy, c, 1 + static_cast<int64_t>(4 * nb[i].second / std::max(top, 1e-9f)));
      disc(x, y, 9, palette[labels[nb[i].first]]);
      char text[48];
      std::snprintf(text, sizeof text, "%lld: %.2f", static_cast<long long>(nb[i].first), nb[i].second);
      draw_text(img, static_cast<int64_t>(x) - 20, static_cast<int64_t>(y) + 12, nb[i].first == node ? std::string(text) + " (self)" : text);
    }
    disc(cx, cy, 14, palette[labels[node]]);
    for (int64_t k = 0; k < kClasses; ++k) {
      disc(W - 90, 60 + k * 18, 6, palette[k]);
      draw_text(img, W - 78, 57 + k * 18, "class " + std::to_string(k));
    }
    colour_scale(img, W - 90, 170, 200, top);
    const std::string path = out + ".png";
    write_png(path, img);
    return "wrote " + path;
  };
  return a;
}

}  // namespace attn::apps
