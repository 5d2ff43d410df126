// PriMaPs: principal mask proposals for one image (DESIGN.md section 2,
// steps 1-6). The steps are exposed one by one so that each can be checked
// against the reference implementation.
#ifndef PRIMAPS_ENGINE_PRIMAPS_H_
#define PRIMAPS_ENGINE_PRIMAPS_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/backbone/backbone.h"
#include "engine/crf/dense_crf.h"
#include "engine/dense_labels.h"
#include "engine/image/image.h"
#include "engine/image/preprocess.h"

namespace primaps {

struct PriMaPsOptions {
  // Step 2c: similarities below threshold * max are dropped.
  float threshold = 0.4f;
  // Step 2: proposals stop once this fraction of positions is assigned.
  float coverage = 0.95f;
  // Step 2d: hard cap on the number of masks (the reference has none; it
  // bounds a pathological image's cost). docs/datasets.md says how often 32
  // ends a decomposition.
  int max_masks = 32;
  // The backbone's patch size: features must be (H/p) x (W/p) for an
  // H x W image.
  int patch_size = 8;
  // Step 5: refine with the dense CRF (otherwise argmax of the upsampled
  // probabilities).
  bool use_crf = true;
  DenseCrfOptions crf;
  // Step 6: the label of background pixels in pseudo labels.
  uint8_t ignore_label = kIgnoreLabel;
  // Polled at every mask proposal and through step 5 (the CRF, unless
  // crf.stop is set); may be null.
  const StopCheck* stop = nullptr;
};

// Soft masks on the feature grid: masks.size() == num_masks * height * width.
struct SoftMasks {
  int num_masks = 0;
  int height = 0;
  int width = 0;
  std::vector<float> masks;
  std::vector<int> anchors;  // row-major grid position of each mask's anchor
  // The proposals ended at max_masks before reaching the coverage (the
  // server counts these in primaps_mask_cap_hits_total).
  bool capped = false;
};

struct PriMaPsResult {
  SoftMasks proposals;  // after step 2
  // After step 5, at the output size: 0 = background, k = mask k.
  LabelMap mask_labels;
  // The same at the processed image's size for original-size output
  // (DenseLabels::processed_labels); empty when mask_labels is that map.
  LabelMap processed_mask_labels;
  // Time in steps 1-2 (the proposals) and in steps 3-5 (refinement,
  // upsampling, CRF, argmax), for the server's stage metrics.
  absl::Duration proposals_time;
  absl::Duration labels_time;
};

// Checks features: at least one channel on a grid of at least 2x2, as many
// values as that, all finite. (ProposeSoftMasks checks the options too.)
absl::Status ValidateFeatures(const FeatureMap& features);

// Steps 1-2: the soft masks, one per iteration that found a similarity.
absl::StatusOr<SoftMasks> ProposeSoftMasks(const FeatureMap& features,
                                           const PriMaPsOptions& options);

// Step 3: 3x3 median filter (reflect padding), times 10, clamped to [0, 1].
std::vector<float> RefineMasks(const SoftMasks& masks);

// Step 4: prepends the background channel clamp(mean of non-zero mask values
// - sum of masks, 0, 1). Returns (num_masks + 1) x h x w.
std::vector<float> WithBackground(const std::vector<float>& refined,
                                  int num_masks, int height, int width);

// Steps 1-5 for one image: `features` from the backbone and the
// preprocessed image they came from; labels at `target`'s size.
absl::StatusOr<PriMaPsResult> ComputePriMaPs(const FeatureMap& features,
                                             const NormalizedImage& image,
                                             const PriMaPsOptions& options = {},
                                             const OutputTarget& target = {});

// Step 6. Without a prior (empty `prior`), mask k > 0 gets id k; with a
// per-pixel class map of the same size, each mask takes the most frequent
// prior class inside it (smallest id on ties; prior pixels equal to
// `ignore_label` do not vote). Background is `ignore_label`.
absl::StatusOr<LabelMap> PseudoLabels(const LabelMap& mask_labels,
                                      const LabelMap* prior,
                                      uint8_t ignore_label = kIgnoreLabel);

// Step 6 in two parts: each mask id's label, voted on `mask_labels` as
// PseudoLabels does, then applied to any map of the same masks (the
// original-size map, whose masks take the classes voted at the processed
// size).
using MaskClassTable = std::array<uint8_t, 256>;
absl::StatusOr<MaskClassTable> MaskClasses(const LabelMap& mask_labels,
                                           const LabelMap* prior,
                                           uint8_t ignore_label = kIgnoreLabel);
LabelMap ApplyMaskClasses(const LabelMap& mask_labels,
                          const MaskClassTable& table);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_PRIMAPS_H_
