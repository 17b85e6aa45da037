// Hugging Face model directories (internal to src/models): config.json read
// with the model's keys, the weights file found and read, and both written
// back as save_pretrained writes them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "attn/io.h"

namespace attn::models::hf {

using json = nlohmann::json;

// The text of DIR/config.json; attn::Error naming the directory when it is
// not one or has no config.json.
std::string read_config_text(const std::string& dir);
// config.json's text checked to be a JSON object whose model_type (when
// present) is `model_type`; attn::Error naming `name` otherwise.
json parse_config(const std::string& text, const std::string& name, const std::string& model_type);

// A value of the config: the key's value converted to T, or `fallback` when
// the key is absent or null; attn::Error naming the key when its type is wrong.
template <class T>
T value(const json& j, const std::string& key, T fallback, const std::string& name) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const std::exception&) {
    throw Error(name + ": \"" + key + "\" has the wrong type: " + j.at(key).dump());
  }
}

// The tensors of DIR/model.safetensors or DIR/pytorch_model.bin (a
// torch.save state_dict), and the file's path in `source`.
io::TensorMap read_weights(const std::string& dir, std::string& source);

// Hugging Face's activation by name: "gelu" (erf), "gelu_new" and
// "gelu_pytorch_tanh" (tanh), "relu" (the configs check the name first).
Tensor activation(const Tensor& x, const std::string& name);

// attn::Error "OP: WHAT must be in [0, n), got values in [lo, hi]" unless
// every entry of the int64 tensor t is in [0, n).
void check_index_range(const Tensor& t, int64_t n, const char* op, const char* what);

// DIR/config.json and DIR/model.safetensors (metadata format "pt"), each
// written atomically; the directory is created.
void save(const std::string& dir, const std::string& config_json, const io::TensorMap& tensors);

}  // namespace attn::models::hf
