// Pillow's bilinear resize with antialiasing on 8-bit images
// (Image.resize(size, Image.BILINEAR), which torchvision's Resize runs on PIL
// images): the reference resizes its training images, PCA-init images and
// precomputed pseudo-label inputs this way.
#ifndef PRIMAPS_ENGINE_IMAGE_RESIZE_ANTIALIAS_H_
#define PRIMAPS_ENGINE_IMAGE_RESIZE_ANTIALIAS_H_

#include "engine/image/image.h"

namespace primaps {

// Resizes `image` to out_width x out_height with Pillow's arithmetic (the
// triangle filter widened by the downscale factor, coefficients in 22-bit
// fixed point, horizontal pass first, each pass rounded and clamped to 8
// bits), so the result equals Pillow's byte for byte. Sizes must be >= 1.
RgbImage ResizeAntialias(const RgbImage& image, int out_width, int out_height);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_IMAGE_RESIZE_ANTIALIAS_H_
