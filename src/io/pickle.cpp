// The restricted unpickler (see pickle.h): a loop over the opcodes of
// protocols 2 to 5 that a state_dict uses, every operand bounded by the bytes
// left, every global checked against the list below before it is pushed.
#include "io/pickle.h"

#include <cstring>
#include <unordered_map>

#include "attn/error.h"

namespace attn::io::pickle {

namespace {

// The storage types a persistent id may name, as torch.save writes them.
bool storage_type(const std::string& name) {
  static const char* names[] = {"FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage",
                                "LongStorage",  "IntStorage",    "ShortStorage", "CharStorage",
                                "ByteStorage",  "BoolStorage",   "UntypedStorage"};
  for (const char* n : names)
    if (name == n) return true;
  return false;
}

// The globals a state_dict needs; anything else is refused when it is read.
bool allowed_global(const std::string& module, const std::string& name) {
  if (module == "collections" && name == "OrderedDict") return true;
  if (module == "torch._utils" && (name == "_rebuild_tensor_v2" || name == "_rebuild_tensor" ||
                                   name == "_rebuild_parameter" || name == "_rebuild_parameter_with_state"))
    return true;
  if (module == "torch._tensor" && name == "_rebuild_from_type_v2") return true;
  // Types that may appear as arguments (the class of a rebuilt tensor), never called.
  if ((module == "torch" && name == "Tensor") || (module == "torch.nn.parameter" && name == "Parameter")) return true;
  return module == "torch" && storage_type(name);
}

class Parser {
 public:
  Parser(const unsigned char* data, size_t size, const std::string& where) : p_(data), end_(data + size), where_(where) {}

  Result run() {
    while (true) {
      const unsigned char op = byte();
      if (op == '.') break;
      step(op);
    }
    if (stack_.size() != 1 || !marks_.empty())
      fail("the pickle ends with " + std::to_string(stack_.size()) + " values on its stack, not 1");
    out_.root = stack_.back();
    return std::move(out_);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("load_torch: " + where_ + ": data.pkl: " + what);
  }

  size_t left() const { return static_cast<size_t>(end_ - p_); }
  const unsigned char* take(uint64_t n) {
    if (n > left()) fail("an operand of " + std::to_string(n) + " bytes runs past the end of the pickle");
    const unsigned char* q = p_;
    p_ += n;
    return q;
  }
  unsigned char byte() { return *take(1); }
  uint64_t le(int n) {
    const unsigned char* q = take(static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | q[i];
    return v;
  }
  std::string text(uint64_t n) {
    const unsigned char* q = take(n);
    return std::string(reinterpret_cast<const char*>(q), static_cast<size_t>(n));
  }
  std::string line() {  // GLOBAL's operands: text up to a newline
    const unsigned char* nl = static_cast<const unsigned char*>(std::memchr(p_, '\n', left()));
    if (!nl) fail("a GLOBAL name has no newline before the end of the pickle");
    std::string s(reinterpret_cast<const char*>(p_), static_cast<size_t>(nl - p_));
    p_ = nl + 1;
    return s;
  }

  int64_t make(Value v) {
    out_.arena.push_back(std::move(v));
    return static_cast<int64_t>(out_.arena.size()) - 1;
  }
  Value& at(int64_t i) { return out_.arena[static_cast<size_t>(i)]; }
  void push(int64_t i) { stack_.push_back(i); }
  int64_t pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("an opcode pops an empty stack");
    const int64_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  int64_t top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("an opcode reads an empty stack");
    return stack_.back();
  }
  // The values since the last MARK, which is removed.
  std::vector<int64_t> pop_mark() {
    if (marks_.empty()) fail("an opcode needs a MARK that is not there");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<int64_t> v(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return v;
  }
  int64_t scalar(Kind k, int64_t i) {
    Value v;
    v.kind = k;
    v.i = i;
    return make(std::move(v));
  }
  int64_t string(Kind k, std::string s) {
    Value v;
    v.kind = k;
    v.s = std::move(s);
    return make(std::move(v));
  }
  int64_t seq(Kind k, std::vector<int64_t> items) {
    Value v;
    v.kind = k;
    v.items = std::move(items);
    return make(std::move(v));
  }
  Value& container(int64_t i, Kind k, const char* op) {
    if (at(i).kind != k) fail(std::string(op) + " on a value that is not a " + (k == Kind::List ? "list" : "dict"));
    return at(i);
  }

  int64_t global(const std::string& module, const std::string& name) {
    if (!allowed_global(module, name)) {
      std::string hint;
      if (module == "__main__" || module.rfind("torch.nn.modules", 0) == 0 || module.rfind("torchvision", 0) == 0)
        hint = " (this looks like a whole model pickled with torch.save(model); save its state_dict instead: "
               "torch.save(model.state_dict(), path))";
      fail("refused the global " + module + "." + name +
           ": a state_dict needs only tensors, dicts and numbers, and attn runs no code from a checkpoint" + hint);
    }
    return string(Kind::Global, module + "." + name);
  }

  const std::vector<int64_t>& tuple_items(int64_t i, const char* what) {
    if (at(i).kind != Kind::Tuple) fail(std::string(what) + " is not a tuple");
    return at(i).items;
  }
  int64_t int_of(int64_t i, const char* what) {
    if (at(i).kind != Kind::Int && at(i).kind != Kind::Bool) fail(std::string(what) + " is not an integer");
    return at(i).i;
  }
  std::vector<int64_t> ints_of(int64_t i, const char* what) {
    std::vector<int64_t> v;
    for (int64_t e : tuple_items(i, what)) v.push_back(int_of(e, what));
    return v;
  }

  // storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]]
  int64_t rebuild_tensor(const std::vector<int64_t>& a) {
    if (a.size() < 4) fail("_rebuild_tensor_v2 takes at least 4 arguments, got " + std::to_string(a.size()));
    if (at(a[0]).kind != Kind::Storage) fail("_rebuild_tensor_v2's first argument is not a storage");
    Value t;
    t.kind = Kind::Tensor;
    t.items = {a[0]};
    t.i = int_of(a[1], "a tensor's storage offset");
    t.size = ints_of(a[2], "a tensor's size");
    t.stride = ints_of(a[3], "a tensor's stride");
    if (t.size.size() != t.stride.size())
      fail("a tensor has " + std::to_string(t.size.size()) + " sizes but " + std::to_string(t.stride.size()) +
           " strides");
    return make(std::move(t));
  }

  int64_t call(int64_t fn, int64_t args_i) {
    if (at(fn).kind != Kind::Global) fail("REDUCE calls a value that is not a global");
    const std::string f = at(fn).s;
    const std::vector<int64_t> a = tuple_items(args_i, "REDUCE's arguments");
    if (f == "collections.OrderedDict") {
      if (!a.empty()) fail("OrderedDict is called with arguments; torch.save writes OrderedDict()");
      return seq(Kind::Dict, {});
    }
    if (f == "torch._utils._rebuild_tensor_v2" || f == "torch._utils._rebuild_tensor") return rebuild_tensor(a);
    if (f == "torch._utils._rebuild_parameter" || f == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || at(a[0]).kind != Kind::Tensor) fail(f + "'s first argument is not a tensor");
      return a[0];
    }
    if (f == "torch._tensor._rebuild_from_type_v2") {  // (func, type, args, state)
      if (a.size() < 3 || at(a[1]).kind != Kind::Global || at(a[2]).kind != Kind::Tuple)
        fail("_rebuild_from_type_v2 takes (func, type, args, state)");
      const std::string& type = at(a[1]).s;
      if (type != "torch.Tensor" && type != "torch.nn.parameter.Parameter")
        fail("_rebuild_from_type_v2 rebuilds a " + type + ", not a tensor");
      if (at(a[0]).kind == Kind::Global && at(a[0]).s == f) fail("_rebuild_from_type_v2 calls itself");
      return call(a[0], a[2]);
    }
    fail("refused to call " + f + ": it is a type, not a function a state_dict calls");
  }

  void step(unsigned char op) {
    switch (op) {
      case 0x80: byte(); return;       // PROTO
      case 0x95: take(8); return;      // FRAME (a hint; the frame's bytes follow)
      case '(': marks_.push_back(stack_.size()); return;
      case 'N': push(scalar(Kind::None, 0)); return;
      case 0x88: push(scalar(Kind::Bool, 1)); return;
      case 0x89: push(scalar(Kind::Bool, 0)); return;
      case 'K': push(scalar(Kind::Int, static_cast<int64_t>(le(1)))); return;
      case 'M': push(scalar(Kind::Int, static_cast<int64_t>(le(2)))); return;
      case 'J': push(scalar(Kind::Int, static_cast<int32_t>(static_cast<uint32_t>(le(4))))); return;
      case 0x8a: {  // LONG1: n bytes, little-endian two's complement
        const unsigned n = byte();
        if (n > 8) fail("an integer of " + std::to_string(n) + " bytes is too large");
        uint64_t v = n ? le(static_cast<int>(n)) : 0;
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
        push(scalar(Kind::Int, static_cast<int64_t>(v)));
        return;
      }
      case 'G': {  // BINFLOAT: big-endian double
        const unsigned char* q = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | q[i];
        Value v;
        v.kind = Kind::Float;
        std::memcpy(&v.f, &bits, 8);
        push(make(std::move(v)));
        return;
      }
      case 'X': push(string(Kind::String, text(le(4)))); return;     // BINUNICODE
      case 0x8c: push(string(Kind::String, text(byte()))); return;   // SHORT_BINUNICODE
      case 0x8d: push(string(Kind::String, text(le(8)))); return;    // BINUNICODE8
      case 'T': push(string(Kind::String, text(le(4)))); return;     // BINSTRING
      case 'U': push(string(Kind::String, text(byte()))); return;    // SHORT_BINSTRING
      case 'B': push(string(Kind::Bytes, text(le(4)))); return;      // BINBYTES
      case 'C': push(string(Kind::Bytes, text(byte()))); return;     // SHORT_BINBYTES
      case 0x8e: push(string(Kind::Bytes, text(le(8)))); return;     // BINBYTES8
      case ')': push(seq(Kind::Tuple, {})); return;
      case ']': push(seq(Kind::List, {})); return;
      case '}': push(seq(Kind::Dict, {})); return;
      case 't': push(seq(Kind::Tuple, pop_mark())); return;
      case 0x85: { const int64_t a = pop(); push(seq(Kind::Tuple, {a})); return; }
      case 0x86: { const int64_t b = pop(), a = pop(); push(seq(Kind::Tuple, {a, b})); return; }
      case 0x87: { const int64_t c = pop(), b = pop(), a = pop(); push(seq(Kind::Tuple, {a, b, c})); return; }
      case 'l': push(seq(Kind::List, pop_mark())); return;
      case 'd': {
        std::vector<int64_t> kv = pop_mark();
        if (kv.size() % 2) fail("DICT has an odd number of items");
        push(seq(Kind::Dict, std::move(kv)));
        return;
      }
      case 'a': { const int64_t v = pop(); container(top(), Kind::List, "APPEND").items.push_back(v); return; }
      case 'e': {
        std::vector<int64_t> v = pop_mark();
        auto& items = container(top(), Kind::List, "APPENDS").items;
        items.insert(items.end(), v.begin(), v.end());
        return;
      }
      case 's': {
        const int64_t v = pop(), k = pop();
        auto& items = container(top(), Kind::Dict, "SETITEM").items;
        items.push_back(k);
        items.push_back(v);
        return;
      }
      case 'u': {
        std::vector<int64_t> kv = pop_mark();
        if (kv.size() % 2) fail("SETITEMS has an odd number of items");
        auto& items = container(top(), Kind::Dict, "SETITEMS").items;
        items.insert(items.end(), kv.begin(), kv.end());
        return;
      }
      case 'q': memo_[static_cast<uint32_t>(byte())] = top(); return;   // BINPUT
      case 'r': memo_[static_cast<uint32_t>(le(4))] = top(); return;    // LONG_BINPUT
      case 0x94: memo_[static_cast<uint32_t>(memo_.size())] = top(); return;  // MEMOIZE
      case 'h': case 'j': {  // BINGET, LONG_BINGET
        const uint32_t k = static_cast<uint32_t>(op == 'h' ? byte() : le(4));
        auto it = memo_.find(k);
        if (it == memo_.end()) fail("BINGET of memo entry " + std::to_string(k) + ", which was never put");
        push(it->second);
        return;
      }
      case '0': pop(); return;  // POP
      case '1': pop_mark(); return;  // POP_MARK
      case '2': push(top()); return;  // DUP
      case 'c': {  // GLOBAL "module\nname\n"
        const std::string module = line();
        const std::string name = line();
        push(global(module, name));
        return;
      }
      case 0x93: {  // STACK_GLOBAL
        const int64_t n = pop(), m = pop();
        if (at(n).kind != Kind::String || at(m).kind != Kind::String) fail("STACK_GLOBAL of values that are not strings");
        push(global(at(m).s, at(n).s));
        return;
      }
      case 'Q': {  // BINPERSID: ('storage', type, key, location, numel)
        const std::vector<int64_t> t = tuple_items(pop(), "a persistent id");
        if (t.size() != 5 || at(t[0]).kind != Kind::String || at(t[0]).s != "storage")
          fail("a persistent id is not ('storage', type, key, location, numel)");
        if (at(t[1]).kind != Kind::Global || at(t[1]).s.rfind("torch.", 0) != 0 || !storage_type(at(t[1]).s.substr(6)))
          fail("a persistent id names no storage type");
        if (at(t[2]).kind != Kind::String) fail("a storage key is not a string");
        Value v;
        v.kind = Kind::Storage;
        v.s = at(t[1]).s.substr(6);
        v.key = at(t[2]).s;
        v.i = int_of(t[4], "a storage's size");
        if (v.i < 0) fail("storage " + v.key + " has a negative size");
        push(make(std::move(v)));
        return;
      }
      case 'R': { const int64_t args = pop(), fn = pop(); push(call(fn, args)); return; }
      case 'b': {  // BUILD: an OrderedDict's __dict__ (its _metadata) or a tensor's state; ignored
        pop();
        const Kind k = at(top()).kind;
        if (k != Kind::Dict && k != Kind::Tensor) fail("BUILD on a value that is neither a dict nor a tensor");
        return;
      }
      case 0x81: case 0x92: case 'i': case 'o':
        fail("the pickle constructs an object (opcode 0x" + hex(op) + "); a state_dict holds none");
      default:
        fail("opcode 0x" + hex(op) + " is not one a state_dict uses");
    }
  }

  static std::string hex(unsigned char c) {
    const char* d = "0123456789abcdef";
    return std::string{d[c >> 4], d[c & 15]};
  }

  const unsigned char* p_;
  const unsigned char* end_;
  std::string where_;
  Result out_;
  std::vector<int64_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, int64_t> memo_;
};

}  // namespace

Result parse(const unsigned char* data, size_t size, const std::string& where) {
  return Parser(data, size, where).run();
}

}  // namespace attn::io::pickle
