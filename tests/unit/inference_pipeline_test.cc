// The pipeline without gRPC: a cancelled request costs no backbone forward.
#include "server/inference_pipeline.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/time/clock.h"
#include "base/thread_pool.h"
#include "engine/backbone/builtin_backbone.h"
#include "server/dynamic_batcher.h"
#include "server/model_registry.h"

namespace primaps {
namespace {

// The built-in backbone, counting the images it computes features of.
class CountingBackbone : public Backbone {
 public:
  const std::string& id() const override { return inner_->id(); }
  int patch_size() const override { return inner_->patch_size(); }
  int feature_dim() const override { return inner_->feature_dim(); }
  absl::StatusOr<std::vector<FeatureMap>> Extract(
      const std::vector<const NormalizedImage*>& images,
      const StopCheck* stop = nullptr) override {
    forwarded += static_cast<int>(images.size());
    return inner_->Extract(images, stop);
  }
  std::atomic<int> forwarded{0};

 private:
  std::unique_ptr<Backbone> inner_ = CreateBuiltinBackbone();
};

class PipelineTest : public ::testing::Test {
 protected:
  PipelineTest()
      : registry_(ModelRegistry::Options{backbone_.id(),
                                         backbone_.feature_dim(), "", 8}),
        // A batch waits up to 300 ms to fill: queued work sits there.
        batcher_({8, absl::Milliseconds(300), 64}, &backbone_),
        pool_(2),
        pipeline_(Options(), &backbone_, &registry_, &batcher_, &pool_) {}

  static PipelineOptions Options() {
    PipelineOptions o;
    o.default_resize = 64;
    return o;
  }

  // Runs `request` and waits for its result.
  absl::Status Run(PipelineRequest request) {
    std::mutex mu;
    std::condition_variable cv;
    bool finished = false;
    absl::Status status;
    pipeline_.Run(std::move(request),
                  [&](absl::StatusOr<PipelineResult> result) {
                    std::lock_guard<std::mutex> lock(mu);
                    status = result.status();
                    finished = true;
                    cv.notify_all();
                  });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return finished; });
    return status;
  }

  static PipelineRequest Request() {
    PipelineRequest r;
    r.task = Task::kFeatures;
    r.raw_width = r.raw_height = 64;
    r.raw_channels = 3;
    r.raw_pixels.assign(64 * 64 * 3, 'x');
    return r;
  }

  CountingBackbone backbone_;
  ModelRegistry registry_;
  DynamicBatcher batcher_;
  ThreadPool pool_;
  InferencePipeline pipeline_;
};

TEST_F(PipelineTest, CancelledWhileQueuedCostsNoForward) {
  // Cancelled once it waits in the batcher's queue.
  std::atomic<bool> cancelled{false};
  std::thread canceller([&] {
    while (batcher_.queue_depth() == 0) absl::SleepFor(absl::Milliseconds(1));
    cancelled = true;
  });
  PipelineRequest request = Request();
  request.is_cancelled = [&] { return cancelled.load(); };
  const absl::Status status = Run(std::move(request));
  canceller.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_NE(status.message().find("before the backbone ran"),
            absl::string_view::npos)
      << status;
  EXPECT_EQ(backbone_.forwarded, 0);
  // The same request, not cancelled, is computed.
  EXPECT_TRUE(Run(Request()).ok());
  EXPECT_EQ(backbone_.forwarded, 1);
}

}  // namespace
}  // namespace primaps
