#include "engine/image/preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/image/channel_maps.h"
#include "engine/image/resize_antialias.h"

namespace primaps {

ResizeGeometry ComputeResizeGeometry(int width, int height, int resize,
                                     CropMode crop) {
  // torchvision Resize(int): the short side becomes `resize`, the long side
  // int(resize * long / short) (truncated).
  const int short_side = std::min(height, width);
  const int long_side = std::max(height, width);
  const int new_long =
      static_cast<int>(static_cast<int64_t>(resize) * long_side / short_side);
  ResizeGeometry g;
  g.resized_height = height <= width ? resize : new_long;
  g.resized_width = height <= width ? new_long : resize;
  g.rows = g.resized_height;
  g.cols = g.resized_width;
  if (crop == CropMode::kCenter) {
    g.rows = g.cols = resize;
    // torchvision CenterCrop: int(round((size - crop) / 2)), Python's
    // round-half-to-even, which std::nearbyint gives in the default mode.
    g.top = static_cast<int>(std::nearbyint((g.resized_height - resize) / 2.0));
    g.left = static_cast<int>(std::nearbyint((g.resized_width - resize) / 2.0));
  }
  return g;
}

int64_t PatchTokens(int64_t width, int64_t height, int resize, CropMode crop,
                    int patch_size) {
  if (width < 1 || height < 1 || resize < 1 || patch_size < 1) return 0;
  int64_t rows = resize, cols = resize;
  if (crop == CropMode::kFull) {
    const int64_t short_side = std::min(height, width);
    const int64_t long_side = std::max(height, width);
    const int64_t new_long = resize * long_side / short_side;
    rows = height <= width ? resize : new_long;
    cols = height <= width ? new_long : resize;
  }
  return ((rows + patch_size - 1) / patch_size) *
         ((cols + patch_size - 1) / patch_size);
}

namespace {

// Source index of each destination index along one axis.
std::vector<int> NearestSources(int in_size, int out_size, LabelResize rule) {
  std::vector<int> src(out_size);
  if (rule == LabelResize::kTorchNearest) {
    // UpSample.h nearest_idx.
    const float scale = static_cast<float>(in_size) / out_size;
    for (int i = 0; i < out_size; ++i) {
      if (in_size == out_size) {
        src[i] = i;
      } else if (out_size == 2 * in_size) {
        src[i] = i >> 1;
      } else {
        src[i] = std::min(static_cast<int>(std::floor(i * scale)), in_size - 1);
      }
    }
  } else {
    // Pillow's ImagingScaleAffine: the source coordinate of pixel centres,
    // accumulated step by step.
    const double scale = static_cast<double>(in_size) / out_size;
    double coordinate = 0.5 * scale;
    for (int i = 0; i < out_size; ++i) {
      src[i] = std::min(static_cast<int>(coordinate), in_size - 1);
      coordinate += scale;
    }
  }
  return src;
}

}  // namespace

LabelMap ResizeAndCropLabels(const LabelMap& labels, int resize, CropMode crop,
                             LabelResize rule) {
  const ResizeGeometry g =
      ComputeResizeGeometry(labels.width, labels.height, resize, crop);
  const std::vector<int> sy =
      NearestSources(labels.height, g.resized_height, rule);
  const std::vector<int> sx =
      NearestSources(labels.width, g.resized_width, rule);
  LabelMap out{g.cols, g.rows,
               std::vector<uint8_t>(static_cast<size_t>(g.rows) * g.cols)};
  for (int y = 0; y < g.rows; ++y) {
    const uint8_t* row =
        &labels.labels[static_cast<size_t>(sy[g.top + y]) * labels.width];
    for (int x = 0; x < g.cols; ++x)
      out.labels[static_cast<size_t>(y) * g.cols + x] = row[sx[g.left + x]];
  }
  return out;
}

RgbImage ResizeAndCropAntialias(const RgbImage& image, int resize,
                                CropMode crop) {
  const ResizeGeometry g =
      ComputeResizeGeometry(image.width, image.height, resize, crop);
  const RgbImage resized =
      ResizeAntialias(image, g.resized_width, g.resized_height);
  RgbImage out{g.cols, g.rows,
               std::vector<uint8_t>(static_cast<size_t>(g.rows) * g.cols * 3)};
  for (int y = 0; y < g.rows; ++y) {
    const uint8_t* src =
        &resized.pixels[(static_cast<size_t>(g.top + y) * g.resized_width +
                         g.left) *
                        3];
    std::copy(src, src + static_cast<size_t>(g.cols) * 3,
              &out.pixels[static_cast<size_t>(y) * g.cols * 3]);
  }
  return out;
}

absl::StatusOr<NormalizedImage> Preprocess(const RgbImage& image,
                                           const PreprocessOptions& options) {
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() !=
          static_cast<size_t>(image.width) * image.height * 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("image of ", image.width, "x", image.height, " has ",
                     image.pixels.size(), " bytes of pixels"));
  }
  if (options.resize < 1 || options.resize > 8192) {
    return absl::InvalidArgumentError(
        absl::StrCat("resize is ", options.resize, ", must be in [1, 8192]"));
  }
  if (options.patch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("patch_size is ", options.patch_size, ", must be >= 1"));
  }
  const int h = image.height, w = image.width;
  const ResizeGeometry g =
      ComputeResizeGeometry(w, h, options.resize, options.crop);
  const int new_h = g.resized_height, new_w = g.resized_width;
  if (options.crop == CropMode::kFull &&
      static_cast<int64_t>(new_h) * new_w > options.max_output_pixels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a full crop of this ", w, "x", h, " image at resize ", options.resize,
        " would be ", new_w, "x", new_h, " pixels, limit is ",
        options.max_output_pixels, " (extreme aspect ratio; use crop=center)"));
  }
  const int rows = g.rows, cols = g.cols, top = g.top, left = g.left;

  std::vector<float> resized;
  if (options.filter == ResizeFilter::kAntialias) {
    // PIL Resize and CenterCrop on 8-bit pixels, then ToTensor.
    const RgbImage crop =
        ResizeAndCropAntialias(image, options.resize, options.crop);
    resized.resize(static_cast<size_t>(3) * rows * cols);
    for (int y = 0; y < rows; ++y) {
      for (int x = 0; x < cols; ++x) {
        for (int c = 0; c < 3; ++c) {
          resized[(static_cast<size_t>(c) * rows + y) * cols + x] =
              static_cast<float>(
                  crop.pixels[(static_cast<size_t>(y) * cols + x) * 3 + c]) /
              255.f;
        }
      }
    }
  } else {
    // ToTensor: float(x) / 255, channels first; then the tensor resize.
    const size_t plane = static_cast<size_t>(h) * w;
    std::vector<float> chw(3 * plane);
    for (size_t i = 0; i < plane; ++i) {
      for (int c = 0; c < 3; ++c) {
        chw[c * plane + i] =
            static_cast<float>(image.pixels[3 * i + c]) / 255.f;
      }
    }
    resized = ResizeBilinearWindow(chw.data(), 3, h, w, new_h, new_w, top, left,
                                   rows, cols);
  }

  NormalizedImage out;
  out.valid_height = rows;
  out.valid_width = cols;
  const int p = options.patch_size;
  out.height = options.crop == CropMode::kFull ? (rows + p - 1) / p * p : rows;
  out.width = options.crop == CropMode::kFull ? (cols + p - 1) / p * p : cols;
  // Padding is 0 after normalization, i.e. the mean colour.
  out.data.assign(static_cast<size_t>(3) * out.height * out.width, 0.f);
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < rows; ++y) {
      const float* src =
          resized.data() + (static_cast<size_t>(c) * rows + y) * cols;
      float* dst = out.data.data() +
                   (static_cast<size_t>(c) * out.height + y) * out.width;
      // torchvision Normalize: (x - mean) / std.
      for (int x = 0; x < cols; ++x)
        dst[x] = (src[x] - kImageNetMean[c]) / kImageNetStd[c];
    }
  }
  return out;
}

RgbImage DenormalizeToRgb(const NormalizedImage& image) {
  RgbImage rgb;
  rgb.width = image.width;
  rgb.height = image.height;
  const size_t plane = static_cast<size_t>(image.height) * image.width;
  rgb.pixels.resize(3 * plane);
  for (size_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) {
      const float v =
          (image.data[c * plane + i] * kImageNetStd[c] + kImageNetMean[c]) *
          255.f;
      rgb.pixels[3 * i + c] =
          static_cast<uint8_t>(std::min(std::max(v, 0.f), 255.f));
    }
  }
  return rgb;
}

}  // namespace primaps
