// A model repository: numbered head versions that every server of a fleet
// follows, and that the trainer (or an operator) publishes into.
//
// Layout of a directory repository:
//
//   DIR/<V>/head.safetensors   version V = 1, 2, ... (decimal)
//   DIR/<V>/head.ckpt          instead: the reference's train.py checkpoint,
//                              whose heads are served (its backbone must be
//                              the server's)
//   DIR/<V>/evaluation.json    optional: the trainer's figures for V
//   DIR/POLICY                 optional: "latest" or "pinned:V"; overrides
//                              the servers' --version_policy (a rollback
//                              without a restart)
//
// A version is visible only when complete: a writer builds it in
// DIR/.incoming-<V>-<pid>/, fsyncs its files and that directory, renames it
// to DIR/<V> (atomic) and fsyncs DIR. Readers list only names that are
// plain numbers, so a writer killed at any point leaves no version half
// visible; its .incoming directory is removed by the next publication.
#ifndef PRIMAPS_SERVER_MODEL_REPOSITORY_H_
#define PRIMAPS_SERVER_MODEL_REPOSITORY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace primaps {

// Where versions come from. A directory today; an object store would be
// another implementation, with the servers' logic unchanged.
class ModelSource {
 public:
  virtual ~ModelSource() = default;
  // The complete versions, ascending.
  virtual absl::StatusOr<std::vector<uint64_t>> ListVersions() const = 0;
  // The head checkpoint of `version`.
  virtual absl::StatusOr<std::string> ReadHead(uint64_t version) const = 0;
  // The policy the repository sets; empty when it sets none.
  virtual absl::StatusOr<std::string> ReadPolicy() const = 0;
  // Where `version` lives, for logs and the status ("DIR/7").
  virtual std::string Describe(uint64_t version) const = 0;
};

std::unique_ptr<ModelSource> DirectoryModelSource(std::string dir);

// Publishes `head` (and `evaluation_json`, when not empty) as the next
// version of the directory repository DIR, by the protocol above; returns
// the version. Concurrent writers to one repository are not supported.
absl::StatusOr<uint64_t> PublishToDirectory(const std::string& dir,
                                            absl::string_view head,
                                            absl::string_view evaluation_json);

// Which version a server serves.
struct VersionPolicy {
  enum class Kind { kLatest, kPinned };
  Kind kind = Kind::kLatest;
  uint64_t pinned = 0;  // kPinned
};

// "latest" or "pinned:V" (V >= 1).
absl::StatusOr<VersionPolicy> ParseVersionPolicy(absl::string_view text);

// The version to serve among `complete` ones: the newest not `refused`
// (latest), or the pinned one when it is complete and not refused. None
// when there is no such version.
std::optional<uint64_t> ChooseVersion(const std::vector<uint64_t>& complete,
                                      const VersionPolicy& policy,
                                      const std::set<uint64_t>& refused);

}  // namespace primaps

#endif  // PRIMAPS_SERVER_MODEL_REPOSITORY_H_
