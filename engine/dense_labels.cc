#include "engine/dense_labels.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/image/channel_maps.h"

namespace primaps {
namespace {

// The top-left rows x cols of each channels x height x width plane.
std::vector<float> TopLeftWindow(const std::vector<float>& values, int channels,
                                 int height, int width, int rows, int cols) {
  std::vector<float> out(static_cast<size_t>(channels) * rows * cols);
  for (int c = 0; c < channels; ++c) {
    for (int y = 0; y < rows; ++y) {
      const float* src =
          values.data() + (static_cast<size_t>(c) * height + y) * width;
      std::copy(src, src + cols,
                out.data() + (static_cast<size_t>(c) * rows + y) * cols);
    }
  }
  return out;
}

absl::Status CheckTarget(const OutputTarget& target,
                         const NormalizedImage& processed, bool crf) {
  if (target.size == OutputSize::kProcessed) return absl::OkStatus();
  if (processed.valid_height < 1 || processed.valid_width < 1 ||
      processed.valid_height > processed.height ||
      processed.valid_width > processed.width) {
    return absl::InvalidArgumentError(
        absl::StrCat("the processed image's content (", processed.valid_width,
                     "x", processed.valid_height, ") does not fit its ",
                     processed.width, "x", processed.height, " tensor"));
  }
  if (target.width < 1 || target.height < 1) {
    return absl::InvalidArgumentError(absl::StrCat("original output size ",
                                                   target.width, "x",
                                                   target.height, " is empty"));
  }
  if (crf && target.crf_resolution == CrfResolution::kOriginal &&
      (target.pixels == nullptr || target.pixels->width != target.width ||
       target.pixels->height != target.height)) {
    return absl::InvalidArgumentError(
        "a CRF at the original resolution needs the original image's pixels");
  }
  return absl::OkStatus();
}

absl::Status CheckGrid(const std::vector<float>& grid, int channels, int grid_h,
                       int grid_w) {
  if (channels < 1 || channels > 256 ||
      grid.size() != static_cast<size_t>(channels) * grid_h * grid_w) {
    return absl::InvalidArgumentError(
        absl::StrCat("score grid of ", grid.size(), " values is not ", channels,
                     " x ", grid_h, " x ", grid_w));
  }
  return absl::OkStatus();
}

// The grid's scores upsampled to h x w, as probabilities when `softmax`
// (upsampled logits otherwise: their argmax is the same).
std::vector<float> UpsampledScores(const std::vector<float>& grid, int channels,
                                   int grid_h, int grid_w, int h, int w,
                                   GridScores scores, bool softmax) {
  if (scores == GridScores::kMaskScores)
    return UpsampledProbabilities(grid, channels, grid_h, grid_w, h, w);
  std::vector<float> probs = ResizeBilinearWindow(grid.data(), channels, grid_h,
                                                  grid_w, h, w, 0, 0, h, w);
  if (softmax) SoftmaxOverChannels(&probs, channels);
  return probs;
}

}  // namespace

std::vector<float> UpsampledProbabilities(const std::vector<float>& grid,
                                          int channels, int height, int width,
                                          int out_h, int out_w) {
  const size_t n = static_cast<size_t>(height) * width;
  std::vector<float> log_probs(grid.size());
  for (size_t i = 0; i < n; ++i) {
    float mx = grid[i];
    for (int c = 1; c < channels; ++c) mx = std::max(mx, grid[c * n + i]);
    float total = 0;
    for (int c = 0; c < channels; ++c) total += std::exp(grid[c * n + i] - mx);
    const float log_total = std::log(total);
    for (int c = 0; c < channels; ++c)
      log_probs[c * n + i] = grid[c * n + i] - mx - log_total;
  }
  std::vector<float> up =
      ResizeBilinearWindow(log_probs.data(), channels, height, width, out_h,
                           out_w, 0, 0, out_h, out_w);
  SoftmaxOverChannels(&up, channels);
  return up;
}

absl::StatusOr<DenseLabels> ComputeDenseLabels(
    const std::vector<float>& grid, int channels, int grid_h, int grid_w,
    const NormalizedImage& processed, const OutputTarget& target,
    const DenseLabelOptions& options) {
  RETURN_IF_ERROR(CheckGrid(grid, channels, grid_h, grid_w));
  const bool crf = options.use_crf && channels > 1;
  RETURN_IF_ERROR(CheckTarget(target, processed, crf));
  const int h = processed.height, w = processed.width;
  const bool original = target.size == OutputSize::kOriginal;

  std::vector<float> probs =
      UpsampledScores(grid, channels, grid_h, grid_w, h, w, options.scores,
                      crf || options.keep_probabilities || original);
  const StopCheck* stop = options.crf.stop;
  RETURN_IF_ERROR(PollStop(stop, "upsampling the scores"));
  const bool crf_here =
      crf && (!original || target.crf_resolution == CrfResolution::kProcessed);
  if (crf_here) {
    ASSIGN_OR_RETURN(probs, DenseCrfInference(DenormalizeToRgb(processed),
                                              probs, channels, options.crf));
  }
  DenseLabels out;
  out.processed_labels = ArgmaxLabels(probs, channels, w, h);
  if (!original) {
    // No second copy: `labels` is the processed map.
    out.labels = std::move(out.processed_labels);
    out.processed_labels = LabelMap{};
    if (options.keep_probabilities) out.probabilities = std::move(probs);
    return out;
  }
  const int rows = processed.valid_height, cols = processed.valid_width;
  RETURN_IF_ERROR(PollStop(stop, "resizing to the original size"));
  if (!crf_here && crf) {
    // The CRF at the original size, on probabilities resized to it.
    const std::vector<float> window =
        TopLeftWindow(probs, channels, h, w, rows, cols);
    probs.clear();
    probs.shrink_to_fit();
    std::vector<float> resized =
        ResizeBilinearWindow(window.data(), channels, rows, cols, target.height,
                             target.width, 0, 0, target.height, target.width);
    ASSIGN_OR_RETURN(
        std::vector<float> q,
        DenseCrfInference(*target.pixels, resized, channels, options.crf));
    out.labels = ArgmaxLabels(q, channels, target.width, target.height);
    if (options.keep_probabilities) out.probabilities = std::move(q);
    return out;
  }
  if (options.keep_probabilities) {
    const std::vector<float> window =
        TopLeftWindow(probs, channels, h, w, rows, cols);
    out.probabilities =
        ResizeBilinearWindow(window.data(), channels, rows, cols, target.height,
                             target.width, 0, 0, target.height, target.width);
    out.labels =
        ArgmaxLabels(out.probabilities, channels, target.width, target.height);
    return out;
  }
  ASSIGN_OR_RETURN(
      out.labels, ResizeBilinearArgmax(probs.data(), channels, h, w, rows, cols,
                                       target.height, target.width, stop));
  return out;
}

absl::StatusOr<LabelMap> DenseLabelsForPixels(
    const std::vector<float>& grid, int channels, int grid_h, int grid_w,
    const RgbImage& pixels, const DenseLabelOptions& options) {
  RETURN_IF_ERROR(CheckGrid(grid, channels, grid_h, grid_w));
  const bool crf = options.use_crf && channels > 1;
  std::vector<float> probs =
      UpsampledScores(grid, channels, grid_h, grid_w, pixels.height,
                      pixels.width, options.scores, crf);
  if (crf) {
    ASSIGN_OR_RETURN(probs,
                     DenseCrfInference(pixels, probs, channels, options.crf));
  }
  return ArgmaxLabels(probs, channels, pixels.width, pixels.height);
}

}  // namespace primaps
