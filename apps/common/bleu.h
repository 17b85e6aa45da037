// Corpus BLEU as sacreBLEU computes it by default (4-grams, brevity penalty,
// 'exp' smoothing of orders with no match, no effective order), on
// whitespace-tokenised strings (the 13a tokeniser leaves the space-separated
// tokens of attn's applications unchanged). 0 to 100.
#pragma once

#include <string>
#include <vector>

namespace attn::apps {

double corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references);

}  // namespace attn::apps
