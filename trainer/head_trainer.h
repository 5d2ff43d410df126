// Trains the segmentation head (theta_R) and its EMA teacher (theta_M) as
// PriMaPs-EM does (DESIGN.md section 2). LibTorch lives in head_trainer.cc;
// this header is torch-free.
#ifndef PRIMAPS_TRAINER_HEAD_TRAINER_H_
#define PRIMAPS_TRAINER_HEAD_TRAINER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/backbone/backbone.h"
#include "engine/image/image.h"
#include "engine/segmentation_head.h"

namespace primaps {

struct HeadTrainerOptions {
  int classes = 27;
  int dim = 384;
  std::string backbone;
  // The server's feature block (ModelInfo.dino_block), written into the
  // head's metadata so that a server serving another block refuses it; 0:
  // none (the built-in backbone).
  int dino_block = 0;
  // The projection the heads read (ModelInfo.projection_digest), written
  // into the head's metadata likewise; empty: the backbone's features.
  std::string projection_digest;
  double learning_rate = 5e-3;  // Adam
  double focal_gamma = 2.0;
  int ema_every = 10;
  double ema_max_decay = 0.98;
  // The supervised linear probe (--linear-lr of the reference): trained with
  // its own Adam on ground truth beside the heads; 0 = none.
  double linear_learning_rate = 0;
};

// One M-step sample: the student view's features and the pseudo target at
// label resolution (255 = ignore), already flipped like the view.
struct TrainingSample {
  FeatureMap features;
  LabelMap target;
};

class HeadTrainer {
 public:
  static absl::StatusOr<std::unique_ptr<HeadTrainer>> Create(
      const HeadTrainerOptions& options);
  ~HeadTrainer();

  // PCA initialization: the top-K principal directions of the features at
  // every position become theta_M and theta_R (gain 1).
  absl::Status InitFromPca(const std::vector<FeatureMap>& features);
  // The same, one image at a time: the sum and the scatter matrix (D x D,
  // double) are accumulated, so the reference's ~3,000 PCA images cost no
  // more memory than one (their features together would be ~15 GB).
  absl::Status AddPcaFeatures(const FeatureMap& features);
  absl::Status FinishPca();

  // Initialization from given prototypes (classes x dim, row-major) as the
  // reference's --cluster-ckpt-path: theta_R and theta_M get them as v,
  // with gain 1.
  absl::Status InitFromPrototypes(const std::vector<float>& v);

  // One step of the cosine k-means baseline on theta_R (loss = -mean of
  // the best cosine score); theta_M copies theta_R. Returns the loss.
  absl::StatusOr<double> BaselineStep(const std::vector<FeatureMap>& features);

  // Fresh Adam moments: each phase (baseline, PriMaPs-EM) starts its own
  // optimizer, as the reference does.
  void ResetOptimizer();

  // The linear probe as at creation (the same initial weights, fresh
  // moments): PriMaPs-EM trains its own, as the reference's EM run loads
  // only the cluster weights of the baseline's checkpoint.
  void ResetLinearProbe();

  // One M-step on theta_R with the focal loss and Adam, then the EMA
  // update of theta_M when the schedule says so. Returns the loss.
  absl::StatusOr<double> EmStep(const std::vector<TrainingSample>& batch);

  // One step of the linear probe: cross entropy (255 ignored) of its
  // bilinearly upsampled logits against `target` (ground truth here), summed
  // over valid pixels and divided by all, as the reference's
  // CrossEntropyLoss(reduction="none").mean(). Returns the loss.
  absl::StatusOr<double> LinearStep(const std::vector<TrainingSample>& batch);
  bool has_linear_probe() const;

  // The current heads (with the linear probe, when trained).
  SegmentationHead Head() const;
  int64_t step() const;
  int64_t ema_updates() const;

  // Everything needed to resume: the heads, Adam's moments and step, the
  // EMA count, and `metadata`. Loadable by the server (it reads the heads).
  absl::StatusOr<std::string> SerializeCheckpoint(
      const std::map<std::string, std::string>& metadata) const;
  absl::Status RestoreCheckpoint(absl::string_view bytes);

  // Focal cross entropy of `logits` (N x K, row-major) against `targets`
  // (N, 255 = ignore), as EmStep computes it; exposed for tests.
  static double FocalLossForTest(const std::vector<float>& logits,
                                 const std::vector<int64_t>& targets,
                                 int classes, double gamma);

 private:
  struct Impl;
  explicit HeadTrainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_HEAD_TRAINER_H_
