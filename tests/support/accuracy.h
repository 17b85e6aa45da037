// How exact attn's float32 is beside PyTorch's: each parity comparison that
// has a float64 evaluation of the same values adds attn's float32 error and
// float32 PyTorch's error against it; the table summarises the ratio
// attn / PyTorch per op or module kind (median and max over its comparisons).
#pragma once

#include <attn/attn.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace attn::testing {

class AccuracyTable {
 public:
  // attn's and PyTorch's float32 results and the float64 reference, one
  // shape. Entries where the reference is not finite are left out, and so is
  // a reference that is zero everywhere (counted apart).
  void add(const std::string& name, const Tensor& attn, const Tensor& torch32, const Tensor& ref64);

  struct Row {
    std::string name;
    int comparisons = 0;
    double median = 0, max = 0;  // of attn's error / PyTorch's error
  };
  std::vector<Row> rows() const;
  int comparisons() const;
  // The median over all comparisons, and the rows whose median exceeds 1.
  double overall_median() const;
  // One summary line on stdout; the whole table as Markdown to the file named
  // by the environment variable `env` when it is set. ATTN_ACCURACY_DEBUG=1
  // prints every comparison where attn's error is over 20 times PyTorch's.
  void report(const char* what, const char* env) const;

 private:
  std::map<std::string, std::vector<double>> ratios_;
  int zero_references_ = 0;
};

}  // namespace attn::testing
