// Internal: a restricted unpickler for the data.pkl of a torch.save archive.
//
// It builds values, never objects: dicts, lists, tuples, strings, numbers,
// and three kinds a state_dict needs: a storage reference (the persistent id
// torch.save writes for every storage), a tensor (a call of
// torch._utils._rebuild_tensor_v2 or _rebuild_parameter, recorded as
// storage + offset + size + stride, never executed) and an OrderedDict (a
// dict). Every global outside that list is refused with an attn::Error that
// names it, when the GLOBAL opcode is read, before anything could call it.
//
// Values live in one arena and refer to each other by index, so a hostile
// file can neither recurse the destructor (a million nested lists) nor leak
// through cycles (a list appended to itself through the memo). Every count
// and length is checked against the bytes left, so memory stays proportional
// to the pickle's size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attn::io::pickle {

enum class Kind : uint8_t {
  None, Bool, Int, Float, String, Bytes, Tuple, List, Dict,
  Global,   // an allowed global, not yet called (s = "module.name")
  Storage,  // a persistent id: s = storage type ("FloatStorage"), key, numel
  Tensor,   // a rebuilt tensor: items[0] = its storage, offset, size, stride
  Mark,     // internal: the MARK opcode on the stack
};

struct Value {
  Kind kind = Kind::None;
  int64_t i = 0;           // Bool, Int; Storage: numel; Tensor: storage offset
  double f = 0;            // Float
  std::string s;           // String, Bytes, Global; Storage: the storage type's name
  std::string key;         // Storage: the archive key of its data ("0", "1", ...)
  std::vector<int64_t> items;  // Tuple, List: elements; Dict: key, value, key, value ...; Tensor: {storage}
  std::vector<int64_t> size, stride;  // Tensor
};

struct Result {
  std::vector<Value> arena;
  int64_t root = -1;
};

// Parses a pickle (protocols 2 to 5). `where` names the file in errors.
// Throws attn::Error on anything a state_dict would not contain.
Result parse(const unsigned char* data, size_t size, const std::string& where);

}  // namespace attn::io::pickle
