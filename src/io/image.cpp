// Images in: stb_image (Debian's libstb) decodes, attn lays the pixels out
// channel-first in [0, 1].
#include <stb/stb_image.h>

#include "attn/error.h"
#include "attn/io.h"

namespace attn::io {

Tensor read_image(const std::string& path) {
  int w = 0, h = 0, channels = 0;
  unsigned char* pixels = stbi_load(path.c_str(), &w, &h, &channels, 3);
  if (!pixels) {
    const char* why = stbi_failure_reason();
    throw Error("read_image: " + path + ": cannot decode the image (" + (why ? why : "unknown reason") + ")");
  }
  Tensor out = Tensor::make({3, h, w}, kFloat32);
  float* d = out.data<float>();
  const int64_t plane = static_cast<int64_t>(h) * w;
  for (int64_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c) d[c * plane + i] = static_cast<float>(pixels[i * 3 + c]) / 255.0f;
  stbi_image_free(pixels);
  return out;
}

}  // namespace attn::io
