// Procedural images for the vision applications: shapes drawn on a noisy
// background, in (3, size, size) float images with values in [0, 1].
#pragma once

#include <cstdint>
#include <random>

namespace attn::apps {

enum Shape : int { kDisc = 0, kSquare = 1, kTriangle = 2, kPlus = 3 };
constexpr int kNumShapes = 4;
extern const char* const kShapeNames[kNumShapes];
constexpr int kNumColours = 4;
extern const char* const kColourNames[kNumColours];
extern const float kColours[kNumColours][3];

// Fills img (3, size, size) with uniform noise in [0, level).
void noise_background(float* img, int64_t size, std::mt19937_64& rng, float level = 0.25f);
// Paints `shape` of radius r centred at (cx, cy) in colour rgb.
void draw_shape(float* img, int64_t size, int shape, float cx, float cy, float r, const float rgb[3]);

}  // namespace attn::apps
