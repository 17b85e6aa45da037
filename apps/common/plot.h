// Training curves from --log-json files as a PNG: the loss against the step
// for each run, and beside it the evaluation metric where the runs logged
// one; labelled axes with ticks, a legend naming each run by its file.
#pragma once

#include <string>
#include <vector>

namespace attn::apps {

struct PlotOptions {
  std::string out = "runs/loss.png";
  std::string title;  // empty: "training loss"
  bool log_loss = false;  // the loss axis in log scale
};

// Reads each JSONL file (objects with "step" and "loss", optionally a metric:
// the first other key that is not lr, elapsed_s or examples_per_s), draws
// them and writes the PNG atomically. attn::Error naming the file and line
// for a file that is missing, empty, or has a line that is not such an object.
// Returns a one-line summary of what was drawn.
std::string plot_logs(const std::vector<std::string>& files, const PlotOptions& options);

}  // namespace attn::apps
