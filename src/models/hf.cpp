// Hugging Face model directories (see hf.h).
#include "models/hf.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "attn/error.h"
#include "attn/functional.h"

namespace attn::models::hf {

namespace fs = std::filesystem;

json parse_config(const std::string& text, const std::string& name, const std::string& model_type) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw Error(name + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw Error(name + ": expected a JSON object of configuration keys");
  if (j.contains("model_type")) {
    const json& m = j.at("model_type");
    const std::string t = m.is_string() ? m.get<std::string>() : m.dump();
    if (t != model_type)
      throw Error(name + ": model_type is \"" + t + "\", not \"" + model_type + "\"");
  }
  return j;
}

std::string read_config_text(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Error(dir + " is not a directory (expected a Hugging Face model directory)");
  std::ifstream f(fs::path(dir) / "config.json");
  if (!f) throw Error(dir + " has no config.json (expected a Hugging Face model directory)");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

io::TensorMap read_weights(const std::string& dir, std::string& source) {
  for (const char* name : {"model.safetensors", "pytorch_model.bin"}) {
    const fs::path p = fs::path(dir) / name;
    if (fs::exists(p)) {
      source = p.string();
      return io::load_tensors(source);
    }
  }
  throw Error(dir + " has no weights (model.safetensors or pytorch_model.bin); sharded checkpoints "
                    "(model-00001-of-N.safetensors) are not supported");
}

Tensor activation(const Tensor& x, const std::string& name) {
  if (name == "relu") return F::relu(x);
  return F::gelu(x, name == "gelu" ? "none" : "tanh");
}

void check_index_range(const Tensor& t, int64_t n, const char* op, const char* what) {
  const Tensor c = t.contiguous();
  const int64_t* p = c.data<int64_t>();
  int64_t lo = 0, hi = 0;
  for (int64_t i = 0; i < c.numel(); ++i) {
    lo = i ? std::min(lo, p[i]) : p[i];
    hi = i ? std::max(hi, p[i]) : p[i];
  }
  ATTN_CHECK(lo >= 0 && hi < n, op, ": ", what, " must be in [0, ", n, "), got values in [", lo, ", ", hi, "]");
}

void save(const std::string& dir, const std::string& config_json, const io::TensorMap& tensors) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir)) throw Error("save_pretrained: cannot create the directory " + dir);
  io::write_file((fs::path(dir) / "config.json").string(), config_json);
  io::save_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
}

}  // namespace attn::models::hf
