// Bad input raises attn::Error naming the op, the argument, what was expected
// and what came: a table of cases covering bad shapes, dtypes and
// out-of-range indices for every op.
#include <attn/attn.h>
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "support/op_cases.h"

namespace attn {
namespace {

struct BadCase {
  std::string what;                 // the mistake
  std::function<void()> call;
  std::vector<std::string> expect;  // substrings of the message, the op's name first
};

std::vector<BadCase> cases() {
  Tensor f = randn({2, 3}), d = randn({2, 3}, kFloat64), i = arange(6).reshape({2, 3}), b = f > 0.0;
  Tensor img = randn({1, 2, 5, 5}), w = randn({3, 2, 3, 3});
  return {
      // The message the foundation issue quotes.
      {"matmul inner dims", [] { matmul(zeros({2, 3}), zeros({4, 5})); },
       {"matmul: a is (2, 3) and b is (4, 5): a.size(-1) must equal b.size(-2)"}},
      {"matmul dtypes", [=] { matmul(f, d.t()); }, {"matmul:", "float32", "float64"}},
      {"matmul int", [=] { matmul(i, i.t()); }, {"matmul:", "a must be float32 or float64, got int64"}},
      {"matmul 0-d", [] { matmul(scalar_tensor(1), ones({1})); }, {"matmul:", "at least 1 dim"}},
      {"matmul batch", [] { matmul(zeros({2, 2, 3}), zeros({3, 3, 4})); }, {"matmul:", "do not broadcast"}},
      {"mm rank", [] { mm(zeros({2, 3, 4}), zeros({4, 2})); }, {"mm:", "a must have 2 dims, got 3"}},
      {"bmm sizes", [] { bmm(zeros({2, 3, 4}), zeros({3, 4, 2})); }, {"bmm:", "(B, n, k)"}},
      {"add broadcast", [] { add(zeros({2, 3}), zeros({4})); }, {"add:", "(2, 3)", "(4)", "do not broadcast"}},
      {"add dtypes", [=] { add(f, d); }, {"add:", "a is float32 but b is float64"}},
      {"add bool", [=] { add(b, b); }, {"add:", "bool"}},
      {"div int", [=] { div(i, i); }, {"div:", "int64"}},
      {"exp int", [=] { exp(i); }, {"exp:", "input must be float32 or float64, got int64"}},
      {"undefined", [] { exp(Tensor()); }, {"exp:", "undefined"}},
      {"clamp none", [=] { clamp(f, std::nullopt, std::nullopt); }, {"clamp:", "at least one"}},
      {"where cond dtype", [=] { where(f, f, f); }, {"where:", "condition must be bool, got float32"}},
      {"where shapes", [=] { where(b, f, zeros({4})); }, {"where:", "do not broadcast"}},
      {"masked_fill mask dtype", [=] { masked_fill(f, f, 0); }, {"masked_fill:", "mask must be bool"}},
      {"masked_fill grows", [=] { masked_fill(zeros({3}), b, 0); }, {"masked_fill:", "not beyond"}},
      {"logical_and dtype", [=] { logical_and(b, f); }, {"logical_and:", "b must be bool"}},
      {"eq dtypes", [=] { eq(f, i); }, {"eq:", "float32", "int64"}},
      {"sum dim", [=] { sum(f, {2}); }, {"sum:", "dim 2 is out of range", "2 dims"}},
      {"sum repeated dim", [=] { sum(f, {1, -1}); }, {"sum:", "more than once"}},
      {"amax empty", [] { amax(zeros({0, 3}), {0}); }, {"amax:", "zero-size"}},
      {"max empty", [] { max(zeros({0})); }, {"max:", "empty"}},
      {"argmax empty dim", [] { argmax(zeros({2, 0}), 1); }, {"argmax:", "size 0"}},
      {"var correction", [=] { var(f, {1}, -1); }, {"var:", "correction"}},
      {"reshape numel", [=] { f.reshape({4, 2}); }, {"reshape:", "invalid for a tensor of 6 elements"}},
      {"view strides", [=] { f.t().view({6}); }, {"view:", "use reshape()"}},
      {"transpose dim", [=] { f.transpose(0, 3); }, {"transpose:", "dim 3 is out of range"}},
      {"permute dims", [=] { f.permute({0, 0}); }, {"permute:", "repeats"}},
      {"permute count", [=] { f.permute({0}); }, {"permute:", "for a tensor with 2 dims"}},
      {"select index", [=] { f.select(1, 3); }, {"select:", "index 3 is out of range", "size 3"}},
      {"narrow range", [=] { f.narrow(1, 2, 2); }, {"narrow:", "out of range"}},
      {"slice step", [=] { f.slice(0, 0, 2, 0); }, {"slice:", "step must be positive"}},
      {"expand", [=] { f.expand({2, 4}); }, {"expand:", "neither 1 nor 4"}},
      {"flatten order", [=] { f.flatten(1, 0); }, {"flatten:", "start_dim"}},
      {"item", [=] { f.item<float>(); }, {"item:", "6 elements"}},
      {"data dtype", [=] { f.data<double>(); }, {"data:", "float32", "float64"}},
      {"cat empty", [] { cat({}); }, {"cat:", "non-empty"}},
      {"cat sizes", [] { cat({zeros({2, 3}), zeros({3, 3})}, 1); }, {"cat:", "sizes must match except in dim 1"}},
      {"cat dtypes", [=] { cat({f, d}); }, {"cat:", "float32", "float64"}},
      {"stack shapes", [] { stack({zeros({2}), zeros({3})}); }, {"stack:", "same shape"}},
      {"split sizes", [] { split(zeros({5}), std::vector<int64_t>{2, 2}); }, {"split:", "sum to 4"}},
      {"split size", [] { split(zeros({5}), int64_t{0}); }, {"split:", "positive"}},
      {"chunk", [] { chunk(zeros({5}), 0); }, {"chunk:", "positive"}},
      {"index_select dtype", [=] { index_select(f, 0, f); }, {"index_select:", "index must be int64"}},
      {"index_select range", [=] { index_select(f, 1, from_vector({0, 3})); }, {"index_select:", "index 3 is out of range"}},
      {"index_select negative", [=] { index_select(f, 1, from_vector({-1})); }, {"index_select:", "index -1"}},
      {"gather rank", [=] { gather(f, 1, from_vector({0})); }, {"gather:", "index has 1 dims"}},
      {"gather range", [=] { gather(f, 1, from_vector({5, 0}, {2, 1})); }, {"gather:", "index 5 is out of range"}},
      {"scatter_add src", [=] { scatter_add(f, 1, from_vector({0, 1}, {2, 1}), zeros({2})); }, {"scatter_add:", "src has 1 dims"}},
      {"pad odd", [=] { pad(f, {1}); }, {"pad:", "even length"}},
      {"pad too many", [=] { pad(f, {1, 1, 1, 1, 1, 1}); }, {"pad:", "3 dims of padding"}},
      {"pad negative size", [=] { pad(f, {-2, -2}); }, {"pad:", "negative"}},
      {"tril rank", [] { tril(zeros({3})); }, {"tril:", "at least 2 dims"}},
      {"factory size", [] { zeros({2, -1}); }, {"zeros:", "non-negative"}},
      {"factory overflow", [] { zeros({int64_t{1} << 40, int64_t{1} << 40}); }, {"zeros:", "overflows int64"}},
      {"randint range", [] { randint(3, 3, {2}); }, {"randint:", "greater than low"}},
      {"randn dtype", [] { randn({2}, kInt64); }, {"randn:", "float32 or float64"}},
      {"arange step", [] { arange(0, 5, 0); }, {"arange:", "non-zero"}},
      {"arange direction", [] { arange(5, 0, 1); }, {"arange:", "empty in the direction"}},
      {"from_vector size", [] { from_vector(std::vector<float>{1, 2, 3}, {2, 2}); }, {"from_vector:", "do not fill"}},
      {"softmax dim", [=] { F::softmax(f, 2); }, {"softmax:", "dim 2 is out of range"}},
      {"softmax int", [=] { F::log_softmax(i, 0); }, {"log_softmax:", "int64"}},
      {"layer_norm shape", [=] { F::layer_norm(f, {4}); }, {"layer_norm:", "does not end with normalized_shape (4)"}},
      {"layer_norm weight", [=] { F::layer_norm(f, {3}, ones({2})); }, {"layer_norm:", "weight is (2)"}},
      {"layer_norm eps", [=] { F::layer_norm(f, {3}, {}, {}, -1); }, {"layer_norm:", "eps"}},
      {"dropout p", [=] { F::dropout(f, 1.5); }, {"dropout:", "p must be in [0, 1], got 1.5"}},
      {"linear sizes", [=] { F::linear(f, randn({4, 2})); }, {"linear:", "input.size(-1) must equal weight.size(1)"}},
      {"linear bias", [=] { F::linear(f, randn({4, 3}), ones({3})); }, {"linear:", "bias is (3)"}},
      {"embedding index", [] { F::embedding(from_vector({0, 9}), randn({4, 2})); }, {"embedding:", "index 9 is out of range for 4"}},
      {"embedding dtype", [=] { F::embedding(f, randn({4, 2})); }, {"embedding:", "indices must be int64"}},
      {"embedding padding", [] { F::embedding(from_vector({0}), randn({4, 2}), 7); }, {"embedding:", "padding_idx 7"}},
      {"conv2d rank", [=] { F::conv2d(f, w); }, {"conv2d:", "(N, C, H, W)"}},
      {"conv2d channels", [=] { F::conv2d(randn({1, 3, 5, 5}), w); }, {"conv2d:", "input channels"}},
      {"conv2d groups", [=] { F::conv2d(img, w, F::Conv2dFuncOptions().groups(2)); }, {"conv2d:", "divisible by groups 2"}},
      {"conv2d kernel", [=] { F::conv2d(randn({1, 2, 2, 2}), w); }, {"conv2d:", "smaller than the dilated kernel"}},
      {"conv2d stride", [=] { F::conv2d(img, w, F::Conv2dFuncOptions().stride(0)); }, {"conv2d:", "stride must be >= 1"}},
      {"max_pool2d padding", [=] { F::max_pool2d(img, F::MaxPool2dFuncOptions(2).padding(2)); }, {"max_pool2d:", "half the kernel"}},
      {"avg_pool2d too small", [] { F::avg_pool2d(randn({1, 1, 2, 2}), F::AvgPool2dFuncOptions(3)); }, {"avg_pool2d:", "too small"}},
      {"adaptive size", [=] { F::adaptive_avg_pool2d(img, 0); }, {"adaptive_avg_pool2d:", "output_size must be >= 1"}},
      {"cross_entropy target range", [=] { F::cross_entropy(f, from_vector({0, 3})); }, {"cross_entropy:", "target 3 is out of range for 3 classes"}},
      {"cross_entropy target shape", [=] { F::cross_entropy(f, from_vector({0})); }, {"cross_entropy:", "target must be (2)"}},
      {"cross_entropy weight", [=] { F::cross_entropy(f, from_vector({0, 1}), F::CrossEntropyFuncOptions().weight(ones({2}))); }, {"cross_entropy:", "weight is (2)"}},
      {"cross_entropy smoothing", [=] { F::cross_entropy(f, from_vector({0, 1}), F::CrossEntropyFuncOptions().label_smoothing(2)); }, {"cross_entropy:", "label_smoothing"}},
      {"cross_entropy probs", [=] { F::cross_entropy(f, randn({2, 4})); }, {"cross_entropy:", "probability targets"}},
      {"nll_loss target dtype", [=] { F::nll_loss(f, f); }, {"nll_loss:", "target must be int64"}},
      {"mse_loss shapes", [=] { F::mse_loss(f, randn({3})); }, {"mse_loss:", "same shape"}},
      {"smooth_l1 beta", [=] { F::smooth_l1_loss(f, f, kMean, -1); }, {"smooth_l1_loss:", "beta"}},
      {"bce pos_weight", [=] { F::binary_cross_entropy_with_logits(f, f, F::BCEWithLogitsFuncOptions().pos_weight(ones({4}))); }, {"binary_cross_entropy_with_logits:", "pos_weight (4)"}},
      {"gelu approximate", [=] { F::gelu(f, "fast"); }, {"gelu:", "\"fast\""}},
      {"backward no grad", [=] { f.sum().backward(); }, {"backward:", "does not require grad"}},
      {"requires_grad int", [=] { Tensor(i).requires_grad_(true); }, {"requires_grad_:", "int64"}},
      {"copy_ shape", [] { zeros({2}).copy_(zeros({3})); }, {"expand:"}},
      {"set_grad shape", [=] { f.set_grad(zeros({3})); }, {"set_grad:", "(3)"}},
      {"set_num_threads", [] { set_num_threads(-1); }, {"set_num_threads:", "got -1"}},
  };
}

TEST(Errors, BadInputRaisesAClearError) {
  int tried = 0;
  for (const BadCase& c : cases()) {
    ++tried;
    try {
      c.call();
      ADD_FAILURE() << c.what << ": no error was raised";
    } catch (const Error& e) {
      const std::string msg = e.what();
      for (const std::string& want : c.expect)
        EXPECT_NE(msg.find(want), std::string::npos) << c.what << ": expected \"" << want << "\" in: " << msg;
      EXPECT_EQ(msg.find(c.expect[0]), 0u) << c.what << ": the message should start with the op: " << msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.what << ": raised a non-attn exception: " << e.what();
    }
  }
  std::printf("bad-input cases tried: %d\n", tried);
}

// The matrix: every case of the op table with each input in turn replaced by
// an undefined tensor (must raise attn::Error), by a float32 copy next to
// float64 ones (must raise: attn does not promote), and by an int64 or bool
// tensor (must raise or give a result: never crash or throw anything else).
TEST(Errors, EveryOpRejectsUndefinedMismatchedAndWrongDtypes) {
  using namespace attn::testing;
  int tried = 0;
  for (size_t ci = 0; ci < op_cases().size(); ++ci) {
    Case c = op_cases()[ci];
    if (c.params.is_null()) c.params = json::object();
    Generator gen(ci);
    std::vector<Tensor> good;
    for (const In& in : c.inputs) good.push_back(make_input(in, gen));
    const OpFn& op = get_op(c.op);
    int floats = 0;
    for (const Tensor& t : good) floats += t.dtype() == kFloat64;
    for (size_t i = 0; i < good.size(); ++i) {
      const std::string where = case_label(c) + ", input " + std::to_string(i);
      auto expect_error = [&](std::vector<Tensor> in, const char* what) {
        ++tried;
        try {
          op(in, c.params);
          ADD_FAILURE() << where << " " << what << ": no error";
        } catch (const Error&) {
        } catch (const std::exception& e) {
          ADD_FAILURE() << where << " " << what << ": non-attn exception " << e.what();
        }
      };
      auto expect_error_or_result = [&](std::vector<Tensor> in, const char* what) {
        ++tried;
        try {
          Tensor out = op(in, c.params);
          EXPECT_TRUE(out.defined()) << where << " " << what;
        } catch (const Error&) {
        } catch (const std::exception& e) {
          ADD_FAILURE() << where << " " << what << ": non-attn exception " << e.what();
        }
      };
      std::vector<Tensor> in = good;
      in[i] = Tensor();
      if (c.inputs[i].optional)
        expect_error_or_result(in, "undefined optional");
      else
        expect_error(in, "undefined");
      if (good[i].dtype() == kFloat64) {
        if (floats >= 2) {
          in[i] = good[i].to(kFloat32);
          expect_error(in, "float32 among float64");
        }
        in[i] = good[i].to(kInt64);
        expect_error_or_result(in, "as int64");
        in[i] = good[i] > 0.0;
        expect_error_or_result(in, "as bool");
      } else {
        in[i] = randn(good[i].shape(), kFloat64, &gen);
        expect_error_or_result(in, "as float64");
      }
    }
  }
  std::printf("bad-input matrix cases tried: %d\n", tried);
  EXPECT_GT(tried, 300);
}

}  // namespace
}  // namespace attn
