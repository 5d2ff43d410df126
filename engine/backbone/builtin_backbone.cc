#include "engine/backbone/builtin_backbone.h"

#include <algorithm>
#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace primaps {
namespace {

constexpr int kLocalDim = 17;
constexpr float kPi = 3.14159265358979f;
// Relative weight of each local channel after standardization: colour
// (mean, spread) dominates, texture refines.
constexpr float kChannelWeight[kLocalDim] = {
    1.0f,  1.6f,  1.6f,                                      // Lab mean
    0.5f,  0.5f,  0.5f,                                      // Lab std
    0.35f, 0.35f, 0.35f, 0.35f, 0.35f, 0.35f, 0.35f, 0.35f,  // orientations
    0.5f,  0.4f,  0.4f,                                      // texture
};
constexpr float kContextWeight = 0.6f;

// The normalized image back to RGB in [0, 1].
cv::Mat DenormalizedRgb(const NormalizedImage& im) {
  const int h = im.height, w = im.width;
  cv::Mat rgb(h, w, CV_32FC3);
  const size_t plane = static_cast<size_t>(h) * w;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const size_t i = static_cast<size_t>(y) * w + x;
      cv::Vec3f& px = rgb.at<cv::Vec3f>(y, x);
      for (int c = 0; c < 3; ++c) {
        px[c] = std::min(std::max(im.data[c * plane + i] * kImageNetStd[c] +
                                      kImageNetMean[c],
                                  0.f),
                         1.f);
      }
    }
  }
  return rgb;
}

// Per 8x8 patch, kLocalDim channels (channel-major over the patch grid):
// the Lab mean and standard deviation (L in [0, 100], a and b about
// +-100), 8 bins of gradient orientation weighted by magnitude, and the
// log mean absolute Laplacian and x and y gradients of L.
std::vector<float> PatchStatistics(const cv::Mat& rgb) {
  const int p = kBuiltinPatchSize;
  const int gh = rgb.rows / p, gw = rgb.cols / p;
  cv::Mat lab, l_channel, dx, dy, lap;
  cv::cvtColor(rgb, lab, cv::COLOR_RGB2Lab);
  cv::extractChannel(lab, l_channel, 0);
  cv::Sobel(l_channel, dx, CV_32F, 1, 0, 3);
  cv::Sobel(l_channel, dy, CV_32F, 0, 1, 3);
  cv::Laplacian(l_channel, lap, CV_32F, 3);

  std::vector<float> local(static_cast<size_t>(kLocalDim) * gh * gw, 0.f);
  auto at = [&](int c, int gy, int gx) -> float& {
    return local[(static_cast<size_t>(c) * gh + gy) * gw + gx];
  };
  const float n = static_cast<float>(p * p);
  for (int gy = 0; gy < gh; ++gy) {
    for (int gx = 0; gx < gw; ++gx) {
      double sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0}, hist[8] = {0};
      double e_lap = 0, e_dx = 0, e_dy = 0, magnitude = 0;
      for (int y = gy * p; y < (gy + 1) * p; ++y) {
        for (int x = gx * p; x < (gx + 1) * p; ++x) {
          const cv::Vec3f v = lab.at<cv::Vec3f>(y, x);
          for (int c = 0; c < 3; ++c) {
            sum[c] += v[c];
            sq[c] += static_cast<double>(v[c]) * v[c];
          }
          const float gxv = dx.at<float>(y, x), gyv = dy.at<float>(y, x);
          const float m = std::sqrt(gxv * gxv + gyv * gyv);
          // Unsigned orientation in [0, pi) into 8 bins.
          float angle = std::atan2(gyv, gxv);
          if (angle < 0) angle += kPi;
          const int bin = std::min(7, static_cast<int>(angle / kPi * 8));
          hist[bin] += m;
          magnitude += m;
          e_lap += std::abs(lap.at<float>(y, x));
          e_dx += std::abs(gxv);
          e_dy += std::abs(gyv);
        }
      }
      for (int c = 0; c < 3; ++c) {
        const double mean = sum[c] / n;
        at(c, gy, gx) = static_cast<float>(mean);
        at(3 + c, gy, gx) = static_cast<float>(
            std::sqrt(std::max(sq[c] / n - mean * mean, 0.0)));
      }
      for (int b = 0; b < 8; ++b)
        at(6 + b, gy, gx) = static_cast<float>(hist[b] / (magnitude + 1e-3));
      at(14, gy, gx) = static_cast<float>(std::log1p(e_lap / n));
      at(15, gy, gx) = static_cast<float>(std::log1p(e_dx / n));
      at(16, gy, gx) = static_cast<float>(std::log1p(e_dy / n));
    }
  }
  return local;
}

// The first kLocalDim channels of `f`: each local channel standardized
// over the image, so that channels are comparable, and weighted.
void StandardizeLocalChannels(const std::vector<float>& local, FeatureMap* f) {
  const size_t cells = static_cast<size_t>(f->height) * f->width;
  for (int c = 0; c < kLocalDim; ++c) {
    double mean = 0, var = 0;
    for (size_t i = 0; i < cells; ++i) mean += local[c * cells + i];
    mean /= cells;
    for (size_t i = 0; i < cells; ++i)
      var += std::pow(local[c * cells + i] - mean, 2);
    const double inv = 1.0 / (std::sqrt(var / cells) + 1e-6);
    for (size_t i = 0; i < cells; ++i) {
      f->data[c * cells + i] =
          static_cast<float>((local[c * cells + i] - mean) * inv) *
          kChannelWeight[c];
    }
  }
}

// The last kLocalDim channels of `f`: the 3x3 neighbourhood mean of each
// local channel, weighted.
void AddContextChannels(FeatureMap* f) {
  const int gh = f->height, gw = f->width;
  const size_t cells = static_cast<size_t>(gh) * gw;
  for (int c = 0; c < kLocalDim; ++c) {
    for (int gy = 0; gy < gh; ++gy) {
      for (int gx = 0; gx < gw; ++gx) {
        float s = 0;
        int count = 0;
        for (int yy = std::max(0, gy - 1); yy <= std::min(gh - 1, gy + 1);
             ++yy) {
          for (int xx = std::max(0, gx - 1); xx <= std::min(gw - 1, gx + 1);
               ++xx) {
            s += f->data[c * cells + static_cast<size_t>(yy) * gw + xx];
            ++count;
          }
        }
        f->data[(kLocalDim + c) * cells + static_cast<size_t>(gy) * gw + gx] =
            kContextWeight * s / count;
      }
    }
  }
}

class BuiltinBackbone final : public Backbone {
 public:
  const std::string& id() const override { return id_; }
  int patch_size() const override { return kBuiltinPatchSize; }
  int feature_dim() const override { return kBuiltinFeatureDim; }

  absl::StatusOr<std::vector<FeatureMap>> Extract(
      const std::vector<const NormalizedImage*>& images,
      const StopCheck* stop = nullptr) override {
    std::vector<FeatureMap> out;
    for (size_t i = 0; i < images.size(); ++i) {
      RETURN_IF_ERROR(PollStop(stop, "the built-in backbone"));
      const NormalizedImage& im = *images[i];
      if (im.height < kBuiltinPatchSize || im.width < kBuiltinPatchSize ||
          im.data.size() != static_cast<size_t>(3) * im.height * im.width) {
        return absl::InvalidArgumentError(absl::StrCat(
            "batch image ", i, " is ", im.width, "x", im.height,
            "; the builtin backbone needs at least one 8x8 patch"));
      }
      out.push_back(Features(im));
    }
    return out;
  }

 private:
  static FeatureMap Features(const NormalizedImage& im) {
    const int gh = im.height / kBuiltinPatchSize,
              gw = im.width / kBuiltinPatchSize;
    const std::vector<float> local = PatchStatistics(DenormalizedRgb(im));
    FeatureMap f{
        kBuiltinFeatureDim, gh, gw,
        std::vector<float>(static_cast<size_t>(kBuiltinFeatureDim) * gh * gw)};
    StandardizeLocalChannels(local, &f);
    AddContextChannels(&f);
    return f;
  }

  const std::string id_ = "builtin";
};

}  // namespace

std::unique_ptr<Backbone> CreateBuiltinBackbone() {
  return std::make_unique<BuiltinBackbone>();
}

}  // namespace primaps
