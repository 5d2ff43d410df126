#include "engine/primaps_batch.h"

#include "absl/synchronization/blocking_counter.h"

namespace primaps {

std::vector<absl::StatusOr<PriMaPsResult>> ComputePriMaPsBatch(
    const std::vector<PriMaPsInput>& inputs, const PriMaPsOptions& options,
    ThreadPool* pool) {
  std::vector<absl::StatusOr<PriMaPsResult>> results(
      inputs.size(), absl::UnknownError("not computed"));
  auto run = [&](size_t i) {
    if (inputs[i].features == nullptr || inputs[i].image == nullptr) {
      results[i] =
          absl::InvalidArgumentError("batch input without features or image");
      return;
    }
    results[i] = ComputePriMaPs(*inputs[i].features, *inputs[i].image, options);
  };
  if (pool == nullptr) {
    for (size_t i = 0; i < inputs.size(); ++i) run(i);
    return results;
  }
  absl::BlockingCounter done(static_cast<int>(inputs.size()));
  for (size_t i = 0; i < inputs.size(); ++i) {
    pool->Schedule([&run, &done, i] {
      run(i);
      done.DecrementCount();
    });
  }
  done.Wait();
  return results;
}

}  // namespace primaps
