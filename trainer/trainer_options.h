// The options of a training run (primaps-trainer's flags), shared by the
// files of the trainer.
#ifndef PRIMAPS_TRAINER_TRAINER_OPTIONS_H_
#define PRIMAPS_TRAINER_TRAINER_OPTIONS_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace primaps {

struct TrainerOptions {
  std::vector<std::string> servers;
  // Dataset directories: images/ and (for val) labels/ with the same stems.
  std::string train_dir;
  std::string val_dir;
  std::string out_dir;
  int classes = 27;
  int steps = 1000;
  // Schedules in epochs, as the reference counts them (an epoch is
  // floor(images / batch) steps, the last partial batch dropped); when > 0
  // they set steps, baseline_steps and eval_every.
  int epochs = 0;
  int baseline_epochs = 0;
  bool eval_every_epoch = false;
  int batch = 32;
  // Short side and center crop of the training images (square crops) and
  // of the validation images; 0: 320, or 322 when the servers run a
  // patch-14 (DINOv2) backbone (the presets).
  int resize = 320;
  double learning_rate = 5e-3;
  // The supervised linear probe's learning rate (0 = none); it trains on the
  // training set's ground truth (labels/, or gts/ in the precomputed
  // layout) and is reported beside the heads as an upper bound.
  double linear_learning_rate = 0;
  double focal_gamma = 2.0;
  // Images whose features initialize the prototypes by PCA (0 = one batch).
  int pca_images = 0;
  // Optional baseline steps (cosine k-means) after the PCA init.
  int baseline_steps = 0;
  int checkpoint_every = 100;
  int keep_checkpoints = 3;
  // Push the head into every server every N steps (0 = never).
  int push_every = 0;
  std::string admin_token;
  // Start PriMaPs-EM from these prototypes instead of the PCA and the
  // baseline, as the reference's --cluster-ckpt-path: theta_M's directions
  // of a head file or of the reference's train.py .ckpt (a baseline run's
  // cluster_probe.cluster_centers.weight_v) into both heads, gain 1.
  // "served": the head the first server serves (AdminService
  // GetCheckpoint, with admin_token).
  std::string init_checkpoint;
  // Set from the servers (ResolveFromServers): their backbone has a
  // projection, whose code the heads read.
  bool heads_on_projection = false;
  // Publish the head into this model repository (server/model_repository.h)
  // every publish_every steps (0: with every checkpoint) and at the end,
  // with its evaluation figures; empty: never.
  std::string publish_dir;
  int publish_every = 0;
  // With validation images: publish only when theta_M's mIoU is at most
  // this much below the last published version's (< 0: always publish).
  double publish_max_miou_drop = -1;
  // Evaluate on val_dir every N steps (0 = after init, baseline and at the
  // end only).
  int eval_every = 0;
  bool eval_crf = true;
  bool resume = false;
  uint32_t seed = 1;
  // Concurrent feature requests while fetching a batch.
  int fetch_concurrency = 4;
  absl::Duration log_every = absl::Seconds(10);
  // Set to stop: the trainer writes a checkpoint and returns.
  std::atomic<bool>* stop = nullptr;
};

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_TRAINER_OPTIONS_H_
