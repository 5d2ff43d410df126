#include "trainer/batch_fetch.h"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "engine/image/channel_maps.h"
#include "trainer/augment.h"
#include "trainer/feature_cache.h"
#include "trainer/training_data.h"

namespace primaps {
namespace fs = std::filesystem;

// Fetches a batch concurrently (original views from cache or server,
// student views always from the server).
absl::StatusOr<std::vector<BatchItem>> FetchBatch(
    FeatureSource* source, ThreadPool* pool, const TrainerOptions& o,
    const std::vector<std::string>& names, uint32_t seed) {
  std::vector<absl::StatusOr<BatchItem>> items(
      names.size(), absl::UnknownError("not fetched"));
  absl::BlockingCounter done(static_cast<int>(names.size()));
  const std::string cache_dir = o.out_dir + "/cache/train";
  for (size_t i = 0; i < names.size(); ++i) {
    pool->Schedule([&, i] {
      items[i] = [&]() -> absl::StatusOr<BatchItem> {
        ASSIGN_OR_RETURN(
            View view, LoadView(source, FindDatasetDirs(o.train_dir), names[i],
                                cache_dir, o.resize, ResizeFilter::kAntialias));
        std::mt19937 rng(seed * 7919u + static_cast<uint32_t>(i));
        const StudentDraws draws = DrawStudent(&rng);
        BatchItem item;
        if (o.linear_learning_rate > 0) {
          ASSIGN_OR_RETURN(
              item.truth,
              TrainingTruth(FindDatasetDirs(o.train_dir), names[i], o.resize));
          if (draws.flip && !item.truth.labels.empty())
            item.truth = FlipHorizontal(item.truth);
        }
        RgbImage crop;
        if (draws.flip) {
          ASSIGN_OR_RETURN(
              item.teacher_features,
              FlippedFeatures(source, view,
                              absl::StrCat(cache_dir, "/",
                                           fs::path(names[i]).stem().string(),
                                           ".flipped.safetensors")));
          item.masks = FlipHorizontal(view.masks);
          crop = FlipHorizontal(view.crop);
        } else {
          item.teacher_features = std::move(view.features);
          item.masks = std::move(view.masks);
          crop = std::move(view.crop);
        }
        ASSIGN_OR_RETURN(
            const v1::FeatureResponse r,
            source->Features(StudentAugment(Normalize(crop), draws)));
        item.student_features = ToFeatureMap(r);
        return item;
      }();
      done.DecrementCount();
    });
  }
  done.Wait();
  std::vector<BatchItem> out;
  for (auto& item : items) {
    if (!item.ok()) return item.status();
    out.push_back(*std::move(item));
  }
  return out;
}

// A permutation of `n` indices fixed by `seed`.
std::vector<size_t> Shuffled(size_t n, uint32_t seed) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(seed));
  return order;
}

// The images of step `step` as the reference's loader gives them: epochs of
// floor(n / batch) steps (the last partial batch dropped), each a fresh
// permutation fixed by the seed, so a resumed run sees the same batches.
std::vector<size_t> BatchIndices(int64_t step, size_t n, int batch,
                                 uint32_t seed) {
  const int64_t per_epoch =
      std::max<int64_t>(1, static_cast<int64_t>(n) / batch);
  const std::vector<size_t> order =
      Shuffled(n, seed + static_cast<uint32_t>(step / per_epoch));
  std::vector<size_t> out;
  for (int b = 0; b < batch; ++b)
    out.push_back(order[((step % per_epoch) * batch + b) % n]);
  return out;
}

}  // namespace primaps
