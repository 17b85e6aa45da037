// The attn command-line tool. Subcommands so far: inspect (list the tensors of
// a safetensors file). train, eval, bench and viz arrive with the modules and
// applications.
#include <CLI/CLI.hpp>
#include <attn/attn.h>

#include <cstdio>
#include <iostream>

namespace {

int inspect(const std::string& path) {
  attn::io::SafetensorsFile f = attn::io::read_safetensors(path);
  size_t bytes = 0;
  size_t width = 4;
  for (const auto& [name, t] : f.tensors) width = std::max(width, name.size());
  std::printf("%s: %zu tensors\n", path.c_str(), f.tensors.size());
  std::printf("  %-*s  %-8s  %s\n", static_cast<int>(width), "name", "dtype", "shape");
  for (const auto& [name, t] : f.tensors) {
    std::printf("  %-*s  %-8s  %s\n", static_cast<int>(width), name.c_str(), attn::dtype_name(t.dtype()),
                attn::shape_str(t.shape()).c_str());
    bytes += static_cast<size_t>(t.numel()) * t.itemsize();
  }
  std::printf("  total: %zu bytes of tensor data\n", bytes);
  if (!f.metadata.empty()) {
    std::printf("metadata:\n");
    for (const auto& [k, v] : f.metadata) std::printf("  %s: %s\n", k.c_str(), v.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"attn: attention mechanisms and the models built on them"};
  app.set_version_flag("--version", std::string("attn ") + attn::kVersion);
  app.require_subcommand(1);
  std::string file;
  auto* ins = app.add_subcommand("inspect", "List the tensors, dtypes, shapes and metadata of a safetensors file");
  ins->add_option("file", file, "the .safetensors file")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*ins) return inspect(file);
  } catch (const attn::Error& e) {
    std::fprintf(stderr, "attn: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attn: %s\n", e.what());
    return 1;
  }
  return 0;
}
