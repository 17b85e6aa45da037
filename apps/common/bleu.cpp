#include "common/bleu.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "attn/error.h"

namespace attn::apps {

namespace {
std::vector<std::string> tokens(const std::string& s) {
  std::istringstream is(s);
  std::vector<std::string> out;
  for (std::string w; is >> w;) out.push_back(w);
  return out;
}

std::map<std::vector<std::string>, int> ngrams(const std::vector<std::string>& t, size_t n) {
  std::map<std::vector<std::string>, int> m;
  for (size_t i = 0; i + n <= t.size(); ++i) ++m[std::vector<std::string>(t.begin() + i, t.begin() + i + n)];
  return m;
}
}  // namespace

double corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  ATTN_CHECK(hyps.size() == refs.size(), "corpus_bleu: ", hyps.size(), " hypotheses but ", refs.size(),
             " references");
  constexpr size_t kOrder = 4;
  double correct[kOrder] = {}, total[kOrder] = {};
  double sys_len = 0, ref_len = 0;
  for (size_t s = 0; s < hyps.size(); ++s) {
    const auto h = tokens(hyps[s]), r = tokens(refs[s]);
    sys_len += static_cast<double>(h.size());
    ref_len += static_cast<double>(r.size());
    for (size_t n = 1; n <= kOrder; ++n) {
      const auto hn = ngrams(h, n), rn = ngrams(r, n);
      for (const auto& [g, c] : hn) {
        auto it = rn.find(g);
        correct[n - 1] += std::min(c, it == rn.end() ? 0 : it->second);
      }
      total[n - 1] += static_cast<double>(h.size() >= n ? h.size() - n + 1 : 0);
    }
  }
  if (sys_len == 0) return 0.0;
  double log_sum = 0, smooth = 1;
  for (size_t n = 0; n < kOrder; ++n) {
    double p;
    if (total[n] == 0) {
      p = 0;
    } else if (correct[n] == 0) {
      smooth *= 2;
      p = 100.0 / (smooth * total[n]);
    } else {
      p = 100.0 * correct[n] / total[n];
    }
    log_sum += p > 0 ? std::log(p) : -9999999999.0;
  }
  const double bp = sys_len < ref_len ? std::exp(1 - ref_len / sys_len) : 1.0;
  return std::max(0.0, bp * std::exp(log_sum / kOrder));
}

}  // namespace attn::apps
