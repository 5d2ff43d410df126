// PriMaPs for many images at once on a thread pool.
#ifndef PRIMAPS_ENGINE_PRIMAPS_BATCH_H_
#define PRIMAPS_ENGINE_PRIMAPS_BATCH_H_

#include <vector>

#include "absl/status/statusor.h"
#include "base/thread_pool.h"
#include "engine/primaps.h"

namespace primaps {

// One image's input. The pointers are borrowed and must stay valid until
// ComputePriMaPsBatch returns.
struct PriMaPsInput {
  const FeatureMap* features = nullptr;
  const NormalizedImage* image = nullptr;
};

// Runs ComputePriMaPs for every input on `pool` (inline when null) and
// waits. Each result, error or not, is exactly what ComputePriMaPs gives for
// that input alone: images share no state.
std::vector<absl::StatusOr<PriMaPsResult>> ComputePriMaPsBatch(
    const std::vector<PriMaPsInput>& inputs, const PriMaPsOptions& options,
    ThreadPool* pool);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_PRIMAPS_BATCH_H_
