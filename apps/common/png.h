// Attention heatmaps and charts as PNG files: no image library; the chunks
// are written here, the pixels deflated by zlib. Rows and columns can carry
// text labels (a built-in 5x7 pixel font: letters, digits and a few signs).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attn/tensor.h"

namespace attn::apps {

// RGB pixels, row-major, 3 bytes per pixel.
struct Image {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> rgb;
  Image(int64_t w, int64_t h, uint8_t fill = 255);
  void set(int64_t x, int64_t y, uint8_t r, uint8_t g, uint8_t b);
};

// Writes img atomically (a temporary file, then rename); attn::Error on failure.
void write_png(const std::string& path, const Image& img);

// A heatmap of weights (rows, cols) in [0, 1] (a white-to-dark-blue scale,
// drawn at the right), `cell` pixels per entry, row labels at the left and
// column labels above (either may be empty), a title line, and the axes'
// names (x under the grid, y above the row labels) when given.
Image heatmap(const Tensor& weights, const std::vector<std::string>& row_labels,
              const std::vector<std::string>& col_labels, const std::string& title, int64_t cell = 16,
              const std::string& x_axis = "", const std::string& y_axis = "");

// The heatmap's colours: v in [0, 1] to white .. dark blue.
void scale_colour(double v, uint8_t& r, uint8_t& g, uint8_t& b);
// A vertical colour scale, 10 pixels wide, `height` high, at (x, y), labelled
// 0 at the bottom and top_value at the top.
void colour_scale(Image& img, int64_t x, int64_t y, int64_t height, double top_value);

// An image (C, S, S) float in [0, 1] (C = 1 or 3) drawn at (x, y), px pixels
// per image pixel; with weights (g, g) in [0, 1] (g dividing S), the image is
// dimmed and the weights laid over it in the heatmap's colours.
void draw_image(Image& img, int64_t x, int64_t y, const Tensor& image, int64_t px, const Tensor& weights = {});

// A straight line from (x0, y0) to (x1, y1), `width` pixels thick, clipped
// to the image.
void draw_line(Image& img, double x0, double y0, double x1, double y1, const uint8_t rgb[3], int64_t width = 1);

// Draws text with the 5x7 font (scale 1: 6 pixels per character) at (x, y).
void draw_text(Image& img, int64_t x, int64_t y, const std::string& text, int scale = 1);

}  // namespace attn::apps
