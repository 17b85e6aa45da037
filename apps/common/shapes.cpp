#include "common/shapes.h"

#include <cmath>

namespace attn::apps {

const char* const kShapeNames[kNumShapes] = {"disc", "square", "triangle", "plus"};
const char* const kColourNames[kNumColours] = {"red", "green", "blue", "yellow"};
const float kColours[kNumColours][3] = {{0.9f, 0.1f, 0.1f}, {0.1f, 0.8f, 0.2f}, {0.15f, 0.3f, 0.95f}, {0.95f, 0.9f, 0.1f}};

void noise_background(float* img, int64_t size, std::mt19937_64& rng, float level) {
  std::uniform_real_distribution<float> u(0.0f, level);
  for (int64_t i = 0; i < 3 * size * size; ++i) img[i] = u(rng);
}

void draw_shape(float* img, int64_t size, int shape, float cx, float cy, float r, const float rgb[3]) {
  for (int64_t y = 0; y < size; ++y)
    for (int64_t x = 0; x < size; ++x) {
      const float dx = static_cast<float>(x) + 0.5f - cx, dy = static_cast<float>(y) + 0.5f - cy;
      bool in = false;
      switch (shape) {
        case kDisc: in = dx * dx + dy * dy <= r * r; break;
        case kSquare: in = std::abs(dx) <= 0.8f * r && std::abs(dy) <= 0.8f * r; break;
        case kTriangle: in = dy >= -r && dy <= r && std::abs(dx) <= (dy + r) * 0.5f; break;
        default:
          in = (std::abs(dx) <= r * 0.3f && std::abs(dy) <= r) || (std::abs(dy) <= r * 0.3f && std::abs(dx) <= r);
      }
      if (in)
        for (int c = 0; c < 3; ++c) img[(c * size + y) * size + x] = rgb[c];
    }
}

}  // namespace attn::apps
