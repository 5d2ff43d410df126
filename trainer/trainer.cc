#include "trainer/trainer.h"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/thread_pool.h"
#include "engine/primaps.h"
#include "engine/reference_checkpoint.h"
#include "engine/segmentation_head.h"
#include "trainer/batch_fetch.h"
#include "trainer/best_of_run.h"
#include "trainer/checkpoints.h"
#include "trainer/feature_cache.h"
#include "trainer/feature_source.h"
#include "trainer/head_trainer.h"
#include "trainer/publish.h"
#include "trainer/run_evaluation.h"
#include "trainer/training_data.h"

namespace primaps {
namespace fs = std::filesystem;

namespace {

// E-step: each mask takes theta_M's majority class on the teacher's view.
absl::StatusOr<LabelMap> PseudoTarget(const SegmentationHead& head,
                                      const BatchItem& item) {
  const LabelMap prior =
      HeadClassMap(head, HeadKind::kClusterProbe, item.teacher_features,
                   item.masks.height, item.masks.width);
  return PseudoLabels(item.masks, &prior);
}

// Steps from the schedules given in epochs.
TrainerOptions ResolveEpochs(TrainerOptions o, size_t train_images) {
  const int per_epoch =
      std::max<int>(1, static_cast<int>(train_images) / std::max(1, o.batch));
  if (o.epochs > 0) o.steps = o.epochs * per_epoch;
  if (o.baseline_epochs > 0) o.baseline_steps = o.baseline_epochs * per_epoch;
  if (o.eval_every_epoch) o.eval_every = per_epoch;
  return o;
}

// What the phases of a run share.
struct TrainingRun {
  const TrainerOptions& o;
  DatasetDirs train_dirs;
  std::vector<std::string> train;  // image names
  FeatureSource* source;
  ThreadPool* pool;

  absl::StatusOr<View> TrainView(const std::string& name) const {
    return LoadView(source, train_dirs, name, o.out_dir + "/cache/train",
                    o.resize, ResizeFilter::kAntialias);
  }
};

// Evaluates the current head and keeps the best of run.
using Evaluator =
    std::function<absl::Status(const std::string& phase, int64_t step)>;

// The head trainer for the backbone the servers run, its feature dim from
// the first training image.
absl::StatusOr<std::unique_ptr<HeadTrainer>> CreateHeadTrainer(
    const TrainingRun& run) {
  const TrainerOptions& o = run.o;
  ASSIGN_OR_RETURN(const View first, run.TrainView(run.train[0]));
  HeadTrainerOptions head_options;
  head_options.classes = o.classes;
  head_options.dim = first.features.dim;
  head_options.learning_rate = o.learning_rate;
  head_options.focal_gamma = o.focal_gamma;
  if (o.linear_learning_rate > 0) {
    if (run.train_dirs.labels.empty()) {
      LogInfo(
          "no ground truth for the training images (labels/ or gts/): no "
          "linear probe");
    } else {
      head_options.linear_learning_rate = o.linear_learning_rate;
    }
  }
  ASSIGN_OR_RETURN(const v1::FeatureResponse probe,
                   run.source->Features(first.crop, false));
  head_options.backbone = probe.model().backbone();
  head_options.dino_block = probe.model().dino_block();
  head_options.projection_digest = probe.model().projection_digest();
  return HeadTrainer::Create(head_options);
}

// PCA initialization on the features of shuffled training images, as the
// reference draws its PCA batches.
absl::Status InitializeFromPca(const TrainingRun& run, HeadTrainer* trainer) {
  const TrainerOptions& o = run.o;
  const int n = std::min<int>(static_cast<int>(run.train.size()),
                              o.pca_images > 0 ? o.pca_images : o.batch);
  const std::vector<size_t> order =
      Shuffled(run.train.size(), o.seed + 1000003u);
  for (int i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(View v, run.TrainView(run.train[order[i]]));
    RETURN_IF_ERROR(trainer->AddPcaFeatures(v.features));
  }
  RETURN_IF_ERROR(trainer->FinishPca());
  LogInfo(absl::StrCat("PCA initialization on ", n, " images"));
  return absl::OkStatus();
}

// The reference's --cluster-ckpt-path: theta_M's directions of
// o.init_checkpoint (a baseline .ckpt's cluster centres) into both heads.
absl::Status InitializeFromCheckpoint(const TrainerOptions& o,
                                      HeadTrainer* trainer) {
  std::string bytes;
  if (o.init_checkpoint == "served") {
    ClientOptions options;
    options.target = o.servers[0];
    options.admin_token = o.admin_token;
    ASSIGN_OR_RETURN(std::unique_ptr<PrimapsClient> client,
                     PrimapsClient::Create(options));
    auto served = client->GetCheckpoint();
    if (!served.ok()) {
      return absl::Status(served.status().code(),
                          absl::StrCat("the served head of ", o.servers[0],
                                       " (needs --admin_token_file): ",
                                       served.status().message()));
    }
    bytes = served->data();
  } else {
    ASSIGN_OR_RETURN(bytes, ReadFile(o.init_checkpoint));
  }
  const SegmentationHead current = trainer->Head();
  auto head = ParseAnyHeadCheckpoint(bytes, current.backbone, current.dim);
  if (!head.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--init_checkpoint ",
                                                   o.init_checkpoint, ": ",
                                                   head.status().message()));
  }
  if (head->classes != current.classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--init_checkpoint ", o.init_checkpoint, " has ", head->classes,
        " classes; --classes is ", current.classes));
  }
  RETURN_IF_ERROR(trainer->InitFromPrototypes(head->theta_m.v));
  const auto from = head->extra_metadata.find("theta_m_from");
  LogInfo(absl::StrCat(
      "initialized from ", o.init_checkpoint, " (",
      from != head->extra_metadata.end() ? from->second : "theta_m", ")"));
  return absl::OkStatus();
}

// The cosine k-means baseline on theta_R (and the linear probe, when
// there is ground truth), validated every eval_every steps and at its end
// as the reference's baseline run is (phase "baseline", its own step
// count); then fresh optimizer moments and a fresh linear probe for
// PriMaPs-EM.
absl::Status TrainBaseline(const TrainingRun& run, HeadTrainer* trainer,
                           const Evaluator& evaluate, bool have_val) {
  const TrainerOptions& o = run.o;
  for (int s = 0; s < o.baseline_steps; ++s) {
    std::vector<FeatureMap> batch;
    std::vector<TrainingSample> labelled;
    for (size_t i :
         BatchIndices(s, run.train.size(), o.batch, o.seed + 2000003u)) {
      ASSIGN_OR_RETURN(View v, run.TrainView(run.train[i]));
      if (trainer->has_linear_probe()) {
        ASSIGN_OR_RETURN(LabelMap truth,
                         TrainingTruth(run.train_dirs, run.train[i], o.resize));
        if (!truth.labels.empty())
          labelled.push_back({v.features, std::move(truth)});
      }
      batch.push_back(std::move(v.features));
    }
    RETURN_IF_ERROR(trainer->BaselineStep(batch).status());
    if (!labelled.empty())
      RETURN_IF_ERROR(trainer->LinearStep(labelled).status());
    const bool last = s + 1 == o.baseline_steps;
    if (have_val &&
        (last || (o.eval_every > 0 && (s + 1) % o.eval_every == 0))) {
      RETURN_IF_ERROR(evaluate("baseline", s + 1));
    }
  }
  trainer->ResetOptimizer();
  trainer->ResetLinearProbe();
  LogInfo(absl::StrCat(o.baseline_steps, " baseline steps"));
  return absl::OkStatus();
}

// PriMaPs-EM from the trainer's step to o.steps, with checkpoints, pushes
// and evaluations as the options ask.
absl::Status TrainPrimapsEm(const TrainingRun& run, HeadTrainer* trainer,
                            const Evaluator& evaluate, bool have_val,
                            const std::function<absl::Status()>& publish) {
  const TrainerOptions& o = run.o;
  auto batch_names = [&](int64_t step) {
    std::vector<std::string> names;
    for (size_t i : BatchIndices(step, run.train.size(), o.batch, o.seed))
      names.push_back(run.train[i]);
    return names;
  };
  const absl::Time start = absl::Now();
  absl::Time last_log = start;
  const int64_t first_step = trainer->step();
  // Requests for the next two batches are out while the current step runs,
  // so the servers always have work queued.
  constexpr size_t kBatchesAhead = 2;
  std::deque<std::future<absl::StatusOr<std::vector<BatchItem>>>> ahead;
  int64_t requested = trainer->step();
  auto fill = [&] {
    while (ahead.size() < kBatchesAhead && requested < o.steps) {
      const int64_t step = requested++;
      ahead.push_back(std::async(std::launch::async, [&, step] {
        return FetchBatch(run.source, run.pool, o, batch_names(step),
                          o.seed + static_cast<uint32_t>(step));
      }));
    }
  };
  fill();
  double loss = 0;
  run.source->ResetBusy();
  // Where a step's time goes: waiting for the servers' features, the E-step
  // (theta_M class maps and mask votes), the M-step (focal loss, Adam).
  absl::Duration wait_time, e_step_time, m_step_time;
  while (trainer->step() < o.steps) {
    if (o.stop != nullptr && o.stop->load()) {
      LogInfo("stopping: writing a checkpoint");
      for (auto& f : ahead) f.wait();
      RETURN_IF_ERROR(SaveCheckpoint(o, *trainer));
      return absl::CancelledError(absl::StrCat(
          "stopped at step ", trainer->step(), "; rerun with --resume"));
    }
    absl::Time t = absl::Now();
    ASSIGN_OR_RETURN(std::vector<BatchItem> batch, ahead.front().get());
    ahead.pop_front();
    fill();
    wait_time += absl::Now() - t;
    t = absl::Now();
    const SegmentationHead head = trainer->Head();
    std::vector<TrainingSample> samples, labelled;
    for (BatchItem& item : batch) {
      ASSIGN_OR_RETURN(LabelMap target, PseudoTarget(head, item));
      samples.push_back({std::move(item.student_features), std::move(target)});
      if (!item.truth.labels.empty())
        labelled.push_back({item.teacher_features, std::move(item.truth)});
    }
    e_step_time += absl::Now() - t;
    t = absl::Now();
    ASSIGN_OR_RETURN(loss, trainer->EmStep(samples));
    RETURN_IF_ERROR(AppendLoss(o, trainer->step(), loss));
    // The linear probe on the teacher's view and the ground truth, as the
    // reference trains it in the same step.
    if (trainer->has_linear_probe() && !labelled.empty())
      RETURN_IF_ERROR(trainer->LinearStep(labelled).status());
    m_step_time += absl::Now() - t;
    const int64_t step = trainer->step();
    if (absl::Now() - last_log >= o.log_every || step == o.steps) {
      last_log = absl::Now();
      const double rate =
          (step - first_step) /
          std::max(1e-9, absl::ToDoubleSeconds(absl::Now() - start));
      LogInfo(absl::StrFormat("step %d/%d loss %.4f %.2f steps/s ETA %.0fs",
                              step, o.steps, loss, rate,
                              (o.steps - step) / std::max(rate, 1e-9)));
    }
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0)
      RETURN_IF_ERROR(SaveCheckpoint(o, *trainer));
    if (o.push_every > 0 && step % o.push_every == 0) Push(o, *trainer);
    const int publish_every =
        o.publish_every > 0 ? o.publish_every : o.checkpoint_every;
    if (!o.publish_dir.empty() && publish_every > 0 &&
        step % publish_every == 0 && step != o.steps) {
      RETURN_IF_ERROR(publish());
    }
    if (o.eval_every > 0 && step % o.eval_every == 0 && have_val &&
        step != o.steps) {
      RETURN_IF_ERROR(evaluate("em", step));
    }
  }
  if (trainer->step() > first_step) {
    const double n = static_cast<double>(trainer->step() - first_step);
    LogInfo(
        absl::StrFormat("per step: %.1f ms waiting for features, %.1f ms "
                        "E-step, %.1f ms M-step; feature requests outstanding "
                        "%.0f%% of the time",
                        absl::ToDoubleMilliseconds(wait_time) / n,
                        absl::ToDoubleMilliseconds(e_step_time) / n,
                        absl::ToDoubleMilliseconds(m_step_time) / n,
                        100 * run.source->BusyFraction()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunTrainer(const TrainerOptions& options) {
  if (options.servers.empty())
    return absl::InvalidArgumentError("no servers (--server)");
  if (options.classes < 1 || options.batch < 1 || options.steps < 0) {
    return absl::InvalidArgumentError(
        "--classes and --batch must be >= 1, --steps >= 0");
  }
  const DatasetDirs train_dirs = FindDatasetDirs(options.train_dir);
  std::vector<std::string> train = ListImages(train_dirs.images);
  if (train.empty())
    return absl::NotFoundError(
        absl::StrCat("no images in ", train_dirs.images));
  if (!train_dirs.masks.empty())
    LogInfo(absl::StrCat("precomputed pseudo labels from ", train_dirs.masks));
  ASSIGN_OR_RETURN(TrainerOptions with_crop, ResolveFromServers(options));
  const TrainerOptions o = ResolveEpochs(std::move(with_crop), train.size());
  LogInfo(absl::StrCat(train.size(), " training images: ", o.baseline_steps,
                       " baseline steps, ", o.steps, " PriMaPs-EM steps of ",
                       o.batch, " images"));
  RETURN_IF_ERROR(CreateDirectories(o.out_dir + "/cache/train"));
  RETURN_IF_ERROR(CreateDirectories(o.out_dir + "/cache/val"));
  FeatureSource source(o.servers, o.resize,
                       o.heads_on_projection ? v1::FEATURE_KIND_PROJECTION
                                             : v1::FEATURE_KIND_BACKBONE);
  ThreadPool pool(std::max(1, o.fetch_concurrency));
  const TrainingRun run{o, train_dirs, std::move(train), &source, &pool};

  ASSIGN_OR_RETURN(const std::vector<ValImage> val,
                   LoadValidationSet(o, &source));
  ASSIGN_OR_RETURN(std::unique_ptr<HeadTrainer> trainer,
                   CreateHeadTrainer(run));
  ASSIGN_OR_RETURN(BestOfRun best, BestOfRun::Load(o.out_dir));
  nlohmann::json last_evaluation;  // published with the head
  const Evaluator evaluate = [&](const std::string& phase,
                                 int64_t step) -> absl::Status {
    ASSIGN_OR_RETURN(last_evaluation,
                     Evaluate(o, trainer->Head(), val, phase, step));
    return best.Offer(last_evaluation, trainer->Head());
  };
  // Publishes the current head with figures for its own step.
  const std::function<absl::Status()> publish = [&]() -> absl::Status {
    if (!val.empty() && (!last_evaluation.contains("step") ||
                         last_evaluation["step"] != trainer->step())) {
      RETURN_IF_ERROR(evaluate("em", trainer->step()));
    }
    return Publish(o, *trainer, last_evaluation);
  };

  const std::string newest = o.resume ? NewestCheckpoint(o) : "";
  if (!newest.empty()) {
    ASSIGN_OR_RETURN(const std::string bytes, ReadFile(newest));
    RETURN_IF_ERROR(trainer->RestoreCheckpoint(bytes));
    LogInfo(
        absl::StrCat("resumed from ", newest, " at step ", trainer->step()));
  } else if (!o.init_checkpoint.empty()) {
    RETURN_IF_ERROR(InitializeFromCheckpoint(o, trainer.get()));
    if (!val.empty()) RETURN_IF_ERROR(evaluate("init_checkpoint", 0));
  } else {
    RETURN_IF_ERROR(InitializeFromPca(run, trainer.get()));
    if (!val.empty()) RETURN_IF_ERROR(evaluate("pca_init", 0));
    if (o.baseline_steps > 0) {
      RETURN_IF_ERROR(
          TrainBaseline(run, trainer.get(), evaluate, !val.empty()));
    }
  }
  RETURN_IF_ERROR(
      TrainPrimapsEm(run, trainer.get(), evaluate, !val.empty(), publish));

  RETURN_IF_ERROR(SaveCheckpoint(o, *trainer));
  if (!val.empty()) RETURN_IF_ERROR(evaluate("em", trainer->step()));
  if (!o.publish_dir.empty()) RETURN_IF_ERROR(publish());
  // The last step may already have been pushed.
  if (o.push_every > 0 && trainer->step() % o.push_every != 0) {
    Push(o, *trainer);
  }
  LogInfo(absl::StrCat("done at step ", trainer->step(), "; checkpoint ",
                       CheckpointPath(o, trainer->step())));
  return absl::OkStatus();
}

}  // namespace primaps
