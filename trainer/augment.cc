#include "trainer/augment.h"

#include <algorithm>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

namespace primaps {

StudentView StudentAugment(const RgbImage& image, std::mt19937* rng) {
  std::uniform_real_distribution<float> u(0.f, 1.f);
  cv::Mat rgb(image.height, image.width, CV_8UC3,
              const_cast<uint8_t*>(image.pixels.data()));
  cv::Mat out;
  const float sigma = 0.1f + 1.9f * u(*rng);
  cv::GaussianBlur(rgb, out, cv::Size(0, 0), sigma);
  const float choice = u(*rng);
  if (choice < 0.3f) {
    // Colour jitter, each factor in [0.9, 1.1] and hue +-0.1 of the circle.
    cv::Mat f;
    out.convertTo(f, CV_32FC3, 1.0 / 255);
    f *= 0.9f + 0.2f * u(*rng);  // brightness
    const cv::Scalar mean = cv::mean(f);
    const float gray_mean =
        static_cast<float>((mean[0] + mean[1] + mean[2]) / 3);
    const cv::Scalar gray = cv::Scalar::all(gray_mean);
    f = (f - gray) * (0.9f + 0.2f * u(*rng)) + gray;  // contrast
    cv::Mat hsv;
    f = cv::max(cv::min(f, 1.f), 0.f);
    cv::cvtColor(f, hsv, cv::COLOR_RGB2HSV);  // H in [0, 360)
    std::vector<cv::Mat> ch;
    cv::split(hsv, ch);
    ch[1] *= 0.9f + 0.2f * u(*rng);  // saturation
    ch[1] = cv::min(ch[1], 1.f);
    const float shift = 36.f * (2 * u(*rng) - 1);  // hue +-0.1 turns
    ch[0] += shift;
    cv::Mat wrap = ch[0] >= 360.f;
    cv::subtract(ch[0], 360.f, ch[0], wrap);
    wrap = ch[0] < 0.f;
    cv::add(ch[0], 360.f, ch[0], wrap);
    cv::merge(ch, hsv);
    cv::cvtColor(hsv, f, cv::COLOR_HSV2RGB);
    f.convertTo(out, CV_8UC3, 255.0);
  } else if (choice < 0.4f) {
    cv::Mat gray;
    cv::cvtColor(out, gray, cv::COLOR_RGB2GRAY);
    cv::cvtColor(gray, out, cv::COLOR_GRAY2RGB);
  }
  StudentView view;
  view.flipped = u(*rng) < 0.5f;
  if (view.flipped) cv::flip(out, out, 1);
  view.image =
      RgbImage{out.cols, out.rows,
               std::vector<uint8_t>(out.data, out.data + out.total() * 3)};
  return view;
}

LabelMap FlipHorizontal(const LabelMap& labels) {
  LabelMap out = labels;
  for (int y = 0; y < labels.height; ++y) {
    std::reverse(
        out.labels.begin() + static_cast<size_t>(y) * labels.width,
        out.labels.begin() + static_cast<size_t>(y + 1) * labels.width);
  }
  return out;
}

}  // namespace primaps
