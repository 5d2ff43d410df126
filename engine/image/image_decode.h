// Turns encoded bytes or raw pixels into an RgbImage, refusing oversized and
// corrupt input with a Status that says what was wrong.
#ifndef PRIMAPS_ENGINE_IMAGE_IMAGE_DECODE_H_
#define PRIMAPS_ENGINE_IMAGE_IMAGE_DECODE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/image/image.h"

namespace primaps {

struct DecodeOptions {
  // Largest width*height accepted; checked against the header before decoding.
  int64_t max_pixels = int64_t{8192} * 8192;
};

// Decodes PNG, JPEG, BMP, WebP or TIFF. Grayscale, RGBA (alpha dropped, as
// PIL's convert("RGB") does), 16-bit (top 8 bits kept) and palette images all
// become RGB8; JPEG EXIF orientation is applied.
absl::StatusOr<RgbImage> DecodeImage(absl::string_view bytes,
                                     const DecodeOptions& options = {});

// Wraps raw interleaved 8-bit pixels with 1 (gray), 3 (RGB) or 4 (RGBA)
// channels as RGB.
absl::StatusOr<RgbImage> ImageFromRawPixels(int64_t width, int64_t height,
                                            int64_t channels,
                                            absl::string_view pixels,
                                            const DecodeOptions& options = {});

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_IMAGE_IMAGE_DECODE_H_
