// The applications: a shortened training run must beat chance by a clear
// margin; the data, BLEU and the PNG writer against hand-checked values.
#include <gtest/gtest.h>

#include <attn/attn.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <fstream>
#include <iterator>

#include "common/app.h"
#include "common/bleu.h"
#include "common/png.h"
#include "translate/translate.h"

namespace attn {
namespace {

namespace tr = apps::translate;

TEST(Translate, NumberWords) {
  EXPECT_EQ(tr::number_words(0), "zero");
  EXPECT_EQ(tr::number_words(13), "thirteen");
  EXPECT_EQ(tr::number_words(40), "forty");
  EXPECT_EQ(tr::number_words(705), "seven hundred five");
  EXPECT_EQ(tr::number_words(42705), "forty two thousand seven hundred five");
  EXPECT_EQ(tr::number_words(100000 - 1), "ninety nine thousand nine hundred ninety nine");
  EXPECT_EQ(tr::number_words(3000), "three thousand");
  EXPECT_THROW(tr::number_words(100000), Error);
  int held = 0;
  for (int64_t n = 0; n < 100000; ++n) held += tr::held_out(n);
  EXPECT_GT(held, 9000);
  EXPECT_LT(held, 11000);
  for (int64_t n = 0; n < 10; ++n) EXPECT_FALSE(tr::held_out(n));
}

TEST(Translate, ShortTrainingBeatsChance) {
  // 250 steps (about 6 s here): chance is ~0 exact matches (10^-k for k digits).
  tr::Options o;
  o.steps = 250;
  o.eval_examples = 200;
  o.quiet = true;
  o.checkpoint = (std::filesystem::temp_directory_path() / "attn_test_translate.safetensors").string();
  tr::Result r = tr::train(o);
  EXPECT_GT(r.exact_match, 0.2) << "BLEU " << r.bleu;
  EXPECT_GT(r.bleu, 30.0);
  // eval reloads the checkpoint and finds the same numbers; beam search too.
  tr::Result e = tr::eval(o);
  EXPECT_DOUBLE_EQ(e.exact_match, r.exact_match);
  o.beam = 3;
  EXPECT_GT(tr::eval(o).exact_match, 0.2);
  // The seed's recurrent encoder-decoder with either attention, briefly.
  for (const char* kind : {"lstm-bahdanau", "lstm-luong"}) {
    SCOPED_TRACE(kind);
    tr::Options l = o;
    l.model = kind;
    l.beam = 1;
    l.steps = 200;
    l.eval_examples = 100;
    l.checkpoint += std::string(".") + kind;
    tr::Result lr = tr::train(l);
    EXPECT_GT(lr.exact_match, 0.05);  // chance ~0
    EXPECT_GT(lr.bleu, 20.0);
    EXPECT_DOUBLE_EQ(tr::eval(l).exact_match, lr.exact_match);
    const std::string lp = (std::filesystem::temp_directory_path() / (std::string("attn_test_viz_") + kind)).string();
    tr::viz(l, "seven hundred five", lp);
    EXPECT_TRUE(std::filesystem::exists(lp + "_head0.png"));
    EXPECT_FALSE(std::filesystem::exists(lp + "_head1.png"));  // one attention head
    std::filesystem::remove(l.checkpoint);
  }
  const std::string prefix = (std::filesystem::temp_directory_path() / "attn_test_viz").string();
  const std::string out = tr::viz(o, "forty two", prefix);
  EXPECT_FALSE(out.empty());
  for (const char* f : {"_avg.png", "_head0.png", "_head3.png"}) EXPECT_TRUE(std::filesystem::exists(prefix + f)) << f;
  EXPECT_THROW(tr::viz(o, "forty banana", prefix), Error);
  std::filesystem::remove(o.checkpoint);
  o.checkpoint += ".missing";
  EXPECT_THROW(tr::eval(o), Error);
}

// Every registered application: a shortened run must beat chance (or reach
// a floor) by a clear margin, and eval must reload the checkpoint and agree.
struct Short {
  const char* name;
  const char* variant;
  int64_t steps;
  double floor;             // held-out metric the short run must exceed
  const char* dataset = "";  // vit: fashion-mnist (the default) or shapes
};

TEST(Apps, ShortTrainingBeatsChance) {
  const Short runs[] = {
      {"tag", "", 120, 0.6},       // chance 0.25
      {"gat", "gatconv", 100, 0.45},  // chance 0.2
      {"gat", "gatv2", 100, 0.45},
      {"vit", "seed", 120, 0.35, "shapes"},  // chance 0.25 (0.44 here after 120 steps)
      {"vit", "lsa", 60, 0.4, "shapes"},
      {"vit", "seed", 120, 0.5, "fashion-mnist"},  // chance 0.1; 1000 test images
      {"vit", "lsa", 120, 0.5, "fashion-mnist"},
      {"multimodal", "", 150, 0.4},  // a guess from the question alone: 0.25
      {"dqn", "", 4000, 0.0},        // average return against a random policy's (~24): checked below
      {"caption", "", 150, -1.0},    // BLEU: checked below
      {"lm", "", 60, 0.0},           // bits per character: checked below
  };
  for (const Short& r : runs) {
    SCOPED_TRACE(std::string(r.name) + " " + r.variant + " " + r.dataset);
    apps::AppOptions o;
    o.steps = r.steps;
    o.eval_examples = std::string(r.dataset) == "fashion-mnist" ? 1000 : 200;
    o.eval_examples_set = true;
    o.dataset = r.dataset;
    o.quiet = true;
    o.variant = r.variant;
    o.checkpoint = (std::filesystem::temp_directory_path() / ("attn_test_" + std::string(r.name) + ".safetensors")).string();
    const apps::App& a = apps::find_app(r.name);
    apps::AppResult t = a.train(o);
    EXPECT_GT(t.value, r.floor) << t.metric;
    if (t.baseline_name == "random policy") {
      EXPECT_GT(t.value, 2 * t.chance);  // dqn: twice a random policy's return
    } else if (t.baseline_name == "unigram model") {
      EXPECT_LT(t.value, t.chance - 0.5);  // lm: bits per character, half a bit under a unigram model's
    } else if (std::string(r.name) == "caption") {
      EXPECT_GT(t.bleu, 25.0);  // 150 steps: ~40 BLEU, no caption exact yet (that takes ~600 steps)
    } else {
      EXPECT_GT(t.value, t.chance * (t.baseline_name.empty() ? 1.5 : 0.0));
    }
    apps::AppResult e = a.eval(o);
    EXPECT_DOUBLE_EQ(e.value, t.value) << "eval after reloading";
    std::filesystem::remove(o.checkpoint);
  }
  EXPECT_THROW(apps::find_app("nope"), Error);
  apps::AppOptions o;
  o.checkpoint = "/nonexistent/x.safetensors";
  EXPECT_THROW(apps::find_app("tag").eval(o), Error);
}

// lm --data: a user's UTF-8 file (here a generated one with non-ASCII
// characters), its vocabulary saved with the checkpoint; eval reloads it and
// reads the same file; a character outside that vocabulary is an error with
// its line.
TEST(Apps, LanguageModelOnAUsersFile) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string text_path = (dir / "attn_test_lm_data.txt").string();
  {
    std::ofstream f(text_path);
    const char* words[] = {"café", "naïve", "über", "smörgåsbord", "déjà vu", "façade"};
    std::mt19937_64 rng(3);
    for (int line = 0; line < 400; ++line) {
      for (int w = 0; w < 8; ++w) f << words[rng() % 6] << (w < 7 ? " " : "");
      f << "\n";
    }
  }
  apps::AppOptions o;
  o.steps = 80;
  o.eval_examples = 50;
  o.quiet = true;
  o.data = text_path;
  o.checkpoint = (dir / "attn_test_lm_data.safetensors").string();
  const apps::App& a = apps::find_app("lm");
  apps::AppResult t = a.train(o);
  EXPECT_LT(t.value, t.chance - 0.5) << "bits per character against the unigram model's";
  const io::Metadata meta = io::read_safetensors(o.checkpoint).metadata;
  ASSERT_TRUE(meta.count("vocab"));
  EXPECT_NE(meta.at("vocab").find("ö"), std::string::npos);
  apps::AppOptions e = o;
  e.data.clear();  // the checkpoint names its file
  EXPECT_DOUBLE_EQ(a.eval(e).value, t.value);
  {
    std::ofstream f(text_path);
    for (int line = 0; line < 300; ++line) f << "café naïve über\n";
    f << "zebra\n";
  }
  try {
    a.eval(e);
    ADD_FAILURE() << "a character outside the vocabulary must be an error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("line 301"), std::string::npos) << err.what();
  }
  std::filesystem::remove(text_path);
  std::filesystem::remove(o.checkpoint);
}

// tag --data: labelled sentences from a file (label TAB sentence); a tenth
// held out by hash; eval reloads the vocabulary and labels from the checkpoint.
TEST(Apps, TaggerOnAUsersFile) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string path = (dir / "attn_test_tag_data.tsv").string();
  {
    std::ofstream f(path);
    const char* pos[] = {"good", "great", "fine"};
    const char* neg[] = {"bad", "awful", "poor"};
    const char* filler[] = {"the", "a", "movie", "was", "really", "plot", "and", "very"};
    const char* labels[] = {"positive", "negative", "neutral"};
    std::mt19937_64 rng(5);
    for (int i = 0; i < 1500; ++i) {
      const int label = static_cast<int>(rng() % 3);
      const int n = 4 + static_cast<int>(rng() % 8), at = static_cast<int>(rng() % n);
      f << labels[label] << "\t";
      for (int w = 0; w < n; ++w) {
        if (w == at && label < 2) f << (label == 0 ? pos : neg)[rng() % 3] << " ";
        f << filler[rng() % 8] << (w + 1 < n ? " " : "");
      }
      f << "\n";
    }
  }
  apps::AppOptions o;
  o.steps = 150;
  o.quiet = true;
  o.data = path;
  o.checkpoint = (dir / "attn_test_tag_data.safetensors").string();
  const apps::App& a = apps::find_app("tag");
  apps::AppResult t = a.train(o);
  EXPECT_GT(t.value, 0.8) << "majority class " << t.chance;
  EXPECT_EQ(t.baseline_name, "majority class");
  apps::AppOptions e = o;
  e.data.clear();
  EXPECT_DOUBLE_EQ(a.eval(e).value, t.value);
  std::filesystem::remove(path);
  std::filesystem::remove(o.checkpoint);
}

// translate --data: sentence pairs from a file (source TAB target), a tenth
// held out by hash; the vocabulary and lengths travel with the checkpoint.
TEST(Apps, TranslatorOnAUsersFile) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string path = (dir / "attn_test_translate_data.tsv").string();
  {
    std::ofstream f(path);
    const char* en[] = {"one", "two", "three", "red", "blue", "cat", "dog", "big"};
    const char* fr[] = {"un", "deux", "trois", "rouge", "bleu", "chat", "chien", "grand"};
    std::mt19937_64 rng(7);
    for (int i = 0; i < 2000; ++i) {
      std::vector<int> ws(1 + rng() % 5);
      for (int& w : ws) w = static_cast<int>(rng() % 8);
      for (size_t k = 0; k < ws.size(); ++k) f << (k ? " " : "") << en[ws[k]];
      f << "\t";
      for (size_t k = 0; k < ws.size(); ++k) f << (k ? " " : "") << fr[ws[k]];  // word for word
      f << "\n";
    }
  }
  tr::Options o;
  o.steps = 250;
  o.quiet = true;
  o.data = path;
  o.checkpoint = (dir / "attn_test_translate_data.safetensors").string();
  tr::Result t = tr::train(o);
  EXPECT_GT(t.bleu, 40.0);
  EXPECT_GT(t.examples, 100);
  tr::Options e = o;
  e.data.clear();  // the checkpoint names its file
  EXPECT_DOUBLE_EQ(tr::eval(e).bleu, t.bleu);
  std::filesystem::remove(path);
  std::filesystem::remove(o.checkpoint);
}

TEST(Bleu, AgainstHandComputedValues) {
  EXPECT_NEAR(apps::corpus_bleu({"1 2 3 4 5"}, {"1 2 3 4 5"}), 100.0, 1e-9);
  EXPECT_EQ(apps::corpus_bleu({""}, {"1 2"}), 0.0);
  // hyp "1 2 3 4", ref "1 2 3 5": precisions 3/4, 2/3, 1/2, and no 4-gram
  // match out of 1 ('exp' smoothing: 100 / (2 * 1)); equal lengths: no penalty.
  const double want = std::exp((std::log(75.0) + std::log(200.0 / 3) + std::log(50.0) + std::log(50.0)) / 4);
  EXPECT_NEAR(apps::corpus_bleu({"1 2 3 4"}, {"1 2 3 5"}), want, 1e-9);
  // No 3- or 4-grams in the hypothesis: sacreBLEU's default (no effective
  // order) scores 0, whatever the brevity penalty.
  EXPECT_EQ(apps::corpus_bleu({"1 2"}, {"1 2 3 4"}), 0.0);
  EXPECT_THROW(apps::corpus_bleu({"1"}, {}), Error);
}

TEST(Png, WritesAValidFile) {
  apps::Image img(7, 3);
  img.set(0, 0, 255, 0, 0);
  img.set(6, 2, 0, 0, 255);
  const std::string path = (std::filesystem::temp_directory_path() / "attn_test.png").string();
  apps::write_png(path, img);
  std::ifstream f(path, std::ios::binary);
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 33u);
  EXPECT_EQ(std::vector<unsigned char>(bytes.begin(), bytes.begin() + 8),
            (std::vector<unsigned char>{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}));
  // The decoder's verdict: Python's zlib inflates IDAT and every CRC matches.
  const char* py = std::getenv("ATTN_PYTHON");
  if (py) {
    const std::string cmd = std::string(py) + " " + ATTN_CHECK_PNG + " " + path + " 7 3";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  EXPECT_THROW(apps::write_png("/nonexistent-dir/x.png", img), Error);
}

}  // namespace
}  // namespace attn
