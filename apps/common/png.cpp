#include "common/png.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <array>
#include <cstdio>
#include <map>

#include "attn/error.h"
#include "attn/ops.h"

namespace attn::apps {

namespace {

// The 5x7 font: per character, 7 rows of 5 bits (bit 4 = leftmost pixel).
// Letters are drawn as capitals.
const std::map<char, std::array<uint8_t, 7>>& font() {
  static const std::map<char, std::array<uint8_t, 7>> f = {
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'#', {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08}},
    {'-', {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'0', {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e}},
    {'1', {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e}},
    {'2', {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f}},
    {'3', {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e}},
    {'4', {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02}},
    {'5', {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e}},
    {'6', {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e}},
    {'7', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e}},
    {'9', {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c}},
    {':', {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
    {'=', {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'?', {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
    {'A', {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}},
    {'B', {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e}},
    {'C', {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e}},
    {'D', {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c}},
    {'E', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}},
    {'F', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10}},
    {'G', {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f}},
    {'H', {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}},
    {'I', {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f}},
    {'M', {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
    {'P', {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10}},
    {'Q', {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d}},
    {'R', {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11}},
    {'S', {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}},
    {'T', {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a}},
    {'X', {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04}},
    {'Z', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f}},
  };
  return f;
}

void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

void chunk(std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& data) {
  put32(out, static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put32(out, static_cast<uint32_t>(::crc32(0, out.data() + start, static_cast<uInt>(out.size() - start))));
}

}  // namespace

Image::Image(int64_t w, int64_t h, uint8_t fill) : width(w), height(h), rgb(static_cast<size_t>(w * h * 3), fill) {}

void Image::set(int64_t x, int64_t y, uint8_t r, uint8_t g, uint8_t b) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  uint8_t* p = rgb.data() + (y * width + x) * 3;
  p[0] = r, p[1] = g, p[2] = b;
}

void write_png(const std::string& path, const Image& img) {
  ATTN_CHECK(img.width > 0 && img.height > 0, "write_png: empty image");
  // Scanlines with filter byte 0, then a zlib stream of stored blocks.
  std::vector<uint8_t> raw;
  const size_t line = static_cast<size_t>(img.width) * 3;
  for (int64_t y = 0; y < img.height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), img.rgb.begin() + static_cast<std::ptrdiff_t>(y * line),
               img.rgb.begin() + static_cast<std::ptrdiff_t>((y + 1) * line));
  }
  // The zlib stream of the scanlines (deflate at level 9: a chart of
  // mostly white pixels shrinks ~50 times).
  uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
  std::vector<uint8_t> z(zlen);
  ATTN_CHECK(compress2(z.data(), &zlen, raw.data(), static_cast<uLong>(raw.size()), 9) == Z_OK,
             "write_png: compressing ", path, " failed");
  z.resize(zlen);
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put32(ihdr, static_cast<uint32_t>(img.width));
  put32(ihdr, static_cast<uint32_t>(img.height));
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB, no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", {});
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  ATTN_CHECK(f != nullptr, "write_png: cannot open ", tmp, " for writing");
  const bool ok = std::fwrite(png.data(), 1, png.size(), f) == png.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    ATTN_CHECK(false, "write_png: writing ", path, " failed");
  }
}

void draw_text(Image& img, int64_t x, int64_t y, const std::string& text, int scale) {
  const auto& f = font();
  for (size_t i = 0; i < text.size(); ++i) {
    char ch = text[i];
    if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
    auto it = f.find(ch);
    const std::array<uint8_t, 7> box = {0x1f, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1f};
    const auto& g = it == f.end() ? box : it->second;
    for (int r = 0; r < 7; ++r)
      for (int c = 0; c < 5; ++c)
        if (g[r] >> (4 - c) & 1)
          for (int dy = 0; dy < scale; ++dy)
            for (int dx = 0; dx < scale; ++dx)
              img.set(x + (static_cast<int64_t>(i) * 6 + c) * scale + dx, y + r * scale + dy, 0, 0, 0);
  }
}

void scale_colour(double v, uint8_t& r, uint8_t& g, uint8_t& b) {
  v = std::clamp(v, 0.0, 1.0);  // white (0) to dark blue (1)
  r = static_cast<uint8_t>(255 - v * 247), g = static_cast<uint8_t>(255 - v * 207), b = static_cast<uint8_t>(255 - v * 148);
}

void colour_scale(Image& img, int64_t x, int64_t y, int64_t height, double top_value) {
  for (int64_t k = 0; k < height; ++k) {
    uint8_t r, g, b;
    scale_colour(1.0 - static_cast<double>(k) / static_cast<double>(std::max<int64_t>(1, height - 1)), r, g, b);
    for (int64_t dx = 0; dx < 10; ++dx) img.set(x + dx, y + k, r, g, b);
  }
  for (int64_t k = 0; k < height; ++k) img.set(x - 1, y + k, 0, 0, 0), img.set(x + 10, y + k, 0, 0, 0);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.2g", top_value);
  draw_text(img, x + 14, y, buf);
  std::snprintf(buf, sizeof buf, "%.2g", top_value / 2);
  draw_text(img, x + 14, y + height / 2 - 3, buf);
  draw_text(img, x + 14, y + height - 7, "0");
}

void draw_line(Image& img, double x0, double y0, double x1, double y1, const uint8_t c[3], int64_t width) {
  const int64_t n = static_cast<int64_t>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
  for (int64_t i = 0; i <= n; ++i) {
    const double t = static_cast<double>(i) / static_cast<double>(n);
    const auto x = static_cast<int64_t>(std::lround(x0 + t * (x1 - x0)));
    const auto y = static_cast<int64_t>(std::lround(y0 + t * (y1 - y0)));
    for (int64_t dy = 0; dy < width; ++dy)
      for (int64_t dx = 0; dx < width; ++dx) img.set(x + dx - width / 2, y + dy - width / 2, c[0], c[1], c[2]);
  }
}

void draw_image(Image& img, int64_t x, int64_t y, const Tensor& image, int64_t px, const Tensor& weights) {
  ATTN_CHECK(image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3) && image.size(1) == image.size(2),
             "draw_image: image must be (1 or 3, S, S), got ", shape_str(image.shape()));
  Tensor pix = image.detach().to(kFloat32).contiguous();
  const int64_t C = pix.size(0), S = pix.size(1);
  Tensor w = weights.defined() ? weights.detach().to(kFloat32).contiguous() : Tensor();
  const int64_t g = w.defined() ? w.size(0) : 1;
  const float* p = pix.data<float>();
  for (int64_t yy = 0; yy < S * px; ++yy)
    for (int64_t xx = 0; xx < S * px; ++xx) {
      const int64_t sy = yy / px, sx = xx / px;
      float rgb[3];
      for (int64_t ch = 0; ch < 3; ++ch) rgb[ch] = std::clamp(p[(C == 1 ? 0 : ch) * S * S + sy * S + sx], 0.0f, 1.0f);
      if (!w.defined()) {
        img.set(x + xx, y + yy, static_cast<uint8_t>(255 * rgb[0]), static_cast<uint8_t>(255 * rgb[1]),
                static_cast<uint8_t>(255 * rgb[2]));
        continue;
      }
      uint8_t br, bg, bb;
      scale_colour(w.data<float>()[(sy * g / S) * g + sx * g / S], br, bg, bb);
      const float grey = (rgb[0] + rgb[1] + rgb[2]) / 3.0f;
      auto mix = [&](uint8_t c) { return static_cast<uint8_t>(0.65f * c + 0.35f * 255.0f * grey); };
      img.set(x + xx, y + yy, mix(br), mix(bg), mix(bb));
    }
}

Image heatmap(const Tensor& weights, const std::vector<std::string>& row_labels,
              const std::vector<std::string>& col_labels, const std::string& title, int64_t cell,
              const std::string& x_axis, const std::string& y_axis) {
  ATTN_CHECK(weights.dim() == 2, "heatmap: weights must be (rows, cols), got ", shape_str(weights.shape()));
  Tensor w = weights.detach().to(kFloat64).contiguous();
  const int64_t R = w.size(0), C = w.size(1);
  size_t lw = y_axis.size(), lh = 0;
  for (const auto& s : row_labels) lw = std::max(lw, s.size());
  for (const auto& s : col_labels) lh = std::max(lh, s.size());
  const int64_t left = 8 + static_cast<int64_t>(lw) * 6, top = 20 + static_cast<int64_t>(lh) * 8 + (y_axis.empty() ? 0 : 10);
  const int64_t grid_h = std::max<int64_t>(R * cell, 60);
  const int64_t width = std::max<int64_t>(left + C * cell + 60, 16 + static_cast<int64_t>(title.size()) * 6);
  Image img(width, top + grid_h + (x_axis.empty() ? 8 : 22));
  draw_text(img, 8, 6, title);
  if (!y_axis.empty()) draw_text(img, 8, top - 10, y_axis);
  if (!x_axis.empty()) draw_text(img, left, top + R * cell + 6, x_axis);
  const double* p = w.data<double>();
  for (int64_t r = 0; r < R; ++r) {
    if (r < static_cast<int64_t>(row_labels.size()))
      draw_text(img, left - 4 - static_cast<int64_t>(row_labels[r].size()) * 6, top + r * cell + (cell - 7) / 2,
                row_labels[r]);
    for (int64_t c = 0; c < C; ++c) {
      uint8_t R8, G8, B8;
      scale_colour(p[r * C + c], R8, G8, B8);
      for (int64_t y = 0; y < cell - 1; ++y)
        for (int64_t x = 0; x < cell - 1; ++x) img.set(left + c * cell + x, top + r * cell + y, R8, G8, B8);
    }
  }
  // Column labels written downwards, one character per line.
  for (int64_t c = 0; c < C && c < static_cast<int64_t>(col_labels.size()); ++c)
    for (size_t k = 0; k < col_labels[c].size(); ++k)
      draw_text(img, left + c * cell + (cell - 5) / 2, 18 + static_cast<int64_t>(k) * 8, col_labels[c].substr(k, 1));
  colour_scale(img, left + C * cell + 12, top, grid_h, 1.0);
  return img;
}

}  // namespace attn::apps
