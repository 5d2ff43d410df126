// The training batches: which images each step takes (the reference's
// shuffled epochs), and their views fetched concurrently.
#ifndef PRIMAPS_TRAINER_BATCH_FETCH_H_
#define PRIMAPS_TRAINER_BATCH_FETCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/thread_pool.h"
#include "engine/backbone/backbone.h"
#include "engine/image/image.h"
#include "trainer/augment.h"
#include "trainer/feature_source.h"
#include "trainer/trainer_options.h"

namespace primaps {

// One training image of a step. As in the reference, the flip applies to the
// image before both views are taken: the teacher's features and the masks
// are those of the mirrored image when the student is mirrored.
struct BatchItem {
  FeatureMap teacher_features;
  LabelMap masks;  // PriMaPs masks, oriented like the views
  FeatureMap student_features;
  LabelMap truth;  // ground truth for the linear probe, oriented likewise
};

// Fetches a batch concurrently (original views from cache or server,
// student views always from the server).
absl::StatusOr<std::vector<BatchItem>> FetchBatch(
    FeatureSource* source, ThreadPool* pool, const TrainerOptions& o,
    const std::vector<std::string>& names, uint32_t seed);

// A permutation of `n` indices fixed by `seed`.
std::vector<size_t> Shuffled(size_t n, uint32_t seed);

// The images of step `step` as the reference's loader gives them: epochs of
// floor(n / batch) steps (the last partial batch dropped), each a fresh
// permutation fixed by the seed, so a resumed run sees the same batches.
std::vector<size_t> BatchIndices(int64_t step, size_t n, int batch,
                                 uint32_t seed);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_BATCH_FETCH_H_
