#include "engine/image/label_image.h"

#include <algorithm>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

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

absl::StatusOr<RgbImage> AddLegend(
    const RgbImage& overlay, const LabelMap& labels,
    const std::function<std::string(uint8_t)>& name) {
  if (labels.width != overlay.width || labels.height != overlay.height ||
      labels.labels.size() !=
          static_cast<size_t>(labels.width) * labels.height ||
      overlay.pixels.size() != labels.labels.size() * 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "legend: a ", labels.width, "x", labels.height, " label map for a ",
        overlay.width, "x", overlay.height, " overlay"));
  }
  std::array<int64_t, 256> count{};
  for (uint8_t l : labels.labels) ++count[l];
  std::vector<int> present;
  for (int l = 0; l < 256; ++l) {
    if (count[l] > 0) present.push_back(l);
  }
  std::stable_sort(present.begin(), present.end(),
                   [&](int a, int b) { return count[a] > count[b]; });
  // Hershey text at a fixed size: the panel reads the same for a 1x1 image
  // and a 4000x3000 one.
  constexpr int kRow = 22, kWidth = 260, kSwatch = 14, kMaxRows = 40;
  const int rows = std::min<int>(present.size(), kMaxRows);
  const int height = std::max(overlay.height, (rows + 1) * kRow + 8);
  cv::Mat canvas(height, overlay.width + kWidth, CV_8UC3,
                 cv::Scalar(245, 245, 245));
  cv::Mat image(overlay.height, overlay.width, CV_8UC3,
                const_cast<uint8_t*>(overlay.pixels.data()));
  image.copyTo(canvas(cv::Rect(0, 0, overlay.width, overlay.height)));
  const double total = static_cast<double>(labels.labels.size());
  auto text = [&](const std::string& s, int y) {
    cv::putText(canvas, s, {overlay.width + 12 + kSwatch + 8, y + 15},
                cv::FONT_HERSHEY_SIMPLEX, 0.45, cv::Scalar(20, 20, 20), 1,
                cv::LINE_AA);
  };
  for (int i = 0; i < rows; ++i) {
    const int label = present[i];
    const int y = 6 + i * kRow;
    cv::Scalar colour(200, 200, 200);  // 255 (ignore) is not coloured
    if (label != kIgnoreLabel) {
      const std::array<uint8_t, 3> c = LabelColor(static_cast<uint8_t>(label));
      colour = cv::Scalar(c[0], c[1], c[2]);
    }
    cv::rectangle(canvas, cv::Rect(overlay.width + 12, y + 3, kSwatch, kSwatch),
                  colour, cv::FILLED);
    text(absl::StrFormat("%s  %.1f%%", name(static_cast<uint8_t>(label)),
                         100.0 * count[label] / total),
         y);
  }
  if (static_cast<int>(present.size()) > rows) {
    text(absl::StrCat("+", present.size() - rows, " more"), 6 + rows * kRow);
  }
  RgbImage out;
  out.width = canvas.cols;
  out.height = canvas.rows;
  out.pixels.assign(canvas.data, canvas.data + canvas.total() * 3);
  return out;
}

}  // namespace primaps
