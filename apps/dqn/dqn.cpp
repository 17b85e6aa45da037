// dqn: the seed's AttentionQNetwork (a Linear + ReLU state encoder, 4-head
// MultiheadAttention, a two-layer Q head) learning CartPole (the classic
// control dynamics of Barto, Sutton and Anderson as Gym writes them: Euler
// steps of 0.02 s, failure past 12 degrees or 2.4 m, at most 500 steps) by
// deep Q-learning with experience replay and a target network. The seed
// feeds one state vector to the attention (so it attends across the batch);
// here the network attends over the agent's last 4 observations, each a
// token, and reads the Q-values at the newest one.
#include <attn/attn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <random>

#include "common/app.h"
#include "common/png.h"
#include "common/progress.h"

namespace attn::apps {

namespace {

constexpr int64_t kObs = 4, kActions = 2, kHistory = 4, kHidden = 64, kMaxSteps = 500;

// CartPole-v1.
struct CartPole {
  double x = 0, x_dot = 0, theta = 0, theta_dot = 0;
  int64_t steps = 0;
  void reset(std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u(-0.05, 0.05);
    x = u(rng), x_dot = u(rng), theta = u(rng), theta_dot = u(rng);
    steps = 0;
  }
  // Returns whether the episode ended (failed or 500 steps).
  bool step(int64_t action, bool& failed) {
    const double g = 9.8, mc = 1.0, mp = 0.1, total = mc + mp, len = 0.5, pml = mp * len, tau = 0.02;
    const double force = action == 1 ? 10.0 : -10.0;
    const double c = std::cos(theta), s = std::sin(theta);
    const double temp = (force + pml * theta_dot * theta_dot * s) / total;
    const double theta_acc = (g * s - c * temp) / (len * (4.0 / 3.0 - mp * c * c / total));
    const double x_acc = temp - pml * theta_acc * c / total;
    x += tau * x_dot;
    x_dot += tau * x_acc;
    theta += tau * theta_dot;
    theta_dot += tau * theta_acc;
    ++steps;
    failed = std::abs(x) > 2.4 || std::abs(theta) > 12 * 2 * M_PI / 360;
    return failed || steps >= kMaxSteps;
  }
  std::array<float, kObs> obs() const {
    return {static_cast<float>(x), static_cast<float>(x_dot), static_cast<float>(theta), static_cast<float>(theta_dot)};
  }
};

// The last kHistory observations, oldest first (the first repeated at the start).
struct History {
  std::deque<std::array<float, kObs>> frames;
  void reset(const std::array<float, kObs>& o) { frames.assign(kHistory, o); }
  void push(const std::array<float, kObs>& o) {
    frames.pop_front();
    frames.push_back(o);
  }
  std::vector<float> flat() const {
    std::vector<float> v;
    for (const auto& f : frames) v.insert(v.end(), f.begin(), f.end());
    return v;
  }
};

struct AttentionQNetwork : nn::Module {
  nn::Sequential state_encoder;
  nn::MultiheadAttention attention{nn::MultiheadAttentionOptions(kHidden, 4).batch_first(true)};
  nn::Sequential q_value;
  AttentionQNetwork() {
    state_encoder.emplace_back<nn::Linear>(nn::LinearOptions(kObs, kHidden));
    state_encoder.emplace_back<nn::ReLU>();
    q_value.emplace_back<nn::Linear>(nn::LinearOptions(kHidden, kHidden));
    q_value.emplace_back<nn::ReLU>();
    q_value.emplace_back<nn::Linear>(nn::LinearOptions(kHidden, kActions));
    register_module("state_encoder", state_encoder);
    register_module("attention", attention);
    register_module("q_value", q_value);
  }
  // states (B, kHistory, kObs) -> Q (B, kActions)
  Tensor forward(const Tensor& states) const {
    Tensor e = state_encoder.forward(states);
    Tensor a = std::get<0>(attention.forward(e, e, e, {}, false));
    return q_value.forward(a.select(1, kHistory - 1));
  }
};

int64_t greedy_action(const AttentionQNetwork& q, const History& h) {
  NoGradGuard ng;
  Tensor s = from_vector(h.flat(), {1, kHistory, kObs});
  return argmax(q.forward(s), 1).item<int64_t>();
}

// Mean return of `episodes` greedy episodes.
double evaluate_policy(const AttentionQNetwork& q, uint64_t seed, int64_t episodes) {
  std::mt19937_64 rng(seed * 1000003 + 3);
  double total = 0;
  for (int64_t e = 0; e < episodes; ++e) {
    CartPole env;
    env.reset(rng);
    History h;
    h.reset(env.obs());
    bool failed = false;
    while (true) {
      const bool done = env.step(greedy_action(q, h), failed);
      h.push(env.obs());
      if (done) break;
    }
    total += static_cast<double>(env.steps);
  }
  return episodes ? total / static_cast<double>(episodes) : 0.0;
}

double random_policy_return(uint64_t seed, int64_t episodes) {
  std::mt19937_64 rng(seed * 7 + 1);
  double total = 0;
  for (int64_t e = 0; e < episodes; ++e) {
    CartPole env;
    env.reset(rng);
    bool failed = false;
    while (!env.step(static_cast<int64_t>(rng() % 2), failed)) {
    }
    total += static_cast<double>(env.steps);
  }
  return total / static_cast<double>(episodes);
}

struct Transition {
  std::vector<float> s, s2;
  int64_t a;
  float r;
  bool terminal;
};

const Defaults kDefaults{40000, 64, 1e-3};  // steps: environment steps
constexpr int64_t kEvalEpisodes = 20;

AppResult report_eval(const AttentionQNetwork& q, const AppOptions& o, double seconds) {
  AppResult r;
  r.metric = "average return";
  r.value = evaluate_policy(q, o.seed, kEvalEpisodes);
  r.chance = random_policy_return(o.seed, 100);
  r.baseline_name = "random policy";
  r.seconds = seconds;
  if (!o.quiet) {
    std::printf("dqn: average return %.1f of %lld (random policy %.1f) over %lld greedy episodes", r.value,
                static_cast<long long>(kMaxSteps), r.chance, static_cast<long long>(kEvalEpisodes));
    if (seconds > 0) std::printf("; trained in %.1f s, checkpoint %s", seconds, o.checkpoint.c_str());
    std::printf("\n");
  }
  return r;
}

AppResult train(const AppOptions& in) {
  AppOptions o = with_defaults(in, "dqn", kDefaults);
  prepare_checkpoint_path(o.checkpoint, "dqn");
  manual_seed(o.seed);
  std::mt19937_64 rng(o.seed);
  AttentionQNetwork q, target;
  target.load_state_dict(q.state_dict());
  optim::Adam opt(q.parameters(), optim::AdamOptions(o.lr));
  std::vector<Transition> replay;
  const size_t capacity = 20000;
  size_t next = 0;
  const int64_t learn_start = std::min<int64_t>(1000, o.steps / 5), sync_every = 500;
  const double eps_end = 0.05, eps_steps = 0.4 * static_cast<double>(o.steps);
  CartPole env;
  env.reset(rng);
  History h;
  h.reset(env.obs());
  Progress progress("train dqn", o.steps, "env steps");
  double last_loss = 0;
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> returns;
  for (int64_t t = 1; t <= o.steps; ++t) {
    const double eps = std::max(eps_end, 1.0 - (1.0 - eps_end) * static_cast<double>(t) / eps_steps);
    const int64_t a = u(rng) < eps ? static_cast<int64_t>(rng() % kActions) : greedy_action(q, h);
    std::vector<float> s = h.flat();
    bool failed = false;
    const bool done = env.step(a, failed);
    h.push(env.obs());
    Transition tr{s, h.flat(), a, 1.0f, failed};
    if (replay.size() < capacity) replay.push_back(std::move(tr));
    else replay[next] = std::move(tr);
    next = (next + 1) % capacity;
    if (done) {
      returns.push_back(static_cast<double>(env.steps));
      env.reset(rng);
      h.reset(env.obs());
    }
    if (t >= learn_start) {
      std::vector<float> sb, s2b, rb, nt;
      std::vector<int64_t> ab;
      for (int64_t i = 0; i < o.batch; ++i) {
        const Transition& x = replay[rng() % replay.size()];
        sb.insert(sb.end(), x.s.begin(), x.s.end());
        s2b.insert(s2b.end(), x.s2.begin(), x.s2.end());
        ab.push_back(x.a);
        rb.push_back(x.r);
        nt.push_back(x.terminal ? 0.0f : 1.0f);
      }
      const int64_t B = o.batch;
      Tensor target_q;
      {
        NoGradGuard ng;
        Tensor next_q = amax(target.forward(from_vector(s2b, {B, kHistory, kObs})), {1});
        target_q = from_vector(rb) + from_vector(nt) * next_q * 0.99;
      }
      Tensor qsa = gather(q.forward(from_vector(sb, {B, kHistory, kObs})), 1, from_vector(ab, {B, 1})).squeeze(1);
      Tensor loss = F::smooth_l1_loss(qsa, target_q);
      opt.zero_grad();
      loss.backward();
      optim::clip_grad_norm_(q.parameters(), 10.0);
      opt.step();
      last_loss = loss.item<float>();
    }
    if (t % sync_every == 0) target.load_state_dict(q.state_dict());
    if (!o.quiet) progress.update(t, last_loss, 1);
  }
  progress.finish();
  const double seconds = progress.seconds();
  optim::save_checkpoint(o.checkpoint, q, &opt, o.steps, nullptr, {{"app", "dqn"}, {"model", "AttentionQNetwork"}});
  if (!o.quiet && !returns.empty()) {
    const size_t n = std::min<size_t>(20, returns.size());
    double recent = 0;
    for (size_t i = returns.size() - n; i < returns.size(); ++i) recent += returns[i];
    std::printf("dqn: %zu training episodes; the last %zu (exploring) averaged %.1f\n", returns.size(), n,
                recent / static_cast<double>(n));
  }
  q.eval();
  return report_eval(q, o, seconds);
}

AppResult eval(const AppOptions& in) {
  AppOptions o = with_defaults(in, "dqn", kDefaults);
  AttentionQNetwork q;
  load_app(q, o, "dqn");
  return report_eval(q, o, 0);
}

// viz: one greedy episode (the evaluation's episode o.index): at each of its
// first 60 steps, the attention of the newest observation over the history
// (heads averaged), oldest first.
std::string viz(const AppOptions& in, const std::string& out) {
  const AppOptions o = with_defaults(in, "dqn", kDefaults);
  AttentionQNetwork q;
  load_app(q, o, "dqn");
  NoGradGuard ng;
  std::mt19937_64 rng(o.seed * 1000003 + 3);  // evaluate_policy's stream
  CartPole env;
  History h;
  for (int64_t e = 0; e <= o.index; ++e) {
    env = CartPole();
    env.reset(rng);
    h.reset(env.obs());
    if (e == o.index) break;
    bool failed = false;
    while (!env.step(greedy_action(q, h), failed)) h.push(env.obs());
  }
  constexpr int64_t kShown = 60;
  std::vector<Tensor> rows;
  std::vector<std::string> labels;
  bool failed = false;
  for (int64_t t = 0; t < kShown; ++t) {
    Tensor states = from_vector(h.flat(), {1, kHistory, kObs});
    Tensor e = q.state_encoder.forward(states);
    Tensor w = std::get<1>(q.attention.forward(e, e, e, {}, true));  // (1, H, H) over the history
    rows.push_back(w.select(0, 0).select(0, kHistory - 1));
    labels.push_back(t % 10 == 0 ? std::to_string(t) : "");
    const bool done = env.step(argmax(q.forward(states), 1).item<int64_t>(), failed);
    h.push(env.obs());
    if (done) break;
  }
  std::vector<std::string> cols;
  for (int64_t k = 0; k < kHistory; ++k) cols.push_back(k == kHistory - 1 ? "t" : "t-" + std::to_string(kHistory - 1 - k));
  const std::string path = out + ".png";
  write_png(path, heatmap(stack(rows, 0), labels, cols,
                          "dqn: attention of the newest observation over the history", 10, "history", "step"));
  return "wrote " + path + " (" + std::to_string(rows.size()) + " steps)";
}

}  // namespace

App dqn_app() {
  return {"dqn", "the seed's attention Q-network learning CartPole (DQN, replay, target network)",
          "average greedy return >= 195 of 500 (random policy ~22) in under 2 minutes", {"seed"}, train, eval, viz};
}

}  // namespace attn::apps
