// Reads an encoded image's format and declared size from its header, without
// decoding pixels, so that oversized images are refused before any allocation.
#ifndef PRIMAPS_ENGINE_IMAGE_IMAGE_HEADER_H_
#define PRIMAPS_ENGINE_IMAGE_IMAGE_HEADER_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace primaps {

enum class ImageFormat { kPng, kJpeg, kBmp, kWebp, kTiff };

const char* ImageFormatName(ImageFormat format);

struct ImageHeader {
  ImageFormat format = ImageFormat::kPng;
  // Size as stored, before any EXIF rotation.
  int64_t width = 0;
  int64_t height = 0;
  // JPEG only: offset of the first start-of-scan marker; the compressed data
  // must end with an end-of-image marker after it (a truncation check that
  // libjpeg itself only reports as a warning).
  size_t jpeg_scan_offset = 0;
};

// Returns InvalidArgument for empty input, unknown formats and headers that are
// truncated or declare a zero size.
absl::StatusOr<ImageHeader> ReadImageHeader(absl::string_view bytes);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_IMAGE_IMAGE_HEADER_H_
