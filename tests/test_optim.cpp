// Optimizers, clipping, schedules, checkpoints and batching: torch.optim
// parity over 20 steps (cases from parity/gen_optim.py), resuming from a
// checkpoint reproduces an uninterrupted run bit for bit, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include <attn/attn.h>

#include "support/module_check.h"

namespace attn {
namespace {

using json = nlohmann::json;
using testing::expect_error;

struct Case {
  std::string key;
  json cfg;
  std::map<std::string, Tensor> t;
};

// A case's tensor name as the generator writes it: "g3.1" (step 3, parameter 1),
// "lr3". Built by appending, which also keeps g++ 12's -Wrestrict quiet.
std::string tensor_name(const char* prefix, int step, int param = -1) {
  std::string s = prefix;
  s += std::to_string(step);
  if (param >= 0) {
    s += '.';
    s += std::to_string(param);
  }
  return s;
}

std::vector<Case> load_cases() {
  const char* path = std::getenv("ATTN_PARITY_OPTIM_FILE");
  if (!path) return {};
  io::SafetensorsFile f = io::read_safetensors(path);
  std::map<std::string, Case> cases;
  for (auto& [k, meta] : f.metadata) cases[k].key = k, cases[k].cfg = json::parse(meta);
  for (auto& [name, t] : f.tensors) {
    const auto dot = name.find('.');
    cases.at(name.substr(0, dot)).t[name.substr(dot + 1)] = t;
  }
  std::vector<Case> out;
  for (auto& [k, c] : cases) out.push_back(std::move(c));
  return out;
}

std::unique_ptr<optim::Optimizer> make_optimizer(const json& cfg, std::vector<Tensor> params) {
  const json& o = cfg["options"];
  const std::string kind = cfg["kind"];
  if (kind == "SGD")
    return std::make_unique<optim::SGD>(params, optim::SGDOptions(o["lr"])
                                                    .momentum(o["momentum"])
                                                    .dampening(o["dampening"])
                                                    .nesterov(o["nesterov"])
                                                    .weight_decay(o["weight_decay"])
                                                    .maximize(o["maximize"]));
  optim::AdamOptions a(o["lr"]);
  a.beta1(o["betas"][0]).beta2(o["betas"][1]).eps(o["eps"]).weight_decay(o["weight_decay"]);
  a.amsgrad(o["amsgrad"]).maximize(o["maximize"]);
  if (kind == "Adam") return std::make_unique<optim::Adam>(params, a);
  return std::make_unique<optim::AdamW>(params, a);
}

std::unique_ptr<optim::LRScheduler> make_schedule(const json& s, optim::Optimizer& opt) {
  if (s.is_null()) return nullptr;
  const std::string kind = s["kind"];
  if (kind == "step") return std::make_unique<optim::StepLR>(opt, s["step_size"], s["gamma"]);
  if (kind == "linear") return std::make_unique<optim::LinearLR>(opt, s["start"], s["end"], s["total"]);
  if (kind == "cosine") return std::make_unique<optim::CosineAnnealingLR>(opt, s["T_max"], s["eta_min"]);
  std::vector<std::unique_ptr<optim::LRScheduler>> parts;
  parts.push_back(std::make_unique<optim::LinearLR>(opt, s["start"], 1.0, s["warmup"]));
  parts.push_back(std::make_unique<optim::CosineAnnealingLR>(opt, s["T_max"], s["eta_min"]));
  return std::make_unique<optim::SequentialLR>(opt, std::move(parts), std::vector<int64_t>{s["warmup"]});
}

// |got - want| <= atol + rtol |want| everywhere.
::testing::AssertionResult close(const Tensor& got, const Tensor& want, double rtol, double atol) {
  Tensor g = got.to(kFloat64), w = want.to(kFloat64);
  if (g.shape() != w.shape()) return ::testing::AssertionFailure() << "shape " << shape_str(g.shape());
  const double excess = amax((abs(g - w) - abs(w) * rtol).reshape({-1}), {0}).item<double>();
  if (excess <= atol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "off by " << excess << " beyond rtol " << rtol << " (atol " << atol << ")";
}

TEST(OptimParity, TorchOptimOver20Steps) {
  std::vector<Case> cases = load_cases();
  if (!std::getenv("ATTN_PARITY_OPTIM_FILE")) GTEST_SKIP() << "ATTN_PARITY_OPTIM_FILE is not set (ctest sets it)";
  ASSERT_FALSE(cases.empty()) << "the parity file holds no cases";
  std::set<std::string> kinds;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key + " " + c.cfg.dump());
    const bool f64 = c.cfg["dtype"] == "float64";
    const double rtol = f64 ? 1e-11 : 2e-5, atol = f64 ? 1e-13 : 2e-6;
    std::vector<Tensor> params;
    for (int i = 0; i < 3; ++i) params.push_back(c.t.at(tensor_name("p", 0, i)).clone().requires_grad_(true));
    auto opt = make_optimizer(c.cfg, params);
    auto sched = make_schedule(c.cfg["schedule"], *opt);
    const int steps = c.cfg["steps"];
    for (int t = 0; t < steps; ++t) {
      for (int i = 0; i < 3; ++i) {
        auto it = c.t.find(tensor_name("g", t, i));
        params[i].set_grad(it == c.t.end() ? Tensor() : it->second.clone());
      }
      if (!c.cfg["clip"].is_null()) {
        const json& nt = c.cfg["clip"]["norm_type"];
        const double n = optim::clip_grad_norm_(params, c.cfg["clip"]["max_norm"],
                                                nt.is_string() ? INFINITY : nt.get<double>());
        const double want = c.t.at(tensor_name("norm", t)).item<double>();
        EXPECT_NEAR(n, want, (f64 ? 1e-12 : 1e-5) * std::abs(want)) << "step " << t;
      }
      opt->step();
      if (sched) sched->step();
      EXPECT_NEAR(opt->lr(), c.t.at(tensor_name("lr", t)).item<double>(), 1e-12 * opt->lr() + 1e-15) << "step " << t;
      for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(close(params[i], c.t.at(tensor_name("p", t + 1, i)), rtol, atol))
            << "parameter " << i << " after step " << t;
    }
    // The final state, under PyTorch's names.
    io::TensorMap st = opt->state_dict();
    for (const auto& [name, want] : c.t) {
      if (name.rfind("state.", 0) != 0) continue;
      ASSERT_TRUE(st.count(name)) << name;
      if (want.dtype() == kInt64)
        EXPECT_EQ(st.at(name).item<int64_t>(), want.item<int64_t>()) << name;
      else
        EXPECT_TRUE(close(st.at(name), want, rtol, atol)) << name;
    }
    std::string kind = c.cfg["kind"];
    kinds.insert(kind + (c.cfg["schedule"].is_null() ? "" : "+" + std::string(c.cfg["schedule"]["kind"])));
  }
  std::printf("optimizer parity: %zu cases, %zu optimizer x schedule kinds\n", cases.size(), kinds.size());
  EXPECT_GE(kinds.size(), 12u);
}

// A tiny model and a loss on fixed data, for the training tests.
struct Tiny : nn::Module {
  nn::Linear a{nn::LinearOptions(4, 8)}, b{nn::LinearOptions(8, 1)};
  nn::Dropout drop{0.3};
  Tiny() {
    register_module("a", a);
    register_module("drop", drop);
    register_module("b", b);
  }
  Tensor forward(const Tensor& x) const { return b.forward(drop.forward(tanh(a.forward(x)))); }
};

// Trains `steps` steps from wherever model, optimizer, schedule and
// generator are; batches drawn from the generator.
void train(Tiny& m, optim::Optimizer& opt, optim::LRScheduler& sched, Generator& gen, const Tensor& X, const Tensor& Y,
           int64_t from, int64_t to) {
  for (int64_t s = from; s < to; ++s) {
    auto batches = data::batch_indices(X.size(0), 8, /*shuffle=*/true, &gen);
    Tensor idx = from_vector(batches[0]);
    m.drop.options.generator(&gen);
    Tensor loss = F::mse_loss(m.forward(index_select(X, 0, idx)), index_select(Y, 0, idx));
    opt.zero_grad();
    loss.backward();
    optim::clip_grad_norm_(m.parameters(), 1.0);
    opt.step();
    sched.step();
  }
}

TEST(Checkpoint, ResumeReproducesAnUninterruptedRun) {
  Generator data(3);
  Tensor X = randn({40, 4}, {}, &data), Y = sum(X, {1}, true);
  const std::string path = (std::filesystem::temp_directory_path() / "attn_test_ckpt.safetensors").string();
  // Uninterrupted: 30 steps.
  manual_seed(11);
  Tiny full;
  optim::AdamW fo(full.parameters(), optim::AdamWOptions(1e-2).amsgrad(true));
  optim::CosineAnnealingLR fs(fo, 30);
  Generator fg(5);
  train(full, fo, fs, fg, X, Y, 0, 30);
  // Interrupted at 12: checkpoint, then a fresh process state resumes.
  manual_seed(11);
  Tiny first;
  optim::AdamW o1(first.parameters(), optim::AdamWOptions(1e-2).amsgrad(true));
  optim::CosineAnnealingLR s1(o1, 30);
  Generator g1(5);
  train(first, o1, s1, g1, X, Y, 0, 12);
  optim::save_checkpoint(path, first, &o1, 12, &g1, {{"note", "test"}});
  manual_seed(999);  // different initial weights: the checkpoint must replace them
  Tiny second;
  optim::AdamW o2(second.parameters(), optim::AdamWOptions(5.0).amsgrad(true));
  optim::CosineAnnealingLR s2(o2, 30);
  Generator g2(77);
  io::Metadata meta = optim::load_checkpoint(path, second, &o2, &g2);
  EXPECT_EQ(meta.at("step"), "12");
  EXPECT_EQ(meta.at("note"), "test");
  s2.set_epoch(std::stoll(meta.at("step")));
  train(second, o2, s2, g2, X, Y, 12, 30);
  for (const auto& [name, p] : full.named_parameters())
    EXPECT_TRUE(equal(p, second.state_dict().at(name))) << name << " differs after resuming";
  EXPECT_EQ(o2.lr(), fo.lr());
  // A checkpoint that does not fit changes nothing: not the model, and not
  // the optimizer when its part fits but the model's does not.
  nn::Linear other(nn::LinearOptions(3, 3));
  Tensor before = other.weight.clone();
  expect_error([&] { optim::load_checkpoint(path, other); }, {"load_state_dict", "missing"});
  EXPECT_TRUE(equal(before, other.weight));
  Tiny third;
  optim::AdamW o3(third.parameters(), optim::AdamWOptions(0.5).amsgrad(true));
  expect_error([&] { optim::load_checkpoint(path, other, &o3); }, {"load_state_dict", "missing"});
  EXPECT_EQ(o3.lr(), 0.5);
  EXPECT_EQ(o3.state_dict().size(), 1u);  // "lr" only: never stepped
  optim::SGD so(other.parameters(), optim::SGDOptions(0.1));
  expect_error([&] { optim::load_checkpoint(path, second, &so); }, {"SGD::load_state_dict", "unexpected key"});
  std::filesystem::remove(path);
  expect_error([&] { optim::load_checkpoint(path, second); }, {path});
}

TEST(Optim, ClippingSchedulesAndData) {
  // clip_grad_norm_: the total 2-norm and the scaling.
  Tensor a = zeros({2}).requires_grad_(true), b = zeros({1}).requires_grad_(true);
  a.set_grad(from_vector(std::vector<float>{3, 0}));
  b.set_grad(from_vector(std::vector<float>{4}));
  EXPECT_DOUBLE_EQ(optim::clip_grad_norm_({a, b}, 1.0), 5.0);
  EXPECT_NEAR(b.grad().item<float>(), 4.0 / (5.0 + 1e-6), 1e-6);
  optim::clip_grad_value_({a}, 0.1);
  EXPECT_FLOAT_EQ(a.grad().select(0, 0).item<float>(), 0.1f);
  expect_error([&] { optim::clip_grad_norm_({a}, 1.0, -1.0); }, {"clip_grad_norm_", "norm_type"});
  a.set_grad(from_vector(std::vector<float>{NAN, 0}));
  expect_error([&] { optim::clip_grad_norm_({a}, 1.0, 2.0, true); }, {"clip_grad_norm_", "not finite"});
  // Schedules: closed forms at a few epochs.
  Tensor p = zeros({1}).requires_grad_(true);
  optim::SGD sgd({p}, optim::SGDOptions(1.0));
  optim::StepLR st(sgd, 3, 0.5);
  for (int i = 0; i < 7; ++i) st.step();
  EXPECT_DOUBLE_EQ(sgd.lr(), 0.25);
  optim::LambdaLR lam(sgd, [](int64_t e) { return 1.0 / (1.0 + e); });  // base: the initial lr, 1.0
  lam.step();
  EXPECT_DOUBLE_EQ(sgd.lr(), 0.5);
  // Batching: a shuffled epoch covers every index once; the same seed, the same batches.
  Generator g1(4), g2(4);
  auto b1 = data::batch_indices(10, 3, true, &g1), b2 = data::batch_indices(10, 3, true, &g2);
  EXPECT_EQ(b1, b2);
  ASSERT_EQ(b1.size(), 4u);
  std::set<int64_t> seen;
  for (auto& bt : b1) seen.insert(bt.begin(), bt.end());
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(data::batch_indices(10, 3, false, nullptr, true).size(), 3u);
  EXPECT_EQ(data::batch_indices(10, 3, false)[3], std::vector<int64_t>{9});
  // pad_sequence: (L, B, *) by default, (B, L, *) batch first, differentiable.
  Tensor s1 = ones({2, 3}).requires_grad_(true), s2 = ones({4, 3});
  Tensor padded = data::pad_sequence({s1, s2}, true, -1.0);
  EXPECT_EQ(padded.shape(), (Shape{2, 4, 3}));
  EXPECT_FLOAT_EQ(padded.select(0, 0).select(0, 3).select(0, 0).item<float>(), -1.0f);
  EXPECT_EQ(data::pad_sequence({s1, s2}).shape(), (Shape{4, 2, 3}));
  padded.sum().backward();
  EXPECT_TRUE(equal(s1.grad(), ones({2, 3})));
  expect_error([&] { data::pad_sequence({s1, ones({2, 2})}); }, {"pad_sequence", "only the first dim"});
  expect_error([&] { data::batch_indices(5, 0, false); }, {"batch_indices", "batch_size"});
}

TEST(Optim, BadInput) {
  Tensor p = zeros({2}).requires_grad_(true);
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(-1)); }, {"SGD", "lr"});
  expect_error([&] { optim::SGD({p}, optim::SGDOptions(0.1).nesterov(true)); }, {"SGD", "nesterov"});
  expect_error([&] { optim::Adam({p}, optim::AdamOptions(0.1).beta1(1.0)); }, {"Adam", "betas"});
  expect_error([&] { optim::SGD({p, p}, optim::SGDOptions(0.1)); }, {"SGD", "parameter 1 is parameter 0"});
  expect_error([&] { optim::Adam({zeros({2})}, optim::AdamOptions()); }, {"Adam", "requires grad"});
  expect_error([&] { optim::AdamW({zeros({2}, kInt64)}, optim::AdamWOptions()); }, {"AdamW", "float32 or float64"});
  optim::Adam adam({p}, optim::AdamOptions());
  expect_error([&] { adam.load_state_dict({{"lr", full({}, 0.1, kFloat64)}, {"state.0.exp_avg", zeros({3})}}); },
               {"Adam::load_state_dict", "is (3) but parameter 0 is (2)"});
  expect_error([&] { adam.load_state_dict({{"lr", full({}, 0.1, kFloat64)}, {"state.5.step", zeros({}, kInt64)}}); },
               {"names parameter 5"});
  expect_error([&] { optim::StepLR(adam, 0); }, {"StepLR", "step_size"});
  std::vector<std::unique_ptr<optim::LRScheduler>> none;
  expect_error([&] { optim::SequentialLR(adam, std::move(none), {3}); }, {"SequentialLR", "milestone"});
  // zero_grad: undefined, or zeros with set_to_none = false.
  p.set_grad(ones({2}));
  adam.zero_grad(false);
  EXPECT_TRUE(equal(p.grad(), zeros({2})));
  adam.zero_grad();
  EXPECT_FALSE(p.grad().defined());
}

}  // namespace
}  // namespace attn
