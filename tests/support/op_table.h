// The table of ops that drives the finite-difference gradient check and the
// PyTorch parity test: one name, one call. tests/parity/gen_ops.py uses the
// same names and parameters on the PyTorch side.
#pragma once

#include <attn/attn.h>

#include <functional>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace attn::testing {

using json = nlohmann::json;
using OpFn = std::function<Tensor(const std::vector<Tensor>& inputs, const json& params)>;

// name -> op; throws if the name is unknown.
const std::map<std::string, OpFn>& op_table();
const OpFn& get_op(const std::string& name);
// The ops whose outputs are bool or int64: compared forward only, and their
// outputs must not record a gradient. Every other op must.
const std::set<std::string>& forward_only_ops();

// |got - ref| <= atol + rtol * |ref| everywhere; NaN in either never passes
// and infinities must match exactly.
struct Comparison {
  bool ok = true;
  double max_abs = 0, max_rel = 0;
  int64_t worst_index = -1, bad = 0;
  std::string message;  // label, shapes, index, values of the worst entry
};
Comparison compare(const std::string& label, const Tensor& got, const Tensor& ref, double rtol, double atol);

}  // namespace attn::testing
