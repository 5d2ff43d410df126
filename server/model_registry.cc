#include "server/model_registry.h"

#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "engine/reference_checkpoint.h"

namespace primaps {
namespace {

// Largest head checkpoint accepted (a 254 x 4096 head is ~8 MB).
constexpr uint64_t kMaxCheckpointBytes = uint64_t{1} << 30;

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buffer[PATH_MAX];
  if (::realpath(path.c_str(), buffer) == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint \"", path, "\" does not exist"));
  }
  return std::string(buffer);
}

}  // namespace

ModelRegistry::ModelRegistry(Options options) : options_(std::move(options)) {
  auto empty = std::make_shared<ModelSnapshot>();
  FillServerFields(empty.get());
  std::atomic_store(&current_,
                    std::shared_ptr<const ModelSnapshot>(std::move(empty)));
}

absl::StatusOr<SegmentationHead> ModelRegistry::CheckHeadFits(
    SegmentationHead head) const {
  const auto projection = head.extra_metadata.find("projection_digest");
  const std::string head_projection =
      projection == head.extra_metadata.end() ? "" : projection->second;
  if (head_projection != options_.projection_digest) {
    auto reads = [](const std::string& digest, const std::string& source) {
      return digest.empty() ? std::string("the backbone's features")
                            : absl::StrCat("the code of projection ", digest,
                                           source.empty() ? "" : " (", source,
                                           source.empty() ? "" : ")");
    };
    return absl::InvalidArgumentError(absl::StrCat(
        "the head reads ", reads(head_projection, ""),
        "; this server's heads read ",
        reads(options_.projection_digest, options_.projection_source)));
  }
  const auto named = head.extra_metadata.find("dino_block");
  if (options_.dino_block == 0 || named == head.extra_metadata.end())
    return head;
  if (named->second != absl::StrCat(options_.dino_block)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the head was trained on the features of dino_block ",
                     named->second, "; this server serves dino_block ",
                     options_.dino_block, " (--dino_block)"));
  }
  return head;
}

void ModelRegistry::FillServerFields(ModelSnapshot* snapshot) const {
  snapshot->backbone = options_.backbone;
  snapshot->precision = options_.precision;
  snapshot->dino_block = options_.dino_block;
  snapshot->projection = options_.projection;
  snapshot->projection_dim = options_.projection_dim;
  snapshot->projection_source = options_.projection_source;
  snapshot->projection_digest = options_.projection_digest;
}

std::shared_ptr<const ModelSnapshot> ModelRegistry::Current() const {
  return std::atomic_load(&current_);
}

void ModelRegistry::Publish(std::shared_ptr<const SegmentationHead> head,
                            std::string digest, std::string source,
                            uint64_t version) {
  auto snapshot = std::make_shared<ModelSnapshot>();
  FillServerFields(snapshot.get());
  snapshot->head = std::move(head);
  snapshot->version = version > 0 ? version : next_version_;
  next_version_ = std::max(next_version_, snapshot->version + 1);
  snapshot->digest = std::move(digest);
  snapshot->source = std::move(source);
  const std::shared_ptr<const ModelSnapshot> previous =
      std::atomic_load(&current_);
  if (previous->head != nullptr) {
    history_.push_front(previous);
    if (history_.size() > options_.history) history_.pop_back();
  }
  std::atomic_store(&current_,
                    std::shared_ptr<const ModelSnapshot>(std::move(snapshot)));
  ++swaps_;
}

absl::StatusOr<std::shared_ptr<const ModelSnapshot>>
ModelRegistry::LoadFromBytes(absl::string_view bytes, std::string source) {
  return LoadVersion(bytes, 0, std::move(source));
}

absl::StatusOr<std::shared_ptr<const ModelSnapshot>> ModelRegistry::LoadVersion(
    absl::string_view bytes, uint64_t version, std::string source) {
  // Parse and validate outside the lock: a slow load does not hold up
  // Rollback or status calls.
  // A head file, or the heads of the reference's train.py checkpoint.
  auto head =
      ParseAnyHeadCheckpoint(bytes, options_.backbone, options_.feature_dim);
  if (head.ok()) head = CheckHeadFits(*std::move(head));
  std::string digest = Sha256Hex(bytes);
  absl::MutexLock lock(&write_mu_);
  if (!head.ok()) {
    ++refused_swaps_;
    return head.status();
  }
  Publish(std::make_shared<const SegmentationHead>(*std::move(head)),
          std::move(digest), std::move(source), version);
  return std::atomic_load(&current_);
}

absl::StatusOr<std::shared_ptr<const ModelSnapshot>>
ModelRegistry::LoadFromPath(const std::string& relative_path) {
  auto refuse = [this](absl::Status status) {
    absl::MutexLock lock(&write_mu_);
    ++refused_swaps_;
    return status;
  };
  if (options_.checkpoint_dir.empty()) {
    return refuse(absl::FailedPreconditionError(
        "loading by path is disabled: the server has no --checkpoint_dir"));
  }
  if (relative_path.empty() || relative_path[0] == '/') {
    return refuse(absl::PermissionDeniedError(
        absl::StrCat("checkpoint path \"", relative_path,
                     "\" must be relative to the checkpoint directory")));
  }
  for (absl::string_view part : absl::StrSplit(relative_path, '/')) {
    if (part == "..") {
      return refuse(absl::PermissionDeniedError(absl::StrCat(
          "checkpoint path \"", relative_path, "\" contains \"..\"")));
    }
  }
  auto dir = RealPath(options_.checkpoint_dir);
  if (!dir.ok())
    return refuse(absl::FailedPreconditionError(
        "the checkpoint directory does not exist"));
  auto file = RealPath(absl::StrCat(*dir, "/", relative_path));
  if (!file.ok()) {
    return refuse(absl::NotFoundError(
        absl::StrCat("checkpoint \"", relative_path,
                     "\" does not exist in the checkpoint directory")));
  }
  // Symlinks are resolved above; what they lead to must still be inside.
  if (!absl::StartsWith(*file, *dir + "/")) {
    return refuse(absl::PermissionDeniedError(
        absl::StrCat("checkpoint path \"", relative_path,
                     "\" leads outside the checkpoint directory")));
  }
  auto bytes = ReadFile(*file, kMaxCheckpointBytes);
  if (!bytes.ok()) return refuse(bytes.status());
  return LoadFromBytes(*bytes, "AdminService " + relative_path);
}

absl::StatusOr<std::shared_ptr<const ModelSnapshot>> ModelRegistry::Rollback() {
  absl::MutexLock lock(&write_mu_);
  if (history_.empty()) {
    return absl::FailedPreconditionError("no earlier head to roll back to");
  }
  const std::shared_ptr<const ModelSnapshot> target = history_.front();
  history_.pop_front();
  // Publishing pushes the current head onto the history; take it back off
  // so that repeated rollbacks walk further into the past.
  Publish(target->head, target->digest, "AdminService rollback");
  history_.pop_front();
  return std::atomic_load(&current_);
}

std::vector<std::shared_ptr<const ModelSnapshot>> ModelRegistry::History()
    const {
  absl::MutexLock lock(&write_mu_);
  return {history_.begin(), history_.end()};
}

uint64_t ModelRegistry::swaps() const {
  absl::MutexLock lock(&write_mu_);
  return swaps_;
}

uint64_t ModelRegistry::refused_swaps() const {
  absl::MutexLock lock(&write_mu_);
  return refused_swaps_;
}

}  // namespace primaps
