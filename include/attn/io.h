// Safetensors files: read (mmap, every length, offset, shape and dtype
// checked) and write (atomically: a temporary file beside the target, then
// rename, so a crash never leaves a half-written file).
//
// Dtypes read: F32, F64, I64, BOOL as themselves; BF16 as bfloat16; F16 as
// float32; I32, I16, I8 and U8 as int64. Written: F32, F64, I64, BOOL, BF16.
#pragma once

#include <map>
#include <string>

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

}  // namespace attn::io
