#include "server/dynamic_batcher.h"

#include <exception>
#include <new>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace primaps {
namespace {

// The backbone's forward on the batcher's thread, where an escaping
// exception would end the process: any that a backbone lets out (LibTorch
// turns most of its failures into c10::Error, which the ViT catches, but
// std::bad_alloc and others pass) becomes an error for the batch's requests.
absl::StatusOr<std::vector<FeatureMap>> ExtractCatching(
    Backbone* backbone, const std::vector<const NormalizedImage*>& images,
    const StopCheck* stop) {
  try {
    return backbone->Extract(images, stop);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory in the backbone's forward of ",
                     images.size(), " images"));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("the backbone's forward failed: ", e.what()));
  } catch (...) {
    return absl::InternalError(
        "the backbone's forward failed with an unknown exception");
  }
}

}  // namespace

DynamicBatcher::DynamicBatcher(Options options, Backbone* backbone,
                               BatchObserver observer)
    : options_(options), backbone_(backbone), observer_(std::move(observer)) {
  thread_ = std::thread([this] { Loop(); });
}

DynamicBatcher::~DynamicBatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

absl::Status DynamicBatcher::Submit(std::unique_ptr<Work>& work) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("the server is shutting down");
    if (static_cast<int>(queue_.size()) >= options_.max_queue) {
      return absl::ResourceExhaustedError(
          absl::StrCat("server overloaded: ", queue_.size(),
                       " images waiting for the backbone (limit ",
                       options_.max_queue, "); retry with backoff"));
    }
    queue_.push_back({std::move(*work), absl::Now()});
    work.reset();
  }
  changed_.notify_all();
  return absl::OkStatus();
}

int DynamicBatcher::queue_depth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(queue_.size());
}

std::vector<DynamicBatcher::Queued> DynamicBatcher::NextBatch() {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
  if (queue_.empty()) return {};
  // Wait for the oldest image's batch to fill, up to its delay.
  const NormalizedImage& first = *queue_.front().work.image;
  const int h = first.height, w = first.width;
  auto same_size = [h, w](const Queued& q) {
    return q.work.image->height == h && q.work.image->width == w;
  };
  const absl::Duration wait =
      queue_.front().enqueued + options_.max_queue_delay - absl::Now();
  changed_.wait_for(lock, absl::ToChronoNanoseconds(wait), [&] {
    if (stopping_) return true;
    int n = 0;
    for (const Queued& q : queue_) n += same_size(q);
    return n >= options_.max_batch;
  });
  std::vector<Queued> batch;
  for (auto it = queue_.begin();
       it != queue_.end() &&
       static_cast<int>(batch.size()) < options_.max_batch;) {
    if (same_size(*it)) {
      batch.push_back(std::move(*it));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  return batch;
}

void DynamicBatcher::Loop() {
  while (true) {
    std::vector<Queued> batch = NextBatch();
    if (batch.empty()) return;
    // Answer expired and cancelled work without computing it.
    const absl::Time now = absl::Now();
    std::vector<Queued> live;
    for (Queued& q : batch) {
      if (q.work.is_cancelled && q.work.is_cancelled()) {
        q.work.done(
            absl::CancelledError("request cancelled before the backbone ran"));
      } else if (now > q.work.deadline) {
        q.work.done(absl::DeadlineExceededError(absl::StrCat(
            "deadline passed after ", absl::FormatDuration(now - q.enqueued),
            " waiting for the backbone")));
      } else {
        live.push_back(std::move(q));
      }
    }
    if (live.empty()) continue;
    std::vector<const NormalizedImage*> images;
    for (const Queued& q : live) images.push_back(q.work.image.get());
    // The forward stops between its steps once nobody waits for any of the
    // batch's images any more.
    const StopCheck stop(absl::InfiniteFuture(), [&live] {
      const absl::Time now = absl::Now();
      for (const Queued& q : live) {
        const bool cancelled = q.work.is_cancelled && q.work.is_cancelled();
        if (!cancelled && now <= q.work.deadline) return false;
      }
      return true;
    });
    const absl::Time start = absl::Now();
    absl::StatusOr<std::vector<FeatureMap>> features =
        ExtractCatching(backbone_, images, &stop);
    const absl::Duration compute = absl::Now() - start;
    if (observer_)
      observer_(static_cast<int>(live.size()), start - live.front().enqueued,
                compute);
    for (size_t i = 0; i < live.size(); ++i) {
      if (features.ok()) {
        live[i].work.done(std::move((*features)[i]));
      } else if (features.status().code() == absl::StatusCode::kCancelled &&
                 !(live[i].work.is_cancelled && live[i].work.is_cancelled())) {
        live[i].work.done(absl::DeadlineExceededError(
            "deadline passed during the backbone's forward"));
      } else {
        live[i].work.done(features.status());
      }
    }
  }
}

}  // namespace primaps
