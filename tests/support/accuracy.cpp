// The accuracy table of the parity tests: attn's float32 error over PyTorch's,
// both against PyTorch in float64, per op or module kind (see accuracy.h).
#include "support/accuracy.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace attn::testing {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

void AccuracyTable::add(const std::string& name, const Tensor& attn, const Tensor& torch32, const Tensor& ref64) {
  NoGradGuard ng;
  const Tensor a = attn.detach().to(kFloat64).contiguous(), t = torch32.detach().to(kFloat64).contiguous(),
               r = ref64.detach().to(kFloat64).contiguous();
  if (a.shape() != r.shape() || t.shape() != r.shape()) return;  // the comparison itself reports it
  const double* pa = a.data<double>();
  const double* pt = t.data<double>();
  const double* pr = r.data<double>();
  double ea = 0, et = 0, scale = 0;
  for (int64_t i = 0; i < r.numel(); ++i) {
    if (!std::isfinite(pr[i])) continue;
    scale = std::max(scale, std::abs(pr[i]));
    ea = std::max(ea, std::abs(pa[i] - pr[i]));
    et = std::max(et, std::abs(pt[i] - pr[i]));
  }
  // A reference that is zero everywhere (a gradient that vanishes by
  // symmetry, as the key bias's in attention) has no scale to measure
  // rounding against: both results are rounding noise of terms the table
  // cannot see. Such comparisons are counted, not rated.
  if (scale == 0) {
    ++zero_references_;
    return;
  }
  // Errors below a hundredth of one float32 rounding of the largest entry
  // count as exact: both exact is a ratio of 1, not 0/0.
  const double floor = 0.01 * std::numeric_limits<float>::epsilon() / 2 * scale;
  if (ea <= floor && et <= floor) {
    ratios_[name].push_back(1.0);
    return;
  }
  if (std::getenv("ATTN_ACCURACY_DEBUG") && ea > 20 * std::max(et, floor))
    std::printf("accuracy debug: %s attn %g torch %g scale %g numel %lld\n", name.c_str(), ea, et, scale,
                static_cast<long long>(r.numel()));
  ratios_[name].push_back(std::max(ea, floor) / std::max(et, floor));
}

std::vector<AccuracyTable::Row> AccuracyTable::rows() const {
  std::vector<Row> out;
  for (const auto& [name, v] : ratios_)
    out.push_back({name, static_cast<int>(v.size()), median(v), *std::max_element(v.begin(), v.end())});
  return out;
}

int AccuracyTable::comparisons() const {
  int n = 0;
  for (const auto& [name, v] : ratios_) n += static_cast<int>(v.size());
  return n;
}

double AccuracyTable::overall_median() const {
  std::vector<double> all;
  for (const auto& [name, v] : ratios_) all.insert(all.end(), v.begin(), v.end());
  return median(all);
}

void AccuracyTable::report(const char* what, const char* env) const {
  const std::vector<Row> rs = rows();
  std::string above;
  int n_above = 0;
  for (const Row& r : rs)
    if (r.median > 1) {
      above += (n_above++ ? ", " : " (") + r.name + " " + detail::str(r.median);
    }
  if (n_above) above += ")";
  std::printf("accuracy (%s): attn's float32 error / PyTorch float32's, both against PyTorch in float64, over %d "
              "comparisons of %zu %s (and %d with an all-zero reference, not rated): median %.3g; median above 1 for "
              "%d%s\n",
              what, comparisons(), rs.size(), what, zero_references_, overall_median(), n_above, above.c_str());
  const char* path = std::getenv(env);
  if (!path) return;
  std::FILE* f = std::fopen(path, "w");
  if (!f) return;
  std::fprintf(f, "| %s | comparisons | median ratio | max ratio |\n|---|---|---|---|\n", what);
  for (const Row& r : rs) std::fprintf(f, "| %s | %d | %.3g | %.3g |\n", r.name.c_str(), r.comparisons, r.median, r.max);
  std::fclose(f);
}

}  // namespace attn::testing
