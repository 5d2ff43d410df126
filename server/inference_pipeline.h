// One request's path through the server, without gRPC: validate, decode
// and preprocess on the CPU pool, backbone features through the dynamic
// batcher, then PriMaPs, the head and the CRF back on the CPU pool (so the
// next batch's forward pass overlaps them). Deadlines and cancellation are
// checked between stages.
#ifndef PRIMAPS_SERVER_INFERENCE_PIPELINE_H_
#define PRIMAPS_SERVER_INFERENCE_PIPELINE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/thread_pool.h"
#include "engine/backbone/backbone.h"
#include "engine/image/image_decode.h"
#include "engine/primaps.h"
#include "server/dynamic_batcher.h"
#include "server/model_registry.h"
#include "server/server_defaults.h"

namespace primaps {

enum class Task { kProposeMasks, kPseudoLabel, kSegment, kFeatures };

struct PipelineRequest {
  Task task = Task::kProposeMasks;
  // Either encoded image bytes, or raw pixels (raw_channels > 0).
  std::string encoded;
  std::string raw_pixels;
  int64_t raw_width = 0, raw_height = 0, raw_channels = 0;
  // Or a normalized tensor (tensor_height > 0): 3 x h x w float32 bytes.
  std::string tensor_data;
  int64_t tensor_height = 0, tensor_width = 0;
  // Overrides of the server defaults.
  int resize = 0;  // 0 = default
  std::optional<CropMode> crop;
  std::optional<ResizeFilter> filter;
  std::optional<OutputSize> output_size;
  std::optional<CrfResolution> crf_resolution;
  std::optional<float> threshold;
  std::optional<bool> crf;
  // kFeatures: also compute PriMaPs masks.
  bool with_masks = false;
  // kSegment: also return class probabilities.
  bool with_probabilities = false;
  // Refused (FAILED_PRECONDITION) when the served head is older; 0: any.
  uint64_t min_head_version = 0;
  absl::Time deadline = absl::InfiniteFuture();
  // Polled between stages; may be null.
  std::function<bool()> is_cancelled;
};

// Which pixels a result's label maps describe.
struct LabelGeometry {
  int input_width = 0, input_height = 0;  // after EXIF orientation
  int resize = 0;                         // the short side used
  CropMode crop = CropMode::kCenter;
  // The resized image's content in the processed tensor.
  int processed_width = 0, processed_height = 0;
  OutputSize output_size = OutputSize::kProcessed;
  int output_width = 0, output_height = 0;
  std::optional<CrfResolution> crf_resolution;  // unset: no CRF ran
};

struct PipelineResult {
  // The model that produced this result (taken when the request started).
  std::shared_ptr<const ModelSnapshot> model;
  // The processed tensor's size.
  int image_height = 0, image_width = 0;
  LabelGeometry geometry;
  FeatureMap features;    // kFeatures
  PriMaPsResult primaps;  // kProposeMasks, kPseudoLabel, kFeatures with masks
  LabelMap labels;        // kPseudoLabel, kSegment
  std::vector<float> probabilities;  // kSegment with probabilities
};

struct PipelineOptions {
  DecodeOptions decode;
  int default_resize = server_defaults::kResize;
  CropMode default_crop = CropMode::kCenter;
  // Unset: the reference's filter per task (DefaultFilter).
  std::optional<ResizeFilter> default_filter;
  OutputSize default_output_size = OutputSize::kProcessed;
  CrfResolution default_crf_resolution = CrfResolution::kProcessed;
  PriMaPsOptions primaps;  // threshold and CRF defaults
  int max_resize = server_defaults::kMaxResize;
  // Most patch tokens per image: the backbone's cost grows with their
  // square.
  int64_t max_tokens = server_defaults::kMaxTokens;
  // Most pixels for a CRF at the original resolution (its buffers are
  // about 4 x channels floats per pixel).
  int64_t max_crf_pixels = server_defaults::kMaxCrfPixels;
  // After a request whose processed or output image has at least this many
  // pixels, freed memory is given back to the system (ReleaseFreedMemory);
  // smaller requests reuse what the allocator keeps.
  int64_t release_after_pixels = int64_t{512} * 512;
  // Large requests (over large_request_tokens patch tokens) admitted at
  // once; more are refused with RESOURCE_EXHAUSTED, so that a flood of them
  // cannot take every worker (and the backbone's queue) from small ones.
  // 0 = no separate limit.
  int max_large_in_flight = 1;
  int64_t large_request_tokens = server_defaults::kLargeRequestTokens;
  // Told the time each request spends in each of its CPU stages (decode,
  // preprocess, proposals, labels, head); may be empty.
  std::function<void(const char* stage, absl::Duration duration)> on_stage;
  // Told of each decomposition that max_masks ended before the coverage;
  // may be empty.
  std::function<void()> on_mask_cap;
  // Requests in the pipeline at once (queued for decoding, waiting for the
  // backbone or in PriMaPs); more are refused at once with
  // RESOURCE_EXHAUSTED, so overload costs no memory and no waiting.
  int max_in_flight = server_defaults::kMaxQueue;
};

// Gives the allocator's free memory back to the system.
void ReleaseFreedMemory();

// The reference's resize filter for a task: Segment is evaluation-like
// (torch's bilinear), everything else is pseudo-label-like (Pillow's
// antialiased bilinear).
ResizeFilter DefaultFilter(Task task);

class InferencePipeline {
 public:
  // Borrowed pointers; all must outlive the pipeline.
  InferencePipeline(PipelineOptions options, Backbone* backbone,
                    ModelRegistry* registry, DynamicBatcher* batcher,
                    ThreadPool* cpu_pool);

  // Runs `request` asynchronously; `done` is called exactly once, on some
  // pool thread, with the result or a Status naming what was wrong
  // (INVALID_ARGUMENT for bad input, RESOURCE_EXHAUSTED when overloaded,
  // DEADLINE_EXCEEDED, CANCELLED, FAILED_PRECONDITION for Segment without
  // a head).
  void Run(PipelineRequest request,
           std::function<void(absl::StatusOr<PipelineResult>)> done);

 private:
  struct Prepared;
  // A request's normalized tensor, checked (patch multiples, pixel limit,
  // size, finite values).
  absl::StatusOr<NormalizedImage> TensorImage(
      const PipelineRequest& request) const;
  absl::StatusOr<std::shared_ptr<Prepared>> Prepare(
      const PipelineRequest& request);
  // Refuses a large request beyond max_large_in_flight; otherwise gives it
  // a slot that its Prepared holds.
  absl::Status AdmitLarge(Prepared* prepared);
  // The output size, crop and resize for `request` on a width x height
  // input, checked against the limits before any decoding.
  absl::Status PlanGeometry(const PipelineRequest& request, int64_t width,
                            int64_t height, Prepared* prepared) const;
  bool IsLarge(const Prepared& prepared) const;
  void Observe(const char* stage, absl::Time since) const;
  void ObservePriMaPs(const PriMaPsResult& primaps) const;
  absl::StatusOr<LabelMap> PseudoLabelsFor(const Prepared& prepared,
                                           const FeatureMap& features,
                                           const PriMaPsResult& primaps) const;
  absl::StatusOr<PipelineResult> Segment(const Prepared& prepared,
                                         const FeatureMap& features,
                                         PipelineResult result) const;
  absl::StatusOr<PipelineResult> Finish(const Prepared& prepared,
                                        FeatureMap features) const;

  const PipelineOptions options_;
  Backbone* const backbone_;
  ModelRegistry* const registry_;
  DynamicBatcher* const batcher_;
  ThreadPool* const cpu_pool_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> large_in_flight_{0};
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_INFERENCE_PIPELINE_H_
