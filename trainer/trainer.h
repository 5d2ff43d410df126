// primaps-trainer's loop: PriMaPs-EM with features streamed from servers.
#ifndef PRIMAPS_TRAINER_TRAINER_H_
#define PRIMAPS_TRAINER_TRAINER_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/trainer_options.h"

namespace primaps {

// PCA (or --init_checkpoint), the optional baseline, then PriMaPs-EM, with
// evaluations, checkpoints, pushes and publications as `options` ask.
absl::Status RunTrainer(const TrainerOptions& options);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_TRAINER_H_
