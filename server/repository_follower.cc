#include "server/repository_follower.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace primaps {

RepositoryFollower::RepositoryFollower(std::unique_ptr<ModelSource> source,
                                       ModelRegistry* registry, Options options)
    : source_(std::move(source)),
      registry_(registry),
      options_(std::move(options)) {}

RepositoryFollower::~RepositoryFollower() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t RepositoryFollower::refused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refused_.size();
}

absl::Status RepositoryFollower::PollOnce() {
  std::lock_guard<std::mutex> poll_lock(poll_mu_);
  VersionPolicy policy = options_.policy;
  ASSIGN_OR_RETURN(const std::string policy_text, source_->ReadPolicy());
  if (!policy_text.empty()) {
    auto parsed = ParseVersionPolicy(policy_text);
    if (!parsed.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the repository's POLICY file: ", parsed.status().message()));
    }
    policy = *parsed;
  }
  ASSIGN_OR_RETURN(const std::vector<uint64_t> versions,
                   source_->ListVersions());
  std::set<uint64_t> refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    refused = refused_;
  }
  const std::optional<uint64_t> chosen =
      ChooseVersion(versions, policy, refused);
  if (!chosen) return absl::OkStatus();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (*chosen == served_) return absl::OkStatus();
  }
  const std::string where = source_->Describe(*chosen);
  absl::Status status;
  auto bytes = source_->ReadHead(*chosen);
  if (bytes.ok()) {
    status =
        registry_
            ->LoadVersion(*bytes, *chosen, absl::StrCat("repository ", where))
            .status();
  } else {
    status = bytes.status();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!status.ok()) {
    refused_.insert(*chosen);
    if (options_.log) {
      options_.log(absl::StrCat("refused head ", where, ": ", status.message(),
                                "; keeping version ",
                                registry_->Current()->version));
    }
    return absl::OkStatus();
  }
  served_ = *chosen;
  if (options_.log) options_.log(absl::StrCat("serving head ", where));
  if (options_.on_load) options_.on_load();
  return absl::OkStatus();
}

void RepositoryFollower::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void RepositoryFollower::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    stop_changed_.wait_for(lock,
                           absl::ToChronoNanoseconds(options_.poll_interval),
                           [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    const absl::Status status = PollOnce();
    if (!status.ok() && options_.log)
      options_.log(absl::StrCat("model repository: ", status.message()));
    lock.lock();
  }
}

}  // namespace primaps
