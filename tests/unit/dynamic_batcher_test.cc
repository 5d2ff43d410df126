#include "server/dynamic_batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

#include "engine/backbone/builtin_backbone.h"

namespace primaps {
namespace {

// A countdown latch on std::mutex: these tests run under ThreadSanitizer in
// CI, which cannot see through Debian's uninstrumented absl::Notification
// and absl::BlockingCounter.
class Latch {
 public:
  explicit Latch(int count) : count_(count) {}
  void CountDown() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--count_ == 0) zero_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    zero_.wait(lock, [this] { return count_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable zero_;
  int count_;
};

std::shared_ptr<const NormalizedImage> Image(int h, int w, float value) {
  auto image = std::make_shared<NormalizedImage>();
  image->height = image->valid_height = h;
  image->width = image->valid_width = w;
  image->data.assign(static_cast<size_t>(3) * h * w, value);
  for (size_t i = 0; i < image->data.size(); i += 7) image->data[i] = -value;
  return image;
}

struct Recorder {
  std::mutex mu;
  std::vector<int> batch_sizes;
  DynamicBatcher::BatchObserver observer() {
    return [this](int size, absl::Duration, absl::Duration) {
      std::lock_guard<std::mutex> lock(mu);
      batch_sizes.push_back(size);
    };
  }
};

TEST(DynamicBatcherTest, BatchesUpToMaxAndResultsMatchSingleCalls) {
  auto backbone = CreateBuiltinBackbone();
  Recorder recorder;
  DynamicBatcher::Options options;
  options.max_batch = 4;
  options.max_queue_delay = absl::Milliseconds(200);
  std::vector<absl::StatusOr<FeatureMap>> results(
      10, absl::UnknownError("not called"));
  std::vector<std::shared_ptr<const NormalizedImage>> images;
  {
    DynamicBatcher batcher(options, backbone.get(), recorder.observer());
    Latch done(10);
    for (int i = 0; i < 10; ++i) {
      // Two sizes, interleaved: batches must not mix them.
      images.push_back(Image(i % 2 ? 32 : 40, 48, 0.1f * i));
      auto work = std::make_unique<DynamicBatcher::Work>();
      work->image = images.back();
      work->done = [&results, &done, i](absl::StatusOr<FeatureMap> f) {
        results[i] = std::move(f);
        done.CountDown();
      };
      ASSERT_TRUE(batcher.Submit(work).ok());
    }
    done.Wait();
  }
  int total = 0;
  for (int size : recorder.batch_sizes) {
    EXPECT_LE(size, 4);
    total += size;
  }
  EXPECT_EQ(total, 10);
  EXPECT_LT(recorder.batch_sizes.size(), 10u);  // some batching happened
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    auto single = backbone->Extract({images[i].get()});
    ASSERT_TRUE(single.ok());
    EXPECT_EQ(results[i]->data, (*single)[0].data) << i;
  }
}

TEST(DynamicBatcherTest, FullQueueIsRefusedQuickly) {
  auto backbone = CreateBuiltinBackbone();
  DynamicBatcher::Options options;
  options.max_batch = 1;
  options.max_queue = 2;
  options.max_queue_delay = absl::ZeroDuration();
  Latch release(1), first_running(1);
  Latch done(3);
  DynamicBatcher batcher(options, backbone.get());
  auto submit = [&](bool block) {
    auto work = std::make_unique<DynamicBatcher::Work>();
    work->image = Image(16, 16, 0.5f);
    work->done = [&, block](absl::StatusOr<FeatureMap>) {
      if (block) {
        first_running.CountDown();
        release.Wait();  // holds the batcher thread
      }
      done.CountDown();
    };
    return batcher.Submit(work);
  };
  ASSERT_TRUE(submit(true).ok());
  first_running.Wait();
  EXPECT_TRUE(submit(false).ok());
  EXPECT_TRUE(submit(false).ok());
  EXPECT_EQ(batcher.queue_depth(), 2);
  const absl::Status refused = submit(false);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("limit 2"), std::string::npos);
  release.CountDown();
  done.Wait();
}

TEST(DynamicBatcherTest, ExpiredAndCancelledWorkIsNotComputed) {
  auto backbone = CreateBuiltinBackbone();
  Recorder recorder;
  DynamicBatcher batcher({}, backbone.get(), recorder.observer());
  Latch done(2);
  absl::Status expired, cancelled;
  auto late = std::make_unique<DynamicBatcher::Work>();
  late->image = Image(16, 16, 0.f);
  late->deadline = absl::Now() - absl::Seconds(1);
  late->done = [&](absl::StatusOr<FeatureMap> f) {
    expired = f.status();
    done.CountDown();
  };
  auto gone = std::make_unique<DynamicBatcher::Work>();
  gone->image = Image(16, 16, 0.f);
  gone->is_cancelled = [] { return true; };
  gone->done = [&](absl::StatusOr<FeatureMap> f) {
    cancelled = f.status();
    done.CountDown();
  };
  ASSERT_TRUE(batcher.Submit(late).ok());
  ASSERT_TRUE(batcher.Submit(gone).ok());
  done.Wait();
  EXPECT_EQ(expired.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(cancelled.code(), absl::StatusCode::kCancelled);
  std::lock_guard<std::mutex> lock(recorder.mu);
  EXPECT_TRUE(recorder.batch_sizes.empty());  // no forward pass ran
}

TEST(DynamicBatcherTest, BackboneErrorsReachEveryCaller) {
  auto backbone = CreateBuiltinBackbone();
  DynamicBatcher batcher({}, backbone.get());
  Latch done(1);
  absl::Status status;
  auto work = std::make_unique<DynamicBatcher::Work>();
  work->image = Image(4, 4, 0.f);  // smaller than one patch
  work->done = [&](absl::StatusOr<FeatureMap> f) {
    status = f.status();
    done.CountDown();
  };
  ASSERT_TRUE(batcher.Submit(work).ok());
  done.Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST(DynamicBatcherTest, DestructorFinishesQueuedWork) {
  auto backbone = CreateBuiltinBackbone();
  std::atomic<int> finished{0};
  {
    DynamicBatcher::Options options;
    options.max_queue_delay =
        absl::Seconds(30);  // would wait long without the drain
    options.max_batch = 64;
    DynamicBatcher batcher(options, backbone.get());
    for (int i = 0; i < 5; ++i) {
      auto work = std::make_unique<DynamicBatcher::Work>();
      work->image = Image(16, 16, 0.f);
      work->done = [&](absl::StatusOr<FeatureMap> f) { finished += f.ok(); };
      ASSERT_TRUE(batcher.Submit(work).ok());
    }
  }
  EXPECT_EQ(finished, 5);
}

// The built-in backbone, except that its first forwards throw what
// LibTorch can let out on a real machine (an allocation that fails, a
// library error that is not c10::Error).
class ThrowingBackbone : public Backbone {
 public:
  ThrowingBackbone() : inner_(CreateBuiltinBackbone()) {}
  const std::string& id() const override { return inner_->id(); }
  int patch_size() const override { return inner_->patch_size(); }
  int feature_dim() const override { return inner_->feature_dim(); }
  absl::StatusOr<std::vector<FeatureMap>> Extract(
      const std::vector<const NormalizedImage*>& images,
      const StopCheck* stop) override {
    const int call = calls_++;
    if (call == 0) throw std::bad_alloc();
    if (call == 1) throw std::runtime_error("cuBLAS said no");
    return inner_->Extract(images, stop);
  }

 private:
  std::unique_ptr<Backbone> inner_;
  std::atomic<int> calls_{0};
};

TEST(DynamicBatcherTest, ExceptionsFromTheBackboneBecomeErrors) {
  ThrowingBackbone backbone;
  DynamicBatcher::Options options;
  options.max_batch = 1;
  DynamicBatcher batcher(options, &backbone, nullptr);
  std::vector<absl::StatusOr<FeatureMap>> results;
  for (int i = 0; i < 3; ++i) {
    Latch done(1);
    absl::StatusOr<FeatureMap> result = absl::UnknownError("not called");
    auto work = std::make_unique<DynamicBatcher::Work>();
    work->image = Image(32, 32, 0.5f);
    work->done = [&](absl::StatusOr<FeatureMap> f) {
      result = std::move(f);
      done.CountDown();
    };
    ASSERT_TRUE(batcher.Submit(work).ok());
    done.Wait();
    results.push_back(std::move(result));
  }
  EXPECT_EQ(results[0].status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(results[0].status().message().find("out of memory"),
            std::string::npos);
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(results[1].status().message().find("cuBLAS said no"),
            std::string::npos);
  // The batcher's thread lives on and serves the next request.
  EXPECT_TRUE(results[2].ok()) << results[2].status();
}

}  // namespace
}  // namespace primaps
