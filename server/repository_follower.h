// Keeps a server on the head a model repository says it should serve.
#ifndef PRIMAPS_SERVER_REPOSITORY_FOLLOWER_H_
#define PRIMAPS_SERVER_REPOSITORY_FOLLOWER_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/model_registry.h"
#include "server/model_repository.h"

namespace primaps {

class RepositoryFollower {
 public:
  struct Options {
    absl::Duration poll_interval = absl::Seconds(10);
    // The servers' policy; the repository's POLICY file overrides it.
    VersionPolicy policy;
    // Told each line worth logging (loads, refusals).
    std::function<void(const std::string&)> log;
    // Told after each head it publishes into the registry.
    std::function<void()> on_load;
  };

  RepositoryFollower(std::unique_ptr<ModelSource> source,
                     ModelRegistry* registry, Options options);
  // Stops polling.
  ~RepositoryFollower();

  // One poll: reads the policy and the complete versions, and loads the
  // version the policy chooses when it is not the one served. A version
  // that fails validation (truncated, NaN, another backbone's) is refused
  // once, logged and counted, and never tried again; the served head
  // stays. An unreadable repository changes nothing.
  absl::Status PollOnce();

  // Polls every poll_interval on a thread of its own, until destroyed.
  void Start();

  // Versions refused so far.
  uint64_t refused() const;

 private:
  void Loop();

  const std::unique_ptr<ModelSource> source_;
  ModelRegistry* const registry_;
  const Options options_;
  mutable std::mutex mu_;
  std::condition_variable stop_changed_;
  bool stopping_ = false;       // guarded by mu_
  std::set<uint64_t> refused_;  // guarded by mu_
  uint64_t served_ = 0;         // guarded by mu_; 0: none from here
  std::mutex poll_mu_;          // one poll at a time
  std::thread thread_;
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_REPOSITORY_FOLLOWER_H_
