// The trainer's disk cache of what a frozen backbone gives: each image's
// features and masks, fetched once from the servers and then read back
// (OUT/cache/), so that epochs, resumed runs and reruns cost no forward.
#ifndef PRIMAPS_TRAINER_FEATURE_CACHE_H_
#define PRIMAPS_TRAINER_FEATURE_CACHE_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backbone/backbone.h"
#include "engine/image/image.h"
#include "engine/image/preprocess.h"
#include "trainer/augment.h"
#include "trainer/feature_source.h"
#include "trainer/training_data.h"

namespace primaps {

// The original view of image `name`: from the cache, or from the server
// (then cached; features and masks of a frozen backbone never change). The
// masks come from the server, or from the precomputed pseudo labels.
absl::StatusOr<View> LoadView(FeatureSource* source, const DatasetDirs& dirs,
                              const std::string& name,
                              const std::string& cache_dir, int resize,
                              ResizeFilter filter);

// Features cached on disk (a safetensors file with "features"), or nullopt
// when the file is missing or unreadable (then they are fetched again).
std::optional<FeatureMap> CachedFeatures(const std::string& cache);
absl::Status WriteCachedFeatures(const std::string& cache,
                                 const FeatureMap& features);

// The mirrored original view's features, for the teacher when the student
// is flipped: from the cache, or from the server (then cached).
absl::StatusOr<FeatureMap> FlippedFeatures(FeatureSource* source,
                                           const View& view,
                                           const std::string& cache);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_FEATURE_CACHE_H_
