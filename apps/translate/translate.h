// The translate application: English number words to digits ("forty two
// thousand seven hundred five" -> "4 2 7 0 5"), 0 .. 99 999, generated
// procedurally: about a tenth of the numbers from 10 up, picked by a hash,
// are held out for evaluation and never trained on (0 .. 9 are all trained:
// "zero" occurs nowhere else). Models: a Transformer encoder-decoder
// (nn::Transformer, learned positions), or the seed's LSTM encoder-decoder
// with Bahdanau or Luong attention. Greedy and beam-search decoding; exact
// match and corpus BLEU. Or a user's sentence pairs (Options::data).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attn::apps::translate {

struct Options {
  int64_t steps = 1200;       // optimizer steps
  int64_t batch = 64;
  double lr = 2e-3;           // AdamW, linear warm-up then cosine
  uint64_t seed = 1;
  int64_t eval_examples = 500;
  int64_t beam = 1;           // 1: greedy
  int64_t show = 5;           // translations printed
  std::string checkpoint = "runs/translate.safetensors";
  bool quiet = false;         // no progress line or examples (tests)
  // transformer, or the seed's recurrent encoder-decoder with attention:
  // lstm-bahdanau (additive) or lstm-luong (general)
  std::string model = "transformer";
  // A UTF-8 file of sentence pairs (source TAB target per line) instead of
  // the number words; eval and viz read the checkpoint's file unless set.
  std::string data;
  // Data parallel over the ranks of an MPI job: every rank draws the same
  // global batch and trains on its batch / P rows (the same batches, data
  // order and dropout masks as one process), DistributedDataParallel
  // averages the gradients; rank 0 prints, logs and saves.
  bool distributed = false;
  std::string log_json;      // one JSON object per logged step (see attn::apps::JsonLog)
};

struct Result {
  double exact_match = 0;  // fraction of held-out sentences translated exactly
  double bleu = 0;         // corpus BLEU, 0..100
  double seconds = 0;
  int64_t examples = 0;    // held-out sentences evaluated
};

// Trains, saves the checkpoint, evaluates on held-out numbers.
Result train(const Options& options);
// Loads the checkpoint and evaluates.
Result eval(const Options& options);
// Translates one sentence with the checkpoint and writes the last decoder
// layer's cross-attention as PNG heatmaps: <png_prefix>_avg.png (mean over
// heads) and <png_prefix>_head<h>.png. Returns the translation.
std::string viz(const Options& options, const std::string& sentence, const std::string& png_prefix);

// The data, for tests: the words of n, and whether n is held out.
std::string number_words(int64_t n);
bool held_out(int64_t n);

}  // namespace attn::apps::translate
