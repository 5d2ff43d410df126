// The trainer's checkpoints: OUT/checkpoints/step_NNNNNNNN.safetensors,
// written atomically with the optimizer state, the newest few kept.
#ifndef PRIMAPS_TRAINER_CHECKPOINTS_H_
#define PRIMAPS_TRAINER_CHECKPOINTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "trainer/head_trainer.h"
#include "trainer/trainer_options.h"

namespace primaps {

std::string CheckpointPath(const TrainerOptions& o, int64_t step);

// The checkpoints in OUT/checkpoints, oldest first (their names sort by
// step).
std::vector<std::string> CheckpointFiles(const TrainerOptions& o);

// Writes the trainer's checkpoint for its step and removes all but the
// newest o.keep_checkpoints.
absl::Status SaveCheckpoint(const TrainerOptions& o,
                            const HeadTrainer& trainer);

// The newest checkpoint's path, or "" when there is none.
std::string NewestCheckpoint(const TrainerOptions& o);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_CHECKPOINTS_H_
