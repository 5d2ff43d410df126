#include "engine/image/resize_antialias.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace primaps {
namespace {

// Pillow's fixed-point precision for 8-bit images: 32 bits, less 8 for the
// pixel value and 2 for the sign and headroom.
constexpr int kPrecisionBits = 32 - 8 - 2;

// The taps of one output pixel along one axis: input indices
// [first, first + count) with fixed-point weights.
struct Taps {
  int first = 0;
  int count = 0;
};

struct AxisCoefficients {
  int ksize = 0;                 // weights per output pixel (padded)
  std::vector<Taps> taps;        // one per output pixel
  std::vector<int32_t> weights;  // taps.size() * ksize
};

// Pillow's precompute_coeffs (bilinear filter, support 1) followed by
// normalize_coeffs_8bpc, in the same double arithmetic.
AxisCoefficients Coefficients(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;
  AxisCoefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.taps.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double inverse_scale = 1.0 / filter_scale;
    // (int) truncates toward zero, as in C.
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double sum = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double t = (x + xmin - center + 0.5) * inverse_scale;
      if (t < 0.0) t = -t;
      const double w = t < 1.0 ? 1.0 - t : 0.0;  // the triangle filter
      k[x] = w;
      sum += w;
    }
    for (int x = 0; x < xmax; ++x) {
      if (sum != 0.0) k[x] /= sum;
    }
    int32_t* out = &c.weights[static_cast<size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      // The filter is never negative, so Pillow's rounding is +0.5 and
      // truncation.
      out[x] = static_cast<int32_t>(0.5 + k[x] * (1 << kPrecisionBits));
    }
    c.taps[xx] = {xmin, xmax};
  }
  return c;
}

inline uint8_t Clip8(int32_t v) {
  const int32_t shifted = v >> kPrecisionBits;  // arithmetic shift
  return static_cast<uint8_t>(std::min(255, std::max(0, shifted)));
}

// One pass along rows (horizontal) of rows [row0, row0 + rows) of `in`.
RgbImage Horizontal(const RgbImage& in, int out_width, int row0, int rows,
                    const AxisCoefficients& c) {
  RgbImage out{out_width, rows,
               std::vector<uint8_t>(static_cast<size_t>(out_width) * rows * 3)};
  for (int y = 0; y < rows; ++y) {
    const uint8_t* src =
        &in.pixels[static_cast<size_t>(row0 + y) * in.width * 3];
    uint8_t* dst = &out.pixels[static_cast<size_t>(y) * out_width * 3];
    for (int xx = 0; xx < out_width; ++xx) {
      const Taps& t = c.taps[xx];
      const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
      int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int x = 0; x < t.count; ++x) {
        const uint8_t* p = src + static_cast<size_t>(t.first + x) * 3;
        s0 += p[0] * k[x];
        s1 += p[1] * k[x];
        s2 += p[2] * k[x];
      }
      dst[3 * xx + 0] = Clip8(s0);
      dst[3 * xx + 1] = Clip8(s1);
      dst[3 * xx + 2] = Clip8(s2);
    }
  }
  return out;
}

// One pass along columns (vertical); `row_offset` is the first input row
// `in` holds (the horizontal pass computes only the rows this one reads).
RgbImage Vertical(const RgbImage& in, int out_height, int row_offset,
                  const AxisCoefficients& c) {
  const int w = in.width;
  RgbImage out{w, out_height,
               std::vector<uint8_t>(static_cast<size_t>(w) * out_height * 3)};
  // Whole rows at a time: each tap adds its row to an accumulator row, so
  // the input is read sequentially. Integer sums, so the order does not
  // change the result.
  std::vector<int32_t> sum(static_cast<size_t>(w) * 3);
  for (int yy = 0; yy < out_height; ++yy) {
    const Taps& t = c.taps[yy];
    const int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
    std::fill(sum.begin(), sum.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < t.count; ++y) {
      const uint8_t* row =
          &in.pixels[static_cast<size_t>(t.first - row_offset + y) * w * 3];
      const int32_t weight = k[y];
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += row[i] * weight;
    }
    uint8_t* dst = &out.pixels[static_cast<size_t>(yy) * w * 3];
    for (size_t i = 0; i < sum.size(); ++i) dst[i] = Clip8(sum[i]);
  }
  return out;
}

}  // namespace

RgbImage ResizeAntialias(const RgbImage& image, int out_width, int out_height) {
  const bool horizontal = out_width != image.width;
  const bool vertical = out_height != image.height;
  if (!horizontal && !vertical) return image;
  const AxisCoefficients cx = Coefficients(image.width, out_width);
  const AxisCoefficients cy = Coefficients(image.height, out_height);
  if (!horizontal) return Vertical(image, out_height, 0, cy);
  if (!vertical) return Horizontal(image, out_width, 0, image.height, cx);
  // As Pillow: the horizontal pass only over the rows the vertical pass
  // reads.
  const int first_row = cy.taps.front().first;
  const int end_row = cy.taps.back().first + cy.taps.back().count;
  const RgbImage temp =
      Horizontal(image, out_width, first_row, end_row - first_row, cx);
  return Vertical(temp, out_height, first_row, cy);
}

}  // namespace primaps
