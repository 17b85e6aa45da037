#include "common/app.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/progress.h"

namespace attn::apps {

AppOptions with_defaults(const AppOptions& o, const std::string& name, const Defaults& d) {
  AppOptions r = o;
  if (r.steps <= 0) r.steps = d.steps;
  if (r.batch <= 0) r.batch = d.batch;
  if (r.lr <= 0) r.lr = d.lr;
  if (r.checkpoint.empty()) r.checkpoint = "runs/" + name + ".safetensors";
  return r;
}

void prepare_checkpoint_path(const std::string& path, const std::string& name) {
  namespace fs = std::filesystem;
  ATTN_CHECK(!path.empty(), name, ": the checkpoint path is empty");
  std::error_code ec;
  ATTN_CHECK(!fs::is_directory(path, ec), name, ": the checkpoint path ", path, " is a directory");
  const fs::path dir = fs::path(path).parent_path();
  if (!dir.empty()) {
    fs::create_directories(dir, ec);
    ATTN_CHECK(!ec, name, ": cannot create the checkpoint's folder ", dir.string(), ": ", ec.message());
  }
  const std::string probe = path + ".probe" + std::to_string(::getpid());
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  ATTN_CHECK(f != nullptr, name, ": cannot write a checkpoint at ", path, ": ", std::strerror(errno));
  std::fclose(f);
  fs::remove(probe, ec);
}

JsonLog::JsonLog(const std::string& path, const std::string& name) {
  if (path.empty()) return;
  f_ = std::fopen(path.c_str(), "w");
  ATTN_CHECK(f_ != nullptr, name, ": cannot write the log ", path, ": ", std::strerror(errno));
}

JsonLog::~JsonLog() {
  if (f_) std::fclose(f_);
}

void JsonLog::line(int64_t step, double loss, double lr, double elapsed, double examples_per_s,
                   const std::string& metric, double value) {
  std::fprintf(f_, "{\"step\": %lld, \"loss\": %.6g, \"lr\": %.6g, \"elapsed_s\": %.3f, \"examples_per_s\": %.1f",
               static_cast<long long>(step), loss, lr, elapsed, examples_per_s);
  if (!metric.empty()) std::fprintf(f_, ", \"%s\": %.6g", metric.c_str(), value);
  std::fprintf(f_, "}\n");
  std::fflush(f_);
}

double train_loop(nn::Module& model, const AppOptions& o, const std::string& name,
                  const std::function<Tensor(int64_t)>& loss_fn, io::Metadata meta, double clip,
                  const TrainHooks& hooks) {
  prepare_checkpoint_path(o.checkpoint, name);
  JsonLog log(o.log_json, name);
  const int64_t per_step = hooks.examples_per_step > 0 ? hooks.examples_per_step : o.batch;
  const int64_t log_every = std::max<int64_t>(1, o.steps / 200);
  const int64_t metric_every = hooks.metric_every > 0 ? hooks.metric_every : std::max<int64_t>(1, o.steps / 10);
  double loss_sum = 0;
  int64_t loss_n = 0;
  model.train();
  optim::AdamW opt(model.parameters(), optim::AdamWOptions(o.lr).weight_decay(0.01));
  const int64_t warm = std::max<int64_t>(1, o.steps / 10);
  std::vector<std::unique_ptr<optim::LRScheduler>> parts;
  parts.push_back(std::make_unique<optim::LinearLR>(opt, 0.05, 1.0, warm));
  parts.push_back(std::make_unique<optim::CosineAnnealingLR>(opt, std::max<int64_t>(1, o.steps - warm), o.lr * 0.02));
  optim::SequentialLR sched(opt, std::move(parts), {warm});
  Progress progress("train " + name, o.steps, "examples");
  for (int64_t step = 1; step <= o.steps; ++step) {
    Tensor loss = loss_fn(step);
    const double lr = opt.lr();
    opt.zero_grad();
    loss.backward();
    if (clip > 0) optim::clip_grad_norm_(model.parameters(), clip);
    opt.step();
    sched.step();
    const float value = loss.item<float>();
    if (!o.quiet) progress.update(step, value, per_step);
    loss_sum += value;
    ++loss_n;
    const bool with_metric = hooks.metric && log.on() && (step % metric_every == 0 || step == o.steps);
    if (log.on() && (step % log_every == 0 || step == o.steps || with_metric)) {
      const double elapsed = progress.seconds();
      const double metric = with_metric ? hooks.metric() : 0.0;
      log.line(step, loss_sum / static_cast<double>(loss_n), lr, elapsed,
               elapsed > 0 ? static_cast<double>(step * per_step) / elapsed : 0.0,
               with_metric ? hooks.metric_name : std::string(), metric);
      loss_sum = 0;
      loss_n = 0;
    }
  }
  progress.finish();
  const double seconds = progress.seconds();
  meta["app"] = name;
  optim::save_checkpoint(o.checkpoint, model, &opt, o.steps, nullptr, meta);
  model.eval();
  return seconds;
}

io::Metadata checkpoint_metadata(const AppOptions& o, const std::string& name) {
  ATTN_CHECK(std::filesystem::exists(o.checkpoint), name, ": no checkpoint at ", o.checkpoint, " (run `attn train ",
             name, "` first)");
  io::Metadata meta = io::read_safetensors(o.checkpoint).metadata;
  ATTN_CHECK(meta.count("app") && meta.at("app") == name, name, ": ", o.checkpoint, " is a checkpoint of ",
             meta.count("app") ? meta.at("app") : std::string("no application"), ", not of ", name);
  return meta;
}

io::Metadata load_app(nn::Module& model, const AppOptions& o, const std::string& name) {
  checkpoint_metadata(o, name);  // the app name says what it is; the model's own keys whether it fits
  io::Metadata meta = optim::load_checkpoint(o.checkpoint, model);
  model.eval();
  return meta;
}

Tensor image_input(const std::string& path, int64_t channels, int64_t size) {
  Tensor img = io::read_image(path);  // (3, H, W) float32 in [0, 1]
  if (channels == 1) img = img.mean({0}, true);
  return F::adaptive_avg_pool2d(img.unsqueeze(0), Pair2(size, size));
}

void report(const AppOptions& o, const std::string& name, const AppResult& r, const std::string& what) {
  if (o.quiet) return;
  const double k = r.percent ? 100 : 1;
  const char* unit = r.percent ? "%" : "";
  std::printf("%s: %s %.*f%s (%s %.*f%s) on %s", name.c_str(), r.metric.c_str(), r.percent ? 1 : 3, k * r.value, unit,
              r.baseline_name.empty() ? "chance" : r.baseline_name.c_str(), r.percent ? 1 : 3, k * r.chance, unit,
              what.c_str());
  if (r.seconds > 0) std::printf("; trained in %.1f s, checkpoint %s", r.seconds, o.checkpoint.c_str());
  std::printf("\n");
}

}  // namespace attn::apps
