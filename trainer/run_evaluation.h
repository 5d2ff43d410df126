// A run's evaluations: the validation set, the heads scored on it
// (metrics.jsonl, the confusion PNGs) and the loss curve (loss.jsonl).
#ifndef PRIMAPS_TRAINER_RUN_EVALUATION_H_
#define PRIMAPS_TRAINER_RUN_EVALUATION_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backbone/backbone.h"
#include "engine/image/image.h"
#include "engine/segmentation_head.h"
#include "trainer/augment.h"
#include "trainer/feature_source.h"
#include "trainer/trainer_options.h"

namespace primaps {

// A validation image: its original view and its ground truth at the crop.
struct ValImage {
  View view;
  LabelMap truth;
};

// The validation set: original views and cropped ground truth.
absl::StatusOr<std::vector<ValImage>> LoadValidationSet(const TrainerOptions& o,
                                                        FeatureSource* source);

// Evaluates theta_M and theta_R, with and without the CRF; appends a line to
// metrics.jsonl and writes the confusion matrix of theta_M as a PNG.
absl::StatusOr<nlohmann::json> Evaluate(const TrainerOptions& o,
                                        const SegmentationHead& head,
                                        const std::vector<ValImage>& val,
                                        const std::string& phase, int64_t step);

// Appends the EM step's focal loss to loss.jsonl, for the report's curve
// (a resumed run repeats steps; the report keeps the last line of each).
absl::Status AppendLoss(const TrainerOptions& o, int64_t step, double loss);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_RUN_EVALUATION_H_
