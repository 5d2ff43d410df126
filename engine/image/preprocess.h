// Preprocessing exactly as DESIGN.md section 2: RGB in [0,1], short side
// resized with one of the reference's two filters, center crop or full image
// padded to a patch multiple, ImageNet normalization.
#ifndef PRIMAPS_ENGINE_IMAGE_PREPROCESS_H_
#define PRIMAPS_ENGINE_IMAGE_PREPROCESS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/image/image.h"

namespace primaps {

enum class CropMode {
  kCenter,  // resize x resize crop from the middle (torchvision CenterCrop).
  kFull,    // the whole resized image, zero-padded (after normalization) at the
            // bottom and right to a multiple of the patch size.
};

// How the short side is resized, as the reference does it per path.
enum class ResizeFilter {
  // torch's bilinear interpolation on the float tensor (align_corners=false,
  // no antialias): the reference's validation images.
  kBilinear,
  // Pillow's bilinear with antialiasing on the 8-bit image, then to float:
  // the reference's training, PCA-init and pseudo-label images.
  kAntialias,
};

struct PreprocessOptions {
  // Target length of the short side after resizing.
  int resize = 320;
  CropMode crop = CropMode::kCenter;
  // kFull pads each side up to a multiple of this.
  int patch_size = 8;
  // kFull keeps the whole image, so an extreme aspect ratio (1x2000 at
  // resize 320 is 320x640000) would be huge: refuse outputs above this.
  int64_t max_output_pixels = int64_t{4096} * 4096;
  ResizeFilter filter = ResizeFilter::kBilinear;
};

inline constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
inline constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

// A normalized image, channels-first (data.size() == 3*height*width).
struct NormalizedImage {
  int height = 0;
  int width = 0;
  // The part of the tensor that holds image content; the rest is padding.
  int valid_height = 0;
  int valid_width = 0;
  std::vector<float> data;
};

absl::StatusOr<NormalizedImage> Preprocess(const RgbImage& image,
                                           const PreprocessOptions& options);

// Where Preprocess's pixels come from: the resized size (torchvision
// Resize(int): short side `resize`, long side truncated) and the window kept
// from it (the center crop, or all of it).
struct ResizeGeometry {
  int resized_width = 0;
  int resized_height = 0;
  int top = 0;
  int left = 0;
  int rows = 0;
  int cols = 0;
};
ResizeGeometry ComputeResizeGeometry(int width, int height, int resize,
                                     CropMode crop);

// Patch tokens of a width x height image at `resize` and `crop`: each side
// of the processed image divided by the patch size, rounded up (a full crop
// is padded up). In 64 bits: extreme aspect ratios overflow an int.
int64_t PatchTokens(int64_t width, int64_t height, int resize, CropMode crop,
                    int patch_size);

// How label maps are resized (nearest neighbour, as the reference does per
// path).
enum class LabelResize {
  // torch's interpolate "nearest": src = floor(dst * in / out), the scale in
  // float. The reference's validation labels.
  kTorchNearest,
  // Pillow's NEAREST: src = int((dst + 0.5) * in / out), accumulated in
  // double as Pillow does. The reference's training and precomputed labels.
  kPillowNearest,
};

// A label map through the geometry of Preprocess (resize the short side to
// `resize`, then the crop), resized with `rule`.
LabelMap ResizeAndCropLabels(const LabelMap& labels, int resize, CropMode crop,
                             LabelResize rule);

// The 8-bit pixels the antialias path normalizes: Pillow's resize and the
// crop, before ToTensor. Sending these to a server at the same resize gives
// exactly Preprocess's kAntialias input (the resize is then the identity).
RgbImage ResizeAndCropAntialias(const RgbImage& image, int resize,
                                CropMode crop);

// The de-normalized 8-bit image the dense CRF sees: (x*std+mean)*255,
// clamped to [0,255] and truncated, as DESIGN.md's CRF section specifies.
RgbImage DenormalizeToRgb(const NormalizedImage& image);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_IMAGE_PREPROCESS_H_
