#include "engine/image/image_decode.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "engine/image/image_header.h"

namespace primaps {
namespace {

absl::Status CheckPixelLimit(const char* what, int64_t width, int64_t height,
                             const DecodeOptions& options) {
  // Compare by division: width * height itself can overflow int64 (each
  // side may be up to 2^32 - 1).
  if (width > 0 && height > 0 && width > options.max_pixels / height) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s says %dx%d (%.0f pixels), limit is %d pixels", what, width, height,
        static_cast<double>(width) * static_cast<double>(height),
        options.max_pixels));
  }
  return absl::OkStatus();
}

// libjpeg decodes a truncated stream with only a warning and grey rows, so
// insist on an end-of-image marker after the first scan.
absl::Status CheckJpegComplete(absl::string_view bytes, size_t scan_offset) {
  const size_t eoi = bytes.rfind("\xFF\xD9");
  if (eoi == absl::string_view::npos || eoi < scan_offset) {
    return absl::InvalidArgumentError(
        "JPEG data is truncated (no end-of-image marker after the scan)");
  }
  return absl::OkStatus();
}

RgbImage ToRgbImage(const cv::Mat& bgr) {
  RgbImage image;
  image.width = bgr.cols;
  image.height = bgr.rows;
  image.pixels.resize(static_cast<size_t>(bgr.cols) * bgr.rows * 3);
  cv::Mat rgb(bgr.rows, bgr.cols, CV_8UC3, image.pixels.data());
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return image;
}

}  // namespace

absl::StatusOr<RgbImage> DecodeImage(absl::string_view bytes,
                                     const DecodeOptions& options) {
  ASSIGN_OR_RETURN(const ImageHeader header, ReadImageHeader(bytes));
  const std::string what =
      absl::StrCat(ImageFormatName(header.format), " header");
  RETURN_IF_ERROR(
      CheckPixelLimit(what.c_str(), header.width, header.height, options));
  if (header.format == ImageFormat::kJpeg) {
    RETURN_IF_ERROR(CheckJpegComplete(bytes, header.jpeg_scan_offset));
  }
  cv::Mat decoded;
  try {
    // cv::imdecode does not modify its input; the const_cast only adapts the
    // pointer type of the Mat header that wraps it.
    const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8UC1,
                         const_cast<char*>(bytes.data()));
    // IMREAD_COLOR: 3-channel 8-bit BGR, EXIF orientation applied.
    decoded = cv::imdecode(buffer, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        ImageFormatName(header.format), " data is corrupt: ", e.what()));
  }
  if (decoded.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        ImageFormatName(header.format), " data is corrupt or truncated (",
        bytes.size(), " bytes, header says ", header.width, "x", header.height,
        ")"));
  }
  // A 90-degree EXIF rotation swaps the sides; any other mismatch means the
  // header lied about the size.
  const bool same =
      decoded.cols == header.width && decoded.rows == header.height;
  const bool swapped =
      decoded.cols == header.height && decoded.rows == header.width;
  if (!same && !swapped) {
    return absl::InvalidArgumentError(absl::StrCat(
        ImageFormatName(header.format), " header says ", header.width, "x",
        header.height, " but the data decodes to ", decoded.cols, "x",
        decoded.rows));
  }
  return ToRgbImage(decoded);
}

absl::StatusOr<RgbImage> ImageFromRawPixels(int64_t width, int64_t height,
                                            int64_t channels,
                                            absl::string_view pixels,
                                            const DecodeOptions& options) {
  if (width <= 0 || height <= 0 || width > (int64_t{1} << 31) ||
      height > (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "raw image size ", width, "x", height, " is not positive"));
  }
  RETURN_IF_ERROR(CheckPixelLimit("raw image size", width, height, options));
  if (channels != 1 && channels != 3 && channels != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "raw image has ", channels, " channels, expected 1, 3 or 4"));
  }
  const int64_t expected = width * height * channels;
  if (static_cast<int64_t>(pixels.size()) != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("raw image of ", width, "x", height, "x", channels,
                     " needs ", expected, " bytes, got ", pixels.size()));
  }
  RgbImage image;
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  image.pixels.resize(static_cast<size_t>(width * height * 3));
  const auto* src = reinterpret_cast<const uint8_t*>(pixels.data());
  for (int64_t i = 0; i < width * height; ++i) {
    for (int c = 0; c < 3; ++c) {
      image.pixels[3 * i + c] = src[i * channels + (channels == 1 ? 0 : c)];
    }
  }
  return image;
}

}  // namespace primaps
