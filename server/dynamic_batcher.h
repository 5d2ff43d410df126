// Groups feature-extraction work from concurrent requests into batches for
// the backbone, which runs on one thread (one device stream).
//
// A batch holds images of one size (the backbone needs a uniform tensor),
// at most `max_batch` of them, and waits at most `max_queue_delay` after its
// oldest image arrived. The queue is bounded: Submit refuses with
// RESOURCE_EXHAUSTED instead of letting latency and memory grow.
#ifndef PRIMAPS_SERVER_DYNAMIC_BATCHER_H_
#define PRIMAPS_SERVER_DYNAMIC_BATCHER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/backbone/backbone.h"
#include "server/server_defaults.h"

namespace primaps {

class DynamicBatcher {
 public:
  struct Options {
    int max_batch = server_defaults::kMaxBatch;
    absl::Duration max_queue_delay =
        absl::Milliseconds(server_defaults::kMaxQueueDelayMs);
    // Images waiting, beyond which Submit refuses.
    int max_queue = server_defaults::kMaxBackboneQueue;
  };

  // Called once per batch, on the batcher thread, after the forward pass:
  // batch size, time the oldest image waited, forward time.
  using BatchObserver = std::function<void(int size, absl::Duration queued,
                                           absl::Duration compute)>;

  struct Work {
    std::shared_ptr<const NormalizedImage> image;
    // Past this, the work is answered with DEADLINE_EXCEEDED, not computed.
    absl::Time deadline = absl::InfiniteFuture();
    // Whether the caller's request was cancelled (may be empty); polled when
    // the work's batch is formed, so cancelled work costs no forward.
    std::function<bool()> is_cancelled;
    // Called exactly once, on the batcher thread, with the features or why
    // there are none. Keep it short: hand heavy work to another pool.
    std::function<void(absl::StatusOr<FeatureMap>)> done;
  };

  // `backbone` must outlive the batcher.
  DynamicBatcher(Options options, Backbone* backbone,
                 BatchObserver observer = nullptr);
  // Finishes every queued item (computing it), then joins the thread.
  ~DynamicBatcher();

  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // On OK the batcher takes `work` (it becomes null) and will call its
  // done. On error (queue full, shutting down) `work` is left as it was,
  // done not called: the caller still owns it and answers it.
  absl::Status Submit(std::unique_ptr<Work>& work);

  int queue_depth() const;

 private:
  struct Queued {
    Work work;
    absl::Time enqueued;
  };

  void Loop();
  // Takes the next batch off the queue, waiting for it to fill; empty when
  // stopping with nothing queued.
  std::vector<Queued> NextBatch();

  const Options options_;
  Backbone* const backbone_;
  const BatchObserver observer_;
  // std::mutex rather than absl::Mutex: ThreadSanitizer sees through
  // pthread mutexes, but not through an uninstrumented Abseil (Debian's),
  // and the batcher is one of the parts CI checks under TSan.
  mutable std::mutex mu_;
  std::condition_variable changed_;  // queue_ grew or stopping_ was set
  std::deque<Queued> queue_;         // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  std::thread thread_;
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_DYNAMIC_BATCHER_H_
