#include "engine/image/label_image.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace primaps {
namespace {

absl::StatusOr<std::string> EncodePng(const cv::Mat& mat) {
  std::vector<uint8_t> buffer;
  try {
    if (!cv::imencode(".png", mat, buffer)) {
      return absl::InternalError("PNG encoding failed");
    }
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("PNG encoding failed: ", e.what()));
  }
  return std::string(buffer.begin(), buffer.end());
}

}  // namespace

absl::StatusOr<std::string> EncodeLabelPng(const LabelMap& labels) {
  if (labels.width <= 0 || labels.height <= 0 ||
      labels.labels.size() !=
          static_cast<size_t>(labels.width) * labels.height) {
    return absl::InvalidArgumentError(
        absl::StrCat("label map of ", labels.width, "x", labels.height, " has ",
                     labels.labels.size(), " labels"));
  }
  const cv::Mat mat(labels.height, labels.width, CV_8UC1,
                    const_cast<uint8_t*>(labels.labels.data()));
  return EncodePng(mat);
}

absl::StatusOr<LabelMap> DecodeLabelPng(absl::string_view png) {
  cv::Mat mat;
  try {
    const cv::Mat buffer(1, static_cast<int>(png.size()), CV_8UC1,
                         const_cast<char*>(png.data()));
    mat = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("label PNG is corrupt: ", e.what()));
  }
  if (mat.empty())
    return absl::InvalidArgumentError("label PNG is corrupt or empty");
  if (mat.type() != CV_8UC1) {
    return absl::InvalidArgumentError(
        absl::StrCat("label PNG has ", mat.channels(), " channels of ",
                     mat.elemSize1() * 8, " bits, expected one 8-bit channel"));
  }
  LabelMap labels;
  labels.width = mat.cols;
  labels.height = mat.rows;
  labels.labels.assign(mat.data, mat.data + mat.total());
  return labels;
}

absl::StatusOr<std::string> EncodeRgbPng(const RgbImage& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() !=
          static_cast<size_t>(image.width) * image.height * 3) {
    return absl::InvalidArgumentError(
        "RGB image size and pixel count disagree");
  }
  const cv::Mat rgb(image.height, image.width, CV_8UC3,
                    const_cast<uint8_t*>(image.pixels.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return EncodePng(bgr);
}

std::array<uint8_t, 3> LabelColor(uint8_t label) {
  std::array<uint8_t, 3> color = {0, 0, 0};
  int id = label;
  for (int shift = 7; shift >= 0; --shift) {
    for (int c = 0; c < 3; ++c) color[c] |= ((id >> c) & 1) << shift;
    id >>= 3;
  }
  return color;
}

absl::StatusOr<RgbImage> RenderOverlay(const RgbImage& image,
                                       const LabelMap& labels, float alpha) {
  if (image.pixels.size() !=
          static_cast<size_t>(image.width) * image.height * 3 ||
      image.width <= 0 || image.height <= 0) {
    return absl::InvalidArgumentError(
        "overlay image size and pixel count disagree");
  }
  if (labels.labels.size() !=
          static_cast<size_t>(labels.width) * labels.height ||
      labels.width <= 0 || labels.height <= 0) {
    return absl::InvalidArgumentError(
        "overlay label map size and label count disagree");
  }
  if (!(alpha >= 0.f && alpha <= 1.f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("overlay alpha ", alpha, " is not in [0, 1]"));
  }
  RgbImage out = image;
  for (int y = 0; y < image.height; ++y) {
    const int ly = static_cast<int>(static_cast<int64_t>(y) * labels.height /
                                    image.height);
    for (int x = 0; x < image.width; ++x) {
      const int lx = static_cast<int>(static_cast<int64_t>(x) * labels.width /
                                      image.width);
      const uint8_t label =
          labels.labels[static_cast<size_t>(ly) * labels.width + lx];
      if (label == kIgnoreLabel) continue;
      const std::array<uint8_t, 3> color = LabelColor(label);
      uint8_t* px = &out.pixels[(static_cast<size_t>(y) * image.width + x) * 3];
      for (int c = 0; c < 3; ++c) {
        px[c] = static_cast<uint8_t>((1.f - alpha) * px[c] + alpha * color[c] +
                                     0.5f);
      }
    }
  }
  return out;
}

}  // namespace primaps
