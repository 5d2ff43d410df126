// The trainer's client of the servers: features (and PriMaPs masks) of
// crops and tensors, spread round-robin over the servers, with the time
// they were busy for the trainer's log.
#ifndef PRIMAPS_TRAINER_FEATURE_SOURCE_H_
#define PRIMAPS_TRAINER_FEATURE_SOURCE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/primaps_client.h"
#include "engine/backbone/backbone.h"
#include "engine/image/image.h"
#include "trainer/augment.h"
#include "trainer/trainer_options.h"

namespace primaps {

struct View {
  RgbImage crop;        // original view
  FeatureMap features;  // of the original view
  LabelMap masks;       // PriMaPs mask map (0 = background)
};

// Talks to the servers: features (and masks) for raw crops, spreading
// requests round-robin. `kind` PROJECTION asks for the projection's code
// (what STEGO's heads read); the masks always come from the backbone's
// features.
class FeatureSource {
 public:
  FeatureSource(const std::vector<std::string>& servers, int resize,
                v1::FeatureKind kind = v1::FEATURE_KIND_BACKBONE)
      : resize_(resize), kind_(kind) {
    for (const std::string& s : servers) {
      ClientOptions options;
      options.target = s;
      options.retries = 8;
      clients_.push_back(*PrimapsClient::Create(options));
    }
  }

  absl::StatusOr<v1::FeatureResponse> Features(const RgbImage& crop,
                                               bool masks) {
    v1::FeatureRequest request;
    v1::RawImage* raw = request.mutable_image()->mutable_raw();
    raw->set_width(crop.width);
    raw->set_height(crop.height);
    raw->set_channels(3);
    raw->set_pixels(crop.pixels.data(), crop.pixels.size());
    request.mutable_preprocess()->set_resize(resize_);
    request.set_masks(masks);
    return Send(request);
  }

  // Features of a normalized tensor (the student view, augmented in that
  // space as the reference does, and the validation crops: never
  // requantized to 8 bits).
  absl::StatusOr<v1::FeatureResponse> Features(const FloatImage& image,
                                               bool masks = false) {
    v1::FeatureRequest request;
    request.set_masks(masks);
    v1::NormalizedTensor* t = request.mutable_image()->mutable_tensor();
    t->set_height(image.height);
    t->set_width(image.width);
    t->set_data(image.data.data(), image.data.size() * sizeof(float));
    return Send(request);
  }

  absl::StatusOr<v1::FeatureResponse> Send(v1::FeatureRequest request) {
    request.set_features(kind_);
    PrimapsClient* client = clients_[next_++ % clients_.size()].get();
    Begin();
    auto response = client->ExtractFeatures(request);
    End();
    return response;
  }

  // Starts the busy accounting afresh (at the start of the EM steps).
  void ResetBusy() {
    absl::MutexLock lock(&mu_);
    first_ = absl::InfinitePast();
    busy_ = absl::ZeroDuration();
    if (in_flight_ > 0) busy_since_ = absl::Now();
  }

  // Fraction of the time since the first request during which at least one
  // request was outstanding: how busy the trainer keeps the servers.
  double BusyFraction() {
    absl::MutexLock lock(&mu_);
    absl::Duration busy = busy_;
    if (in_flight_ > 0) busy += absl::Now() - busy_since_;
    const absl::Duration total = absl::Now() - first_;
    return total > absl::ZeroDuration() ? absl::FDivDuration(busy, total) : 0;
  }

 private:
  void Begin() {
    absl::MutexLock lock(&mu_);
    if (first_ == absl::InfinitePast()) first_ = absl::Now();
    if (in_flight_++ == 0) busy_since_ = absl::Now();
  }
  void End() {
    absl::MutexLock lock(&mu_);
    if (--in_flight_ == 0) busy_ += absl::Now() - busy_since_;
  }

  const int resize_;
  const v1::FeatureKind kind_;
  std::atomic<size_t> next_{0};
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time first_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time busy_since_ ABSL_GUARDED_BY(mu_);
  absl::Duration busy_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<PrimapsClient>> clients_;
};

// The features of a response as a map (D x h x w).
FeatureMap ToFeatureMap(const v1::FeatureResponse& response);

// `options` completed from what the first server serves: resize 0 made
// 320, or 322 for a patch-14 (DINOv2) backbone (a multiple of its patch, as
// 320 is of 8); heads_on_projection set when it has a projection (STEGO's
// checkpoints), and then init_checkpoint "served" unless one is given.
absl::StatusOr<TrainerOptions> ResolveFromServers(TrainerOptions options);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_FEATURE_SOURCE_H_
