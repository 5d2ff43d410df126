// Where a trained head goes: pushed into the servers (AdminService) or
// published into a model repository that they follow.
#ifndef PRIMAPS_TRAINER_PUBLISH_H_
#define PRIMAPS_TRAINER_PUBLISH_H_

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "trainer/head_trainer.h"
#include "trainer/trainer_options.h"

namespace primaps {

// Loads the head into every server; failures are logged, not fatal.
void Push(const TrainerOptions& o, const HeadTrainer& trainer);

// Publishes the head into o.publish_dir with `evaluation` (may be null),
// unless the gate finds it worse than the last published version.
absl::Status Publish(const TrainerOptions& o, const HeadTrainer& trainer,
                     const nlohmann::json& evaluation);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_PUBLISH_H_
