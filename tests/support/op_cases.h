// The table of op cases (op name, parameters, input kinds and shapes) that
// drives the finite-difference gradient check and the bad-input matrix.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "support/op_table.h"

namespace attn::testing {

enum class Kind { Real, Positive, Index, Bool, Unit };

struct In {
  Shape shape;
  Kind kind = Kind::Real;
  bool grad = true;
  int64_t hi = 0;  // Index: values in [0, hi)
  bool optional = false;  // an optional argument: undefined means "none"
};
inline In real(Shape s) { return {std::move(s), Kind::Real, true, 0}; }
inline In pos(Shape s) { return {std::move(s), Kind::Positive, true, 0}; }
inline In unit(Shape s) { return {std::move(s), Kind::Unit, false, 0}; }  // [0, 1), no grad
inline In idx(Shape s, int64_t hi) { return {std::move(s), Kind::Index, false, hi}; }
inline In mask(Shape s) { return {std::move(s), Kind::Bool, false, 0}; }

inline In opt(In in) {
  in.optional = true;
  return in;
}
inline In posc(Shape s) { return {std::move(s), Kind::Positive, false, 0}; }  // positive constant

struct Case {
  std::string op;
  json params;
  std::vector<In> inputs;
  // Where an op's defined gradient differs from the derivative on purpose,
  // this edits the numeric gradient of input i to the defined one.
  std::function<void(size_t i, Tensor& numeric)> defined_gradient = nullptr;
};

// Every case; each differentiable op of the op table has at least one.
const std::vector<Case>& op_cases();
// A random input of the given kind (float64 for the float kinds).
Tensor make_input(const In& in, Generator& gen);
// "op {params} inputs (shapes)"
std::string case_label(const Case& c);

}  // namespace attn::testing
