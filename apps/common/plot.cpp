// attn plot: training curves from --log-json files (see plot.h).
#include "common/plot.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "attn/error.h"
#include "common/png.h"

namespace attn::apps {

namespace {

struct Series {
  std::string label, metric;
  std::vector<double> step, loss, mstep, mvalue;
};

Series read_log(const std::string& path) {
  std::ifstream in(path);
  ATTN_CHECK(in.good(), "plot: cannot read ", path);
  Series s;
  s.label = std::filesystem::path(path).stem().string();
  std::string line;
  int64_t no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ATTN_CHECK(!j.is_discarded() && j.is_object(), "plot: ", path, " line ", no, " is not a JSON object");
    ATTN_CHECK(j.contains("step") && j["step"].is_number() && j.contains("loss") && j["loss"].is_number(), "plot: ",
               path, " line ", no, " has no numeric \"step\" and \"loss\" (a --log-json file is expected)");
    const double step = j["step"].get<double>(), loss = j["loss"].get<double>();
    if (std::isfinite(loss)) {
      s.step.push_back(step);
      s.loss.push_back(loss);
    }
    for (auto& [k, v] : j.items()) {
      if (k == "step" || k == "loss" || k == "lr" || k == "elapsed_s" || k == "examples_per_s" || !v.is_number())
        continue;
      if (s.metric.empty()) s.metric = k;
      if (k == s.metric) {
        s.mstep.push_back(step);
        s.mvalue.push_back(v.get<double>());
      }
    }
  }
  ATTN_CHECK(!s.step.empty(), "plot: ", path, " has no logged steps");
  return s;
}

const uint8_t kPalette[][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189},
                               {140, 86, 75}};

void line(Image& img, double x0, double y0, double x1, double y1, const uint8_t c[3]) {
  draw_line(img, x0, y0, x1, y1, c, 2);
}

std::string number(double v) {
  char buf[32];
  const double a = std::abs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e5)) std::snprintf(buf, sizeof buf, "%.0e", v);
  else if (a >= 100 || v == std::floor(v)) std::snprintf(buf, sizeof buf, "%.0f", v);
  else std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// One panel: axes, ticks with values, axis labels and the curves.
struct Panel {
  int64_t left, top, width, height;
  double x0, x1, y0, y1;
  bool log_y;
  double ty(double v) const { return log_y ? std::log10(std::max(v, 1e-12)) : v; }
  double px(double x) const { return left + (x - x0) / (x1 - x0) * static_cast<double>(width); }
  double py(double y) const { return top + height - (ty(y) - ty(y0)) / (ty(y1) - ty(y0)) * static_cast<double>(height); }
};

void draw_axes(Image& img, const Panel& p, const std::string& xlabel, const std::string& ylabel) {
  const uint8_t black[3] = {0, 0, 0}, grid[3] = {225, 225, 225};
  for (int k = 0; k <= 4; ++k) {
    const double fx = p.x0 + (p.x1 - p.x0) * k / 4.0;
    const double fy = p.log_y ? std::pow(10.0, p.ty(p.y0) + (p.ty(p.y1) - p.ty(p.y0)) * k / 4.0)
                              : p.y0 + (p.y1 - p.y0) * k / 4.0;
    line(img, p.px(fx), p.top, p.px(fx), p.top + p.height, grid);
    line(img, p.left, p.py(fy), p.left + p.width, p.py(fy), grid);
    const std::string xs = number(fx), ys = number(fy);
    draw_text(img, static_cast<int64_t>(p.px(fx)) - static_cast<int64_t>(xs.size()) * 3, p.top + p.height + 6, xs);
    draw_text(img, p.left - 6 - static_cast<int64_t>(ys.size()) * 6, static_cast<int64_t>(p.py(fy)) - 3, ys);
  }
  line(img, p.left, p.top + p.height, p.left + p.width, p.top + p.height, black);
  line(img, p.left, p.top, p.left, p.top + p.height, black);
  draw_text(img, p.left + p.width / 2 - static_cast<int64_t>(xlabel.size()) * 3, p.top + p.height + 20, xlabel);
  draw_text(img, p.left, p.top - 12, ylabel);
}

void draw_series(Image& img, const Panel& p, const std::vector<double>& x, const std::vector<double>& y,
                 const uint8_t c[3]) {
  for (size_t i = 1; i < x.size(); ++i) line(img, p.px(x[i - 1]), p.py(y[i - 1]), p.px(x[i]), p.py(y[i]), c);
  if (x.size() == 1) line(img, p.px(x[0]) - 2, p.py(y[0]), p.px(x[0]) + 2, p.py(y[0]), c);
}

void bounds(const std::vector<Series>& all, bool metric, double& x0, double& x1, double& y0, double& y1) {
  x0 = y0 = std::numeric_limits<double>::infinity();
  x1 = y1 = -std::numeric_limits<double>::infinity();
  for (const Series& s : all) {
    const auto& xs = metric ? s.mstep : s.step;
    const auto& ys = metric ? s.mvalue : s.loss;
    for (size_t i = 0; i < xs.size(); ++i) {
      x0 = std::min(x0, xs[i]);
      x1 = std::max(x1, xs[i]);
      y0 = std::min(y0, ys[i]);
      y1 = std::max(y1, ys[i]);
    }
  }
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + (y0 == 0 ? 1 : std::abs(y0) * 0.1);
  if (!metric) y0 = std::min(y0, 0.0);
}

}  // namespace

std::string plot_logs(const std::vector<std::string>& files, const PlotOptions& o) {
  ATTN_CHECK(!files.empty(), "plot: no log files given");
  std::vector<Series> all;
  for (const auto& f : files) all.push_back(read_log(f));
  const bool with_metric = std::any_of(all.begin(), all.end(), [](const Series& s) { return !s.mvalue.empty(); });
  const int64_t pw = 380, ph = 260, W = with_metric ? 2 * pw + 220 : pw + 150, H = ph + 120 + 12 * static_cast<int64_t>(all.size());
  Image img(W, H);
  draw_text(img, 10, 8, o.title.empty() ? std::string("training loss") : o.title, 2);
  Panel lp{70, 50, pw, ph, 0, 0, 0, 0, o.log_loss};
  bounds(all, false, lp.x0, lp.x1, lp.y0, lp.y1);
  if (o.log_loss) {
    double lo = std::numeric_limits<double>::infinity();
    for (const Series& s : all)
      for (double v : s.loss)
        if (v > 0) lo = std::min(lo, v);
    lp.y0 = std::isfinite(lo) ? lo : 1e-3;
  }
  draw_axes(img, lp, "STEP", o.log_loss ? "LOSS (LOG SCALE)" : "LOSS");
  std::string metric_name;
  Panel mp{lp.left + pw + 110, 50, pw, ph, 0, 0, 0, 0, false};
  if (with_metric) {
    for (const Series& s : all)
      if (!s.metric.empty()) metric_name = s.metric;
    bounds(all, true, mp.x0, mp.x1, mp.y0, mp.y1);
    draw_axes(img, mp, "STEP", metric_name);
  }
  for (size_t i = 0; i < all.size(); ++i) {
    const uint8_t* c = kPalette[i % (sizeof kPalette / sizeof kPalette[0])];
    draw_series(img, lp, all[i].step, all[i].loss, c);
    if (with_metric) draw_series(img, mp, all[i].mstep, all[i].mvalue, c);
    // the legend, under the panels
    const int64_t ly = lp.top + ph + 40 + 12 * static_cast<int64_t>(i);
    line(img, lp.left, ly + 3, lp.left + 20, ly + 3, c);
    std::string text = all[i].label;
    if (!all[i].mvalue.empty()) text += " (" + all[i].metric + " " + number(all[i].mvalue.back()) + ")";
    draw_text(img, lp.left + 28, ly, text);
  }
  write_png(o.out, img);
  return "plot: " + std::to_string(all.size()) + " run(s)" + (with_metric ? ", loss and " + metric_name : ", loss") +
         " -> " + o.out;
}

}  // namespace attn::apps
