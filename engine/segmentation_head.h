// The segmentation head and its checkpoint file (DESIGN.md sections 2, 5).
//
// Two weight-normalized 1x1 convolutions without bias over the backbone
// features, K classes x D channels each: theta_R (the segmentation head)
// and theta_M (its exponential moving average, the cluster probe used for
// pseudo labels). Class k's score at a position is g_k * (v_k . f) / |v_k|.
//
// The checkpoint is one safetensors file with tensors theta_m.v, theta_m.g,
// theta_r.v, theta_r.g (v: [K, D] or PyTorch's [K, D, 1, 1]; g: [K] or
// [K, 1, 1, 1]), optionally linear.weight [K, D] and linear.bias [K], and
// __metadata__ with backbone, feature_dim, classes, step, and free-form
// config and eval entries.
#ifndef PRIMAPS_ENGINE_SEGMENTATION_HEAD_H_
#define PRIMAPS_ENGINE_SEGMENTATION_HEAD_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/backbone/backbone.h"
#include "engine/image/image.h"

namespace primaps {

// One weight-normalized 1x1 convolution: v is classes x dim, row-major.
struct WeightNormConv {
  std::vector<float> v;
  std::vector<float> g;
};

struct SegmentationHead {
  int classes = 0;
  int dim = 0;
  WeightNormConv theta_m;
  WeightNormConv theta_r;
  std::string backbone;  // id of the backbone whose features it reads
  int64_t step = 0;
  // The optional supervised linear probe (a 1x1 convolution with bias,
  // classes x dim and classes), an upper bound reported beside the heads;
  // empty when absent. The server does not use it.
  std::vector<float> linear_weight;
  std::vector<float> linear_bias;
  // Everything else in __metadata__ (config, eval results, ...).
  std::map<std::string, std::string> extra_metadata;
};

enum class HeadKind {
  kClusterProbe /* theta_M */,
  kSegmentation /* theta_R */
};

// Parses and validates a checkpoint: required tensors, shapes agreeing with
// each other and with the metadata, finite values, non-zero directions,
// 1..254 classes, and (when non-empty) the expected backbone and dim.
// Errors name the tensor or field at fault.
absl::StatusOr<SegmentationHead> ParseHeadCheckpoint(
    absl::string_view bytes, absl::string_view expected_backbone,
    int expected_dim);

std::string SerializeHeadCheckpoint(const SegmentationHead& head);

// Class scores (classes x h x w) of `kind` on the feature grid.
std::vector<float> HeadScores(const SegmentationHead& head, HeadKind kind,
                              const FeatureMap& features);

// The class map at out_h x out_w: argmax over classes of the head applied to
// the bilinearly upsampled features. The head is linear, so this upsamples
// the grid scores instead of the D-channel features (the same values up to
// rounding, D/K times less work).
LabelMap HeadClassMap(const SegmentationHead& head, HeadKind kind,
                      const FeatureMap& features, int out_h, int out_w);

// SHA-256 of `bytes`, lowercase hex.
std::string Sha256Hex(absl::string_view bytes);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_SEGMENTATION_HEAD_H_
