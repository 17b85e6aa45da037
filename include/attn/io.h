// Safetensors files: read (mmap, every length, offset, shape and dtype
// checked) and write (atomically: a temporary file beside the target, then
// rename, so a crash never leaves a half-written file). PyTorch's own
// checkpoints (torch.save) read through a restricted unpickler that runs no
// code: see load_torch below.
//
// Dtypes read: F32, F64, I64, BOOL as themselves; BF16 as bfloat16; F16 as
// float32; I32, I16, I8 and U8 as int64. Written: F32, F64, I64, BOOL, BF16.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "attn/tensor.h"

namespace attn::io {

using TensorMap = std::map<std::string, Tensor>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  TensorMap tensors;
  Metadata metadata;  // the header's "__metadata__" (string to string)
};

// Throws attn::Error naming the file and what is wrong with it.
SafetensorsFile read_safetensors(const std::string& path);
TensorMap load_safetensors(const std::string& path);
// Parses a file already in memory (the bytes are copied as needed).
SafetensorsFile parse_safetensors(const void* bytes, size_t size, const std::string& name = "<memory>");

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

// ---- PyTorch checkpoints ------------------------------------------------------------
// Files written by torch.save in the zip format PyTorch has used since 1.6
// (`<name>/data.pkl`, `<name>/data/<key>`, `<name>/version`, optional
// `<name>/byteorder`), read with libzip: a state_dict (OrderedDict of
// tensors), a plain dict, or nested dicts and lists, whose tensors are named
// by their path ({"model": state_dict, "epoch": 3} gives "model.fc.weight";
// a list's items are numbered). Non-tensor leaves (numbers, strings, bools,
// None) come back as text in `values`. Storages float32, float64, bfloat16,
// int64 and bool keep their dtype; float16 becomes float32; int32, int16,
// int8 and uint8 become int64. Views (a storage offset, any strides, tensors
// sharing a storage, as tied weights do) come out with their values.
//
// The pickle is read by an unpickler that builds data, never objects: it
// accepts the globals a state_dict needs (torch._utils._rebuild_tensor_v2,
// _rebuild_parameter, collections.OrderedDict, the torch.*Storage types) and
// refuses every other one (os.system, builtins.eval, a model's class) with an
// attn::Error naming it, without calling anything. The legacy pre-1.6 format
// and pickled modules (torch.save(model)) are refused with a message that
// says how to save a state_dict instead. Every offset, size and count is
// checked against the archive.
struct TorchLoadOptions {
  // Only the tensors under this dotted path, named relative to it
  // ("model" for {"model": state_dict, ...}); empty: everything.
  TorchLoadOptions& select(std::string prefix) { select_ = std::move(prefix); return *this; }
  const std::string& select() const { return select_; }

 private:
  std::string select_;
};

struct TorchFile {
  TensorMap tensors;
  Metadata values;  // non-tensor leaves by path, as text ("epoch" -> "3")
};

TorchFile read_torch(const std::string& path, const TorchLoadOptions& options = {});
TensorMap load_torch(const std::string& path, const TorchLoadOptions& options = {});
TorchFile parse_torch(const void* bytes, size_t size, const std::string& name = "<memory>",
                      const TorchLoadOptions& options = {});

// An image file (PNG, JPEG, BMP, ... through stb_image) as float32 (3, H, W),
// RGB in [0, 1] (grey and palette images expanded, alpha dropped).
// attn::Error naming the file and stb's reason when it cannot be decoded.
Tensor read_image(const std::string& path);

// A checkpoint by its extension: .safetensors through load_safetensors;
// .pt, .pth, .bin (and .ckpt) through load_torch. Other names are tried as
// safetensors, then as a torch.save archive when they start like a zip file.
TensorMap load_tensors(const std::string& path);

// Writes `bytes` to `path` atomically (a temporary file beside it, then
// rename): readers see the old file or the new one, never a part.
void write_file(const std::string& path, std::string_view bytes);

}  // namespace attn::io
