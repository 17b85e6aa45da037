// attn::Error: the one exception type of attn. Messages name the op, the
// argument, what was expected and what came, e.g.
//   "matmul: a is (2, 3) and b is (4, 5): a.size(-1) must equal b.size(-2)"
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace attn {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Args>
std::string str(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

}  // namespace attn

// ATTN_CHECK(cond, "op: ", ...): throws attn::Error with the concatenated message.
#define ATTN_CHECK(cond, ...)                                   \
  do {                                                          \
    if (!(cond)) throw ::attn::Error(::attn::detail::str(__VA_ARGS__)); \
  } while (0)
