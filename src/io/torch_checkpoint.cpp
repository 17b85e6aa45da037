// PyTorch checkpoints (torch.save's zip format, PyTorch >= 1.6): the archive
// through libzip (stored entries as torch writes them, deflated ones too,
// CRCs and the central directory checked), data.pkl through the restricted
// unpickler of pickle.h, then each tensor rebuilt from its storage with every
// offset, size and stride checked against the storage's bytes.
//
// libzip rather than a hand-written reader: Debian packages it, it handles
// zip64 and compressed entries (a checkpoint re-zipped by another tool), and
// it checks the archive's consistency; attn adds the bounds it cannot know
// (an entry's size against the storage the pickle declares).
#include <zip.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "attn/error.h"
#include "attn/io.h"
#include "io/files.h"
#include "io/pickle.h"

namespace attn::io {

namespace {

using pickle::Kind;
using pickle::Value;

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw Error("load_torch: " + name + ": " + what);
}

// A storage type's element: its size in the archive and the attn dtype it becomes.
struct Element {
  size_t size;
  DType dtype;
};
Element element_of(const std::string& type) {
  if (type == "FloatStorage") return {4, kFloat32};
  if (type == "DoubleStorage") return {8, kFloat64};
  if (type == "HalfStorage") return {2, kFloat32};
  if (type == "BFloat16Storage") return {2, kBFloat16};
  if (type == "LongStorage") return {8, kInt64};
  if (type == "IntStorage") return {4, kInt64};
  if (type == "ShortStorage") return {2, kInt64};
  if (type == "CharStorage") return {1, kInt64};
  if (type == "BoolStorage") return {1, kBool};
  return {1, kInt64};  // ByteStorage, UntypedStorage: uint8
}

class Archive {
 public:
  Archive(const char* data, size_t size, const std::string& name) : name_(name), file_size_(size) {
    zip_error_t err;
    zip_error_init(&err);
    zip_source_t* src = zip_source_buffer_create(data, size, 0, &err);
    if (!src) fail(name, std::string("cannot read the archive: ") + zip_error_strerror(&err));
    z_ = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (!z_) {
      zip_source_free(src);
      const std::string why = zip_error_strerror(&err);
      zip_error_fini(&err);
      fail(name, "not a readable zip archive (" + why + ")");
    }
    zip_error_fini(&err);
    const zip_int64_t n = zip_get_num_entries(z_, 0);
    for (zip_int64_t i = 0; i < n; ++i) {
      const char* entry = zip_get_name(z_, static_cast<zip_uint64_t>(i), 0);
      if (entry && !index_.emplace(entry, i).second) fail(name, std::string("the archive holds \"") + entry + "\" twice");
    }
  }
  ~Archive() {
    if (z_) zip_discard(z_);
  }
  Archive(const Archive&) = delete;
  Archive& operator=(const Archive&) = delete;

  const std::map<std::string, zip_int64_t>& entries() const { return index_; }
  bool has(const std::string& entry) const { return index_.count(entry) > 0; }

  // The whole entry. Its declared size is checked against what the file can
  // hold (a stored entry is at most the file; deflate expands at most 1032x)
  // before anything is allocated, and the bytes read must match it.
  std::shared_ptr<Storage> read(const std::string& entry) const {
    auto it = index_.find(entry);
    if (it == index_.end()) fail(name_, "the archive has no entry \"" + entry + "\"");
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z_, static_cast<zip_uint64_t>(it->second), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) ||
        !(st.valid & ZIP_STAT_COMP_SIZE))
      fail(name_, "cannot read the size of \"" + entry + "\"");
    if (st.comp_size > file_size_ || st.size > 1032 * st.comp_size + 1024)
      fail(name_, "entry \"" + entry + "\" declares " + std::to_string(st.size) + " bytes, more than a file of " +
                      std::to_string(file_size_) + " bytes can hold");
    auto storage = Storage::allocate(static_cast<size_t>(st.size));
    zip_file_t* f = zip_fopen_index(z_, static_cast<zip_uint64_t>(it->second), 0);
    if (!f) fail(name_, "cannot open entry \"" + entry + "\": " + zip_strerror(z_));
    zip_uint64_t got = 0;
    char* dst = static_cast<char*>(storage->data);
    while (got < st.size) {
      const zip_int64_t r = zip_fread(f, dst + got, st.size - got);
      if (r <= 0) {
        const std::string why = r < 0 ? zip_file_strerror(f) : "it ends early";
        zip_fclose(f);
        fail(name_, "cannot read entry \"" + entry + "\": " + why);
      }
      got += static_cast<zip_uint64_t>(r);
    }
    char extra;
    const zip_int64_t more = zip_fread(f, &extra, 1);  // also checks the CRC at the end
    const std::string why = more < 0 ? zip_file_strerror(f) : "";
    zip_fclose(f);
    if (more != 0)
      fail(name_, "entry \"" + entry + "\" " + (more < 0 ? "is corrupt: " + why : "is longer than its declared size"));
    return storage;
  }

 private:
  std::string name_;
  size_t file_size_;
  zip_t* z_ = nullptr;
  std::map<std::string, zip_int64_t> index_;
};

// The archive's top folder: the one whose data.pkl the archive holds.
std::string archive_prefix(const Archive& a, const std::string& name) {
  std::string prefix;
  int found = 0;
  for (const auto& [entry, i] : a.entries()) {
    const size_t slash = entry.find('/');
    if (slash != std::string::npos && entry.compare(slash, std::string::npos, "/data.pkl") == 0) {
      prefix = entry.substr(0, slash + 1);
      ++found;
    }
  }
  if (found == 0) fail(name, "a zip archive without a data.pkl: not a file written by torch.save");
  if (found > 1) fail(name, "the archive holds " + std::to_string(found) + " data.pkl files");
  return prefix;
}

class Rebuilder {
 public:
  Rebuilder(const Archive& a, const pickle::Result& p, std::string prefix, bool big_endian, const std::string& name)
      : a_(a), p_(p), prefix_(std::move(prefix)), big_(big_endian), name_(name) {}

  TorchFile flatten() {
    const Value& root = p_.arena.at(static_cast<size_t>(p_.root));
    if (root.kind != Kind::Dict) fail(name_, "the checkpoint is not a dict of tensors (a state_dict)");
    budget_ = 4 * static_cast<int64_t>(p_.arena.size()) + 128;
    walk(p_.root, "", 0);
    return std::move(out_);
  }

 private:
  const Value& at(int64_t i) const { return p_.arena.at(static_cast<size_t>(i)); }

  void put(const std::string& path, std::function<void()> store) {
    if (out_.tensors.count(path) || out_.values.count(path)) fail(name_, "two entries are both named \"" + path + "\"");
    store();
  }

  void walk(int64_t i, const std::string& path, int depth) {
    if (--budget_ < 0) fail(name_, "the pickle's containers refer to each other far more than a state_dict's do");
    if (depth > 64) fail(name_, "dicts and lists nested deeper than 64 levels");
    const Value& v = at(i);
    auto child = [&](const std::string& k) { return path.empty() ? k : path + "." + k; };
    switch (v.kind) {
      case Kind::Dict:
        for (size_t j = 0; j + 1 < v.items.size(); j += 2) {
          const Value& k = at(v.items[j]);
          std::string key;
          if (k.kind == Kind::String) key = k.s;
          else if (k.kind == Kind::Int) key = std::to_string(k.i);
          else fail(name_, "a dict key under \"" + path + "\" is neither a string nor an integer");
          walk(v.items[j + 1], child(key), depth + 1);
        }
        return;
      case Kind::List:
      case Kind::Tuple:
        for (size_t j = 0; j < v.items.size(); ++j) walk(v.items[j], child(std::to_string(j)), depth + 1);
        return;
      case Kind::Tensor: {
        Tensor t = tensor(v, path);
        put(path, [&] { out_.tensors[path] = t; });
        return;
      }
      case Kind::Int: put(path, [&] { out_.values[path] = std::to_string(v.i); }); return;
      case Kind::Bool: put(path, [&] { out_.values[path] = v.i ? "True" : "False"; }); return;
      case Kind::None: put(path, [&] { out_.values[path] = "None"; }); return;
      case Kind::String: put(path, [&] { out_.values[path] = v.s; }); return;
      case Kind::Float: {
        char buf[32];  // the shortest of 15 or 17 digits that reads back as the same double
        std::snprintf(buf, sizeof buf, "%.15g", v.f);
        if (std::strtod(buf, nullptr) != v.f) std::snprintf(buf, sizeof buf, "%.17g", v.f);
        put(path, [&] { out_.values[path] = buf; });
        return;
      }
      default: return;  // bytes, raw storages, globals: nothing a module loads
    }
  }

  // The storage behind key, converted to attn's dtype once (tied weights share it).
  std::pair<std::shared_ptr<Storage>, DType> storage(const Value& s) {
    auto it = storages_.find(s.key);
    if (it != storages_.end()) {
      if (it->second.type != s.s) fail(name_, "storage " + s.key + " is read as two types");
      return {it->second.data, it->second.dtype};
    }
    const Element el = element_of(s.s);
    const uint64_t numel = static_cast<uint64_t>(s.i);
    std::shared_ptr<Storage> raw = a_.read(prefix_ + "data/" + s.key);
    if (numel > raw->nbytes || numel * el.size != raw->nbytes)
      fail(name_, "storage " + s.key + " (" + s.s + ") holds " + std::to_string(raw->nbytes) + " bytes but the pickle "
                      "declares " + std::to_string(numel) + " elements of " + std::to_string(el.size));
    char* bytes = static_cast<char*>(raw->data);
    if (big_ && el.size > 1)
      for (uint64_t e = 0; e < numel; ++e) std::reverse(bytes + e * el.size, bytes + (e + 1) * el.size);
    std::shared_ptr<Storage> out = raw;
    const int64_t n = static_cast<int64_t>(numel);
    if (s.s == "HalfStorage") {
      out = Storage::allocate(numel * 4);
      float* d = static_cast<float*>(out->data);
      for (int64_t e = 0; e < n; ++e) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * e, 2);
        d[e] = files::half_to_float(h);
      }
    } else if (el.dtype == kInt64 && el.size != 8) {
      out = Storage::allocate(numel * 8);
      int64_t* d = static_cast<int64_t*>(out->data);
      if (s.s == "IntStorage") files::convert_copy<int32_t>(bytes, d, n);
      else if (s.s == "ShortStorage") files::convert_copy<int16_t>(bytes, d, n);
      else if (s.s == "CharStorage") files::convert_copy<int8_t>(bytes, d, n);
      else files::convert_copy<uint8_t>(bytes, d, n);
    } else if (el.dtype == kBool) {
      for (uint64_t e = 0; e < numel; ++e)
        if (static_cast<unsigned char>(bytes[e]) > 1) fail(name_, "storage " + s.key + " has a bool byte that is neither 0 nor 1");
    }
    storages_[s.key] = {s.s, out, el.dtype};
    return {out, el.dtype};
  }

  Tensor tensor(const Value& v, const std::string& path) {
    const Value& s = at(v.items.at(0));
    const std::string where = "tensor \"" + path + "\"";
    const int64_t numel_storage = s.i;
    // Every element the view can reach lies in the storage.
    if (v.i < 0) fail(name_, where + " has a negative storage offset");
    int64_t numel = 1, last = v.i;
    for (size_t d = 0; d < v.size.size(); ++d) {
      if (v.size[d] < 0 || v.stride[d] < 0) fail(name_, where + " has a negative size or stride");
      if (v.size[d] > 0 && numel > std::numeric_limits<int64_t>::max() / v.size[d])
        fail(name_, where + " has more elements than int64 counts");
      numel *= v.size[d];
    }
    if (numel > 0) {
      for (size_t d = 0; d < v.size.size(); ++d) {
        const int64_t span = v.size[d] - 1;
        if (v.stride[d] > 0 && span > (std::numeric_limits<int64_t>::max() - last) / v.stride[d])
          fail(name_, where + " reaches past any storage");
        last += span * v.stride[d];
      }
      if (last >= numel_storage)
        fail(name_, where + " reaches element " + std::to_string(last) + " of storage " + s.key + ", which has " +
                        std::to_string(numel_storage));
    }
    auto [data, dtype] = storage(s);
    auto im = std::make_shared<TensorImpl>();
    im->storage = data;
    im->offset = v.i;
    im->shape = v.size;
    im->strides = v.stride;
    im->dtype = dtype;
    return Tensor(im).contiguous();
  }

  struct Converted {
    std::string type;
    std::shared_ptr<Storage> data;
    DType dtype;
  };
  const Archive& a_;
  const pickle::Result& p_;
  std::string prefix_;
  bool big_;
  std::string name_;
  int64_t budget_ = 0;
  std::map<std::string, Converted> storages_;
  TorchFile out_;
};

TorchFile select(TorchFile f, const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return f;
  TorchFile out;
  const std::string p = prefix + ".";
  for (auto& [k, t] : f.tensors)
    if (k.rfind(p, 0) == 0) out.tensors[k.substr(p.size())] = t;
  for (auto& [k, v] : f.values)
    if (k.rfind(p, 0) == 0) out.values[k.substr(p.size())] = v;
  if (out.tensors.empty()) {
    std::set<std::string> top;
    for (auto& [k, t] : f.tensors) top.insert(k.substr(0, k.find('.')));
    std::string list;
    for (const auto& k : top) list += (list.empty() ? "" : ", ") + k;
    fail(name, "no tensors under \"" + prefix + "\"; the tensors' top-level names are: " +
                   (list.empty() ? "(none)" : list));
  }
  return out;
}

}  // namespace

TorchFile parse_torch(const void* bytes, size_t size, const std::string& name, const TorchLoadOptions& options) {
  const unsigned char* b = static_cast<const unsigned char*>(bytes);
  if (size == 0) fail(name, "the file is empty");
  if (size >= 2 && b[0] == 0x80 && b[1] <= 5)
    fail(name, "a checkpoint in PyTorch's legacy (pre-1.6) format; load it in PyTorch and save it again with "
               "torch.save(state_dict, path), which writes the zip format (or export it with safetensors)");
  if (size < 4 || b[0] != 'P' || b[1] != 'K') fail(name, "not a zip archive, so not a file written by torch.save");
  Archive a(static_cast<const char*>(bytes), size, name);
  const std::string prefix = archive_prefix(a, name);
  bool big = false;
  if (a.has(prefix + "byteorder")) {
    std::shared_ptr<Storage> bo = a.read(prefix + "byteorder");
    const std::string order(static_cast<const char*>(bo->data), bo->nbytes);
    if (order != "little" && order != "big") fail(name, "byteorder is \"" + order + "\", neither little nor big");
    big = order == "big";
  }
  std::shared_ptr<Storage> pkl = a.read(prefix + "data.pkl");
  const pickle::Result p =
      pickle::parse(static_cast<const unsigned char*>(pkl->data), pkl->nbytes, name);
  TorchFile f = Rebuilder(a, p, prefix, big, name).flatten();
  return select(std::move(f), options.select(), name);
}

TorchFile read_torch(const std::string& path, const TorchLoadOptions& options) {
  std::string error;
  files::Mapped m = files::map_file(path, error);
  if (!error.empty()) fail(path, error);
  return parse_torch(m.data, m.size, path, options);
}

TensorMap load_torch(const std::string& path, const TorchLoadOptions& options) {
  return read_torch(path, options).tensors;
}

TensorMap load_tensors(const std::string& path) {
  auto ends = [&](const char* ext) {
    const std::string e(ext);
    return path.size() >= e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0;
  };
  if (ends(".pt") || ends(".pth") || ends(".bin") || ends(".ckpt")) return load_torch(path);
  if (ends(".safetensors")) return load_safetensors(path);
  std::string error;
  files::Mapped m = files::map_file(path, error);
  if (error.empty() && m.size >= 2 && m.data[0] == 'P' && m.data[1] == 'K')
    return parse_torch(m.data, m.size, path).tensors;
  return load_safetensors(path);
}

}  // namespace attn::io
