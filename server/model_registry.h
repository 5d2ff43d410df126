// The serving head, swapped live.
//
// Readers take a snapshot (a shared_ptr to an immutable ModelSnapshot) and
// hold it for one request: a swap never changes a request's model halfway
// and never waits for requests. IMPORTANT: hold a snapshot only for the
// duration of a request, or old heads stay in memory.
#ifndef PRIMAPS_SERVER_MODEL_REGISTRY_H_
#define PRIMAPS_SERVER_MODEL_REGISTRY_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "engine/segmentation_head.h"

namespace primaps {

struct ModelSnapshot {
  std::string backbone;
  std::string precision;  // of the backbone's forward pass
  // The ViT block the features come from, as the reference's dino_block
  // (1 = the last); 0 for the built-in backbone.
  int dino_block = 0;
  // The projection the heads read (ModelInfo.projection*); empty without.
  std::string projection;
  int projection_dim = 0;
  std::string projection_source;
  std::string projection_digest;
  // Null until a head is loaded.
  std::shared_ptr<const SegmentationHead> head;
  // 0 without a head; then 1, 2, ... one per publication, never reused.
  uint64_t version = 0;
  std::string digest;  // SHA-256 of the checkpoint bytes
  // Where the head came from: "--head PATH", "--weights PATH",
  // "AdminService", "AdminService rollback" or "repository DIR/V".
  std::string source;
};

class ModelRegistry {
 public:
  struct Options {
    // The backbone the server runs; heads for another are refused.
    std::string backbone;
    int feature_dim = 0;
    // LoadFromPath resolves paths inside this directory only; empty
    // disables loading by path.
    std::string checkpoint_dir;
    // Earlier heads kept for Rollback.
    size_t history = 8;
    // The backbone's precision, for ModelInfo.
    std::string precision = "fp32";
    // The feature block served (ModelSnapshot::dino_block); heads that name
    // another in their "dino_block" metadata are refused. 0: not checked.
    int dino_block = 0;
    // The projection after the backbone (ModelSnapshot::projection*): heads
    // whose "projection_digest" metadata names another, or that name one
    // on a server without, are refused.
    std::string projection;
    int projection_dim = 0;
    std::string projection_source;
    std::string projection_digest;
  };

  explicit ModelRegistry(Options options);

  // The snapshot to use for one request; safe from any thread. Readers never
  // wait for a writer's validation: std::atomic_load of a shared_ptr takes
  // only a short internal lock in libstdc++ (not lock-free), for the copy.
  std::shared_ptr<const ModelSnapshot> Current() const;

  // Validates `bytes` as a head checkpoint and publishes it. On error the
  // current snapshot stays as it was.
  absl::StatusOr<std::shared_ptr<const ModelSnapshot>> LoadFromBytes(
      absl::string_view bytes, std::string source = "AdminService")
      ABSL_LOCKS_EXCLUDED(write_mu_);

  // The same under a version numbered elsewhere (a model repository's), so
  // that every server of a fleet names a head alike; later loads without
  // a version number after it.
  absl::StatusOr<std::shared_ptr<const ModelSnapshot>> LoadVersion(
      absl::string_view bytes, uint64_t version, std::string source)
      ABSL_LOCKS_EXCLUDED(write_mu_);

  // Loads `relative_path` inside options.checkpoint_dir. Refuses absolute
  // paths, ".." components and symlinks that lead outside the directory
  // (PERMISSION_DENIED), and missing files (NOT_FOUND).
  absl::StatusOr<std::shared_ptr<const ModelSnapshot>> LoadFromPath(
      const std::string& relative_path) ABSL_LOCKS_EXCLUDED(write_mu_);

  // Republishes the head that served before the current one, under a new
  // version. FAILED_PRECONDITION when there is none.
  absl::StatusOr<std::shared_ptr<const ModelSnapshot>> Rollback()
      ABSL_LOCKS_EXCLUDED(write_mu_);

  // Earlier snapshots, newest first.
  std::vector<std::shared_ptr<const ModelSnapshot>> History() const
      ABSL_LOCKS_EXCLUDED(write_mu_);
  uint64_t swaps() const ABSL_LOCKS_EXCLUDED(write_mu_);
  uint64_t refused_swaps() const ABSL_LOCKS_EXCLUDED(write_mu_);

 private:
  // `head`, or INVALID_ARGUMENT when its metadata names another dino_block
  // or projection than the server's.
  absl::StatusOr<SegmentationHead> CheckHeadFits(SegmentationHead head) const;
  // The snapshot's fields that describe the server, not the head.
  void FillServerFields(ModelSnapshot* snapshot) const;

  // version 0: the next of this registry's own numbers.
  void Publish(std::shared_ptr<const SegmentationHead> head, std::string digest,
               std::string source, uint64_t version = 0)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  const Options options_;
  // Read with std::atomic_load, written with std::atomic_store under
  // write_mu_ (writers are serialized, readers never block).
  std::shared_ptr<const ModelSnapshot> current_;
  mutable absl::Mutex write_mu_;
  std::deque<std::shared_ptr<const ModelSnapshot>> history_
      ABSL_GUARDED_BY(write_mu_);
  uint64_t next_version_ ABSL_GUARDED_BY(write_mu_) = 1;
  uint64_t swaps_ ABSL_GUARDED_BY(write_mu_) = 0;
  uint64_t refused_swaps_ ABSL_GUARDED_BY(write_mu_) = 0;
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_MODEL_REGISTRY_H_
