// Safetensors: an 8-byte little-endian header length N, N bytes of JSON
// ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}),
// then the data. Reading maps the file and checks every length, offset, shape
// and dtype before touching data; aligned F32/F64/I64/BOOL/BF16 tensors alias
// the mapping (copy-on-write), others are converted.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "attn/io.h"
#include "io/files.h"
#include "kernels/cpu/kernels.h"

namespace attn::io {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeader = 100ull << 20;  // the format's own limit is 100 MB

struct DtypeInfo {
  const char* name;
  size_t size;
};

bool dtype_info(const std::string& s, DtypeInfo& out) {
  static const DtypeInfo table[] = {{"F32", 4}, {"F64", 8}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
                                    {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
  for (const auto& d : table)
    if (s == d.name) {
      out = d;
      return true;
    }
  return false;
}

using files::convert_copy;
using files::half_to_float;

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw Error("load_safetensors: " + name + ": " + what);
}

// How errors name a tensor of the header.
std::string tensor_label(const std::string& name) { return "tensor \"" + name + "\""; }

// One tensor's header entry as read: {"dtype": ..., "shape": [...],
// "data_offsets": [begin, end]}.
struct Entry {
  std::string name, dtype;
  Shape shape;
  uint64_t numel = 1;
  uint64_t offsets[2] = {0, 0};
  int n_offsets = 0;
  bool has_dtype = false, has_shape = false, has_offsets = false;
};

// Reads the header as a stream of JSON events against the format's schema,
// {name: {field: value or [values]}, "__metadata__": {key: string}}, and stops
// at the first thing that does not fit it. No document tree is built, so the
// memory held is the names, shapes and metadata strings the header spells out
// (a 100 MB header of nested brackets costs nothing), and a shape is checked
// against the data section as it is read. Fields the format does not define
// are skipped, as other readers do, when they are scalars or flat arrays or
// objects.
class HeaderReader {
 public:
  HeaderReader(uint64_t data_size, Metadata& metadata) : data_size_(data_size), metadata_(metadata) {}

  std::vector<Entry> entries;
  std::string error;  // why an event was refused

  // nlohmann::json's SAX interface.
  bool null() { return scalar(nullptr); }
  bool boolean(bool) { return scalar(nullptr); }
  bool number_integer(int64_t) { return scalar(nullptr); }  // called for negative integers only
  bool number_unsigned(uint64_t v) { return scalar(&v); }
  bool number_float(double, const std::string&) { return scalar(nullptr); }
  bool binary(json::binary_t&) { return scalar(nullptr); }
  bool string(std::string& v) {
    if (depth_ == 2 && in_metadata_) {
      if (!metadata_.try_emplace(key_, std::move(v)).second)
        return refuse("__metadata__ repeats the key \"" + key_ + "\"");
      return true;
    }
    if (depth_ == 2 && key_ == "dtype") {
      entry_.dtype = std::move(v);
      entry_.has_dtype = true;
      return true;
    }
    return scalar(nullptr);
  }
  bool key(std::string& k) {
    if (in_unknown_) return true;
    if (depth_ == 2 && !in_metadata_) {
      const bool seen = k == "dtype" ? entry_.has_dtype : k == "shape" ? entry_.has_shape
                        : k == "data_offsets" ? entry_.has_offsets : false;
      if (seen) return refuse(where() + " repeats its field \"" + k + "\"");
    }
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) {
    if (depth_ == 0) return enter();
    if (depth_ == 1) {
      in_metadata_ = key_ == "__metadata__";
      if (in_metadata_) {
        if (seen_metadata_) return refuse("__metadata__ appears twice");
        seen_metadata_ = true;
      } else {
        entry_ = Entry{};
        entry_.name = std::move(key_);
      }
      return enter();
    }
    return container();
  }
  bool start_array(std::size_t) {
    if (depth_ == 2 && !in_metadata_ && key_ == "shape") {
      entry_.has_shape = true;
      return enter();
    }
    if (depth_ == 2 && !in_metadata_ && key_ == "data_offsets") {
      entry_.has_offsets = true;
      return enter();
    }
    return container();
  }
  bool end_object() { return leave(); }
  bool end_array() { return leave(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    error = std::string("the header is not valid JSON: ") + e.what();
    return false;
  }

 private:
  std::string where() const { return tensor_label(entry_.name); }
  bool refuse(std::string what) {
    error = std::move(what);
    return false;
  }
  bool enter() {
    ++depth_;
    return true;
  }
  bool leave() {
    --depth_;
    if (depth_ == 2) in_unknown_ = false;
    if (depth_ == 1 && in_metadata_) {
      in_metadata_ = false;
    } else if (depth_ == 1) {
      if (!entry_.has_dtype) return refuse(where() + " has no string dtype");
      if (!entry_.has_shape) return refuse(where() + " has no shape array");
      if (!entry_.has_offsets || entry_.n_offsets != 2) return refuse(where() + " has no [begin, end] data_offsets");
      entries.push_back(std::move(entry_));
    }
    return true;
  }

  // Where the schema's value at this place is refused, the message for it.
  std::string misplaced() const {
    if (depth_ == 0) return "the header is not a JSON object";
    if (depth_ == 1)
      return key_ == "__metadata__" ? "__metadata__ is not an object" : tensor_label(key_) + " is not an object";
    if (in_metadata_) return "__metadata__ value of \"" + key_ + "\" is not a string";
    if (key_ == "dtype") return where() + " has no string dtype";
    if (key_ == "shape") return depth_ == 2 ? where() + " has no shape array"
                                            : where() + " has a shape entry that is not a non-negative integer";
    if (key_ == "data_offsets")
      return depth_ == 2 ? where() + " has no [begin, end] data_offsets"
                         : where() + " has data_offsets that are not non-negative integers";
    return "";  // an unknown field's value
  }

  // A value that is neither an object nor an array; `v` when it is a
  // non-negative integer.
  bool scalar(const uint64_t* v) {
    if (in_unknown_) return true;
    if (depth_ == 3 && v && key_ == "shape") {
      const uint64_t s = *v;
      if (s > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (s != 0 && entry_.numel > data_size_ / s + 1))
        return refuse(where() + " has a shape larger than the file");
      entry_.numel *= s;
      entry_.shape.push_back(static_cast<int64_t>(s));
      return true;
    }
    if (depth_ == 3 && v && key_ == "data_offsets") {
      if (entry_.n_offsets == 2) return refuse(where() + " has no [begin, end] data_offsets");
      entry_.offsets[entry_.n_offsets++] = *v;
      return true;
    }
    std::string why = misplaced();
    return why.empty() ? true : refuse(std::move(why));
  }

  // An object or array where the schema has none: refused, but for one level
  // under a field the format does not define.
  bool container() {
    std::string why = misplaced();
    if (!why.empty()) return refuse(std::move(why));
    if (in_unknown_) return refuse(where() + " nests a value deeper than {name: {field: [values]}}");
    in_unknown_ = true;
    return enter();
  }

  uint64_t data_size_;
  Metadata& metadata_;
  int depth_ = 0;
  bool in_metadata_ = false, seen_metadata_ = false, in_unknown_ = false;
  std::string key_;
  Entry entry_;
};

SafetensorsFile parse(const char* bytes, size_t size, const std::string& name, std::shared_ptr<void> owner) {
  if (size < 8) fail(name, "the file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  if (n > kMaxHeader) fail(name, "the header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8)
    fail(name, "the header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
                   " bytes)");
  const char* data = bytes + 8 + n;
  const uint64_t data_size = size - 8 - n;
  SafetensorsFile out;
  HeaderReader reader(data_size, out.metadata);
  if (!json::sax_parse(bytes + 8, bytes + 8 + n, &reader)) fail(name, reader.error);
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;  // begin, end, name
  for (Entry& entry : reader.entries) {
    const std::string& key = entry.name;
    const std::string where = tensor_label(key);
    if (out.tensors.count(key)) fail(name, where + " appears twice in the header");
    DtypeInfo di{};
    const std::string& dts = entry.dtype;
    if (!dtype_info(dts, di)) fail(name, where + " has unsupported dtype \"" + dts + "\"");
    const Shape& shape = entry.shape;
    const uint64_t numel = entry.numel;  // bounded by the data section as the shape was read
    const uint64_t b = entry.offsets[0], e = entry.offsets[1];
    if (b > e || e > data_size)
      fail(name, where + " has data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                     "] outside the data section of " + std::to_string(data_size) + " bytes");
    if (numel > data_size || numel * di.size != e - b)
      fail(name, where + " has " + std::to_string(e - b) + " bytes but its shape and dtype need " +
                     std::to_string(numel * di.size));
    if (e > b) ranges.emplace_back(b, e, key);  // empty tensors hold no bytes to share
    const char* src = data + b;
    const int64_t cnt = static_cast<int64_t>(numel);
    Tensor t;
    auto alias_or_copy = [&](DType dt) {
      const size_t isz = itemsize(dt);
      if (owner && reinterpret_cast<uintptr_t>(src) % isz == 0) {
        auto im = std::make_shared<TensorImpl>();
        auto st = std::make_shared<Storage>();
        st->data = const_cast<char*>(src);
        st->nbytes = e - b;
        st->owner = owner;
        im->storage = st;
        im->shape = shape;
        Shape strides(shape.size());
        int64_t acc = 1;
        for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
          strides[i] = acc;
          acc *= std::max<int64_t>(shape[i], 1);
        }
        im->strides = strides;
        im->dtype = dt;
        t = Tensor(im);
      } else {
        t = Tensor::make(shape, dt);
        if (e > b) std::memcpy(t.raw_data(), src, e - b);
      }
    };
    if (dts == "F32") {
      alias_or_copy(kFloat32);
    } else if (dts == "F64") {
      alias_or_copy(kFloat64);
    } else if (dts == "I64") {
      alias_or_copy(kInt64);
    } else if (dts == "BF16") {
      alias_or_copy(kBFloat16);
    } else if (dts == "BOOL") {
      for (uint64_t i = 0; i < numel; ++i)
        if (static_cast<unsigned char>(src[i]) > 1) fail(name, where + " has a BOOL byte that is neither 0 nor 1");
      alias_or_copy(kBool);
    } else if (dts == "F16") {
      t = Tensor::make(shape, kFloat32);
      float* d = t.data<float>();
      for (int64_t i = 0; i < cnt; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        d[i] = half_to_float(h);
      }
    } else {
      t = Tensor::make(shape, kInt64);
      int64_t* d = t.data<int64_t>();
      if (dts == "I32") convert_copy<int32_t>(src, d, cnt);
      else if (dts == "I16") convert_copy<int16_t>(src, d, cnt);
      else if (dts == "I8") convert_copy<int8_t>(src, d, cnt);
      else convert_copy<uint8_t>(src, d, cnt);
    }
    out.tensors[key] = t;
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (std::get<0>(ranges[i]) < std::get<1>(ranges[i - 1]))
      fail(name, "tensors \"" + std::get<2>(ranges[i - 1]) + "\" and \"" + std::get<2>(ranges[i]) +
                     "\" have overlapping data_offsets");
  return out;
}

}  // namespace

SafetensorsFile parse_safetensors(const void* bytes, size_t size, const std::string& name) {
  return parse(static_cast<const char*>(bytes), size, name, nullptr);
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::string error;
  files::Mapped m = files::map_file(path, error);
  if (!error.empty()) fail(path, error);
  if (m.size == 0) fail(path, "the file is empty");
  return parse(m.data, m.size, path, m.owner);
}

TensorMap load_safetensors(const std::string& path) { return read_safetensors(path).tensors; }

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t off = 0;
  std::vector<Tensor> order;
  for (const auto& [key, t] : tensors) {
    ATTN_CHECK(key != "__metadata__", "save_safetensors: \"__metadata__\" is reserved and cannot name a tensor");
    ATTN_CHECK(t.defined(), "save_safetensors: tensor \"", key, "\" is undefined");
    const char* dt = nullptr;
    switch (t.dtype()) {
      case DType::Float32: dt = "F32"; break;
      case DType::Float64: dt = "F64"; break;
      case DType::Int64: dt = "I64"; break;
      case DType::Bool: dt = "BOOL"; break;
      case DType::BFloat16: dt = "BF16"; break;
    }
    const uint64_t nb = static_cast<uint64_t>(t.numel()) * t.itemsize();
    header[key] = {{"dtype", dt}, {"shape", t.shape()}, {"data_offsets", {off, off + nb}}};
    off += nb;
    order.push_back(t.contiguous());
  }
  std::string hs = header.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned
  std::vector<std::pair<const void*, size_t>> parts;
  unsigned char len[8];
  uint64_t hn = hs.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(hn >> (8 * i));
  parts.emplace_back(len, 8);
  parts.emplace_back(hs.data(), hs.size());
  for (const Tensor& t : order)
    if (t.numel() > 0) parts.emplace_back(t.raw_data(), static_cast<size_t>(t.numel()) * t.itemsize());
  files::write_atomic(path, parts, "save_safetensors");
}

}  // namespace attn::io
