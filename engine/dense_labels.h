// From scores on the backbone's feature grid to one label per pixel: the
// bilinear upsampling, softmax, dense CRF and argmax that PriMaPs (step 5)
// and the head's segmentation share, at the size of the processed image or
// of the original one.
#ifndef PRIMAPS_ENGINE_DENSE_LABELS_H_
#define PRIMAPS_ENGINE_DENSE_LABELS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "engine/crf/dense_crf.h"
#include "engine/image/image.h"
#include "engine/image/preprocess.h"

namespace primaps {

// The size of the label maps a request gets back.
enum class OutputSize {
  // The preprocessed image's (the center crop, or the padded full image):
  // the reference's labels.
  kProcessed,
  // The input image's, covering all of it (it is processed whole).
  kOriginal,
};

// Where the dense CRF runs for kOriginal output.
enum class CrfResolution {
  // On the processed image; its marginals are then resized to the original
  // size. The default: docs/benchmarks.md has the measurements behind it.
  kProcessed,
  // On the original image, with the probabilities resized to it first.
  kOriginal,
};

// How the grid's scores become probabilities.
enum class GridScores {
  // Class logits, upsampled as they are; softmax only where probabilities
  // are needed (the CRF, returned probabilities, kOriginal output).
  kLogits,
  // Mask scores: log-softmax on the grid, upsampling, softmax (the
  // reference's step 5, kept operation for operation).
  kMaskScores,
};

// Where labels go. For kOriginal, the original image's size, and its
// pixels when the CRF runs at that size.
struct OutputTarget {
  OutputSize size = OutputSize::kProcessed;
  CrfResolution crf_resolution = CrfResolution::kProcessed;
  int width = 0;
  int height = 0;
  const RgbImage* pixels = nullptr;
};

struct DenseLabelOptions {
  GridScores scores = GridScores::kLogits;
  bool use_crf = true;
  DenseCrfOptions crf;
  // Also return the probabilities (after the CRF when it runs) at the
  // output size.
  bool keep_probabilities = false;
};

struct DenseLabels {
  // At the output size.
  LabelMap labels;
  // At the processed image's size (the whole tensor, padding included):
  // empty for kProcessed output, where `labels` is that map; for kOriginal,
  // the map
  // whose resizing gave `labels` (without the CRF when it ran at the
  // original size). Majority votes over masks are taken on it, so that both
  // output sizes give masks the same classes.
  LabelMap processed_labels;
  std::vector<float> probabilities;  // channels x labels' size
};

// PriMaPs step 5 up to the CRF input: log-softmax over channels, bilinear
// upsampling (align_corners=false) to out_h x out_w, softmax. Returns
// channels x out_h x out_w.
std::vector<float> UpsampledProbabilities(
    const std::vector<float>& channels_grid, int channels, int height,
    int width, int out_h, int out_w);

// `grid` holds channels x grid_h x grid_w scores for `processed`, whose
// tensor the grid covers (padding included).
absl::StatusOr<DenseLabels> ComputeDenseLabels(
    const std::vector<float>& grid, int channels, int grid_h, int grid_w,
    const NormalizedImage& processed, const OutputTarget& target,
    const DenseLabelOptions& options);

// The same chain at the processed size for callers that hold the processed
// image as 8-bit pixels (the trainer's evaluation, which caches its
// validation crops so): labels of pixels' size; the CRF, when it runs,
// on `pixels`.
absl::StatusOr<LabelMap> DenseLabelsForPixels(const std::vector<float>& grid,
                                              int channels, int grid_h,
                                              int grid_w,
                                              const RgbImage& pixels,
                                              const DenseLabelOptions& options);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_DENSE_LABELS_H_
