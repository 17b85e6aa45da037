// What the applications share: options, results, the registry behind
// `attn train|eval NAME`, and one training loop (AdamW, linear warm-up then
// cosine, gradient clipping, the progress line, an atomic checkpoint).
#pragma once

#include <attn/attn.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace attn::apps {

struct AppOptions {
  int64_t steps = 0;          // 0: the application's default
  int64_t batch = 0;          // 0: the application's default
  double lr = 0;              // 0: the application's default
  uint64_t seed = 1;
  int64_t eval_examples = 500;
  int64_t show = 5;           // examples printed
  int64_t beam = 1;           // decoding applications: beam width (1: greedy)
  std::string checkpoint;     // empty: runs/<name>.safetensors
  std::string variant;        // the application's model variant (empty: its default)
  bool quiet = false;         // nothing printed (tests)
};

struct AppResult {
  std::string metric = "accuracy";  // what `value` measures, on held-out data
  double value = 0;
  double chance = 0;                // the same metric for guessing (or a baseline)
  std::string baseline_name;        // when `chance` is a trained baseline instead
  bool percent = true;              // value and chance are fractions (printed as %)
  double bleu = -1;                 // decoding applications: corpus BLEU (0..100), else -1
  double seconds = 0;               // training time
};

struct App {
  std::string name, summary, target;  // target: the quality the README promises
  std::vector<std::string> variants;  // allowed --variant values (first: default)
  std::function<AppResult(const AppOptions&)> train, eval;
};

const std::vector<App>& registry();
const App& find_app(const std::string& name);

// The defaults of an application merged with the user's options.
struct Defaults {
  int64_t steps, batch;
  double lr;
};
AppOptions with_defaults(const AppOptions& o, const std::string& name, const Defaults& d);

// Trains `model` for o.steps steps: loss(step) builds a batch and returns the
// mean loss; AdamW (weight decay 0.01) at o.lr with a tenth of the steps of
// linear warm-up and a cosine to 2% of o.lr, gradients clipped to norm
// `clip`; then saves the checkpoint with `meta` (and "app"). Returns seconds.
double train_loop(nn::Module& model, const AppOptions& o, const std::string& name,
                  const std::function<Tensor(int64_t)>& loss, io::Metadata meta, double clip = 1.0);

// Loads a checkpoint written by train_loop for application `name` into model
// (eval mode); returns its metadata.
io::Metadata load_app(nn::Module& model, const AppOptions& o, const std::string& name);

// One summary line: "<name>: <metric> 97.3% (chance 25.0%) on 500 held-out ...".
void report(const AppOptions& o, const std::string& name, const AppResult& r, const std::string& what);

}  // namespace attn::apps
