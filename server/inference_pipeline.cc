#include "server/inference_pipeline.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/crf/dense_crf.h"
#include "engine/image/channel_maps.h"
#include "engine/image/preprocess.h"
#include "engine/segmentation_head.h"

namespace primaps {

struct InferencePipeline::Prepared {
  PipelineRequest request;
  std::shared_ptr<const ModelSnapshot> model;
  std::shared_ptr<const NormalizedImage> image;
  PriMaPsOptions primaps;
};

InferencePipeline::InferencePipeline(PipelineOptions options,
                                     Backbone* backbone,
                                     ModelRegistry* registry,
                                     DynamicBatcher* batcher,
                                     ThreadPool* cpu_pool)
    : options_(std::move(options)),
      backbone_(backbone),
      registry_(registry),
      batcher_(batcher),
      cpu_pool_(cpu_pool) {}

namespace {

absl::Status CheckAlive(const PipelineRequest& request, const char* stage) {
  if (request.is_cancelled && request.is_cancelled()) {
    return absl::CancelledError(
        absl::StrCat("request cancelled before ", stage));
  }
  if (absl::Now() > request.deadline) {
    return absl::DeadlineExceededError(
        absl::StrCat("deadline passed before ", stage));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<NormalizedImage> InferencePipeline::TensorImage(
    const PipelineRequest& request) const {
  const int64_t h = request.tensor_height, w = request.tensor_width;
  const int p = backbone_->patch_size();
  if (h % p != 0 || w % p != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("image.tensor is ", w, "x", h,
                     "; both sides must be "
                     "multiples of ",
                     backbone_->id(), "'s patch size ", p));
  }
  if (h * w > options_.decode.max_pixels) {
    return absl::InvalidArgumentError(
        absl::StrCat("image.tensor is ", w, "x", h, " (", h * w,
                     " pixels), limit is ", options_.decode.max_pixels));
  }
  const size_t values = static_cast<size_t>(3 * h * w);
  if (request.tensor_data.size() != values * sizeof(float)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image.tensor.data holds ", request.tensor_data.size(), " bytes; 3 x ",
        h, " x ", w, " float32 values are ", values * sizeof(float)));
  }
  NormalizedImage image;
  image.height = image.valid_height = static_cast<int>(h);
  image.width = image.valid_width = static_cast<int>(w);
  image.data.resize(values);
  std::memcpy(image.data.data(), request.tensor_data.data(),
              request.tensor_data.size());
  for (float v : image.data) {
    if (!std::isfinite(v))
      return absl::InvalidArgumentError("image.tensor holds NaN or Inf");
  }
  return image;
}

ResizeFilter DefaultFilter(Task task) {
  return task == Task::kSegment ? ResizeFilter::kBilinear
                                : ResizeFilter::kAntialias;
}

absl::StatusOr<std::shared_ptr<InferencePipeline::Prepared>>
InferencePipeline::Prepare(const PipelineRequest& request) const {
  auto prepared = std::make_shared<Prepared>();
  prepared->request = request;
  // The model for the whole request: a swap from here on does not affect it.
  prepared->model = registry_->Current();
  if (request.task == Task::kSegment && prepared->model->head == nullptr) {
    return absl::FailedPreconditionError(
        "Segment needs a head checkpoint; none is loaded (load one with "
        "AdminService.LoadCheckpoint "
        "or --head)");
  }
  const int resize =
      request.resize == 0 ? options_.default_resize : request.resize;
  if (resize < backbone_->patch_size() || resize > options_.max_resize) {
    return absl::InvalidArgumentError(
        absl::StrCat("preprocess.resize is ", resize, ", must be in [",
                     backbone_->patch_size(), ", ", options_.max_resize, "]"));
  }
  prepared->primaps = options_.primaps;
  prepared->primaps.patch_size = backbone_->patch_size();
  if (request.threshold.has_value()) {
    const float t = *request.threshold;
    if (!std::isfinite(t) || t < 0.f || t > 1.f) {
      return absl::InvalidArgumentError(
          absl::StrCat("preprocess.threshold is ", t, ", must be in [0, 1]"));
    }
    prepared->primaps.threshold = t;
  }
  if (request.crf.has_value()) prepared->primaps.use_crf = *request.crf;
  RETURN_IF_ERROR(CheckAlive(request, "decoding"));
  if (request.tensor_height > 0) {
    ASSIGN_OR_RETURN(NormalizedImage image, TensorImage(request));
    prepared->image = std::make_shared<const NormalizedImage>(std::move(image));
    return prepared;
  }
  absl::StatusOr<RgbImage> rgb =
      request.raw_channels > 0
          ? ImageFromRawPixels(request.raw_width, request.raw_height,
                               request.raw_channels, request.raw_pixels,
                               options_.decode)
          : DecodeImage(request.encoded, options_.decode);
  if (!rgb.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("image: ", rgb.status().message()));
  }
  PreprocessOptions preprocess;
  preprocess.resize = resize;
  preprocess.crop = request.crop.value_or(options_.default_crop);
  preprocess.filter = request.filter.value_or(
      options_.default_filter.value_or(DefaultFilter(request.task)));
  preprocess.patch_size = backbone_->patch_size();
  // A center crop must be a patch multiple for backbones that insist.
  if (preprocess.crop == CropMode::kCenter &&
      resize % backbone_->patch_size() != 0 &&
      backbone_->id().rfind("dinov2", 0) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "preprocess.resize ", resize, " is not a multiple of ", backbone_->id(),
        "'s patch size ", backbone_->patch_size()));
  }
  ASSIGN_OR_RETURN(NormalizedImage image, Preprocess(*rgb, preprocess));
  prepared->image = std::make_shared<const NormalizedImage>(std::move(image));
  return prepared;
}

absl::StatusOr<PipelineResult> InferencePipeline::Finish(
    const Prepared& p, FeatureMap features) const {
  RETURN_IF_ERROR(CheckAlive(p.request, "PriMaPs"));
  PipelineResult result;
  result.model = p.model;
  result.image_height = p.image->height;
  result.image_width = p.image->width;
  const SegmentationHead* head = p.model->head.get();
  switch (p.request.task) {
    case Task::kFeatures: {
      if (p.request.with_masks) {
        ASSIGN_OR_RETURN(result.primaps,
                         ComputePriMaPs(features, *p.image, p.primaps));
      }
      result.features = std::move(features);
      return result;
    }
    case Task::kProposeMasks: {
      ASSIGN_OR_RETURN(result.primaps,
                       ComputePriMaPs(features, *p.image, p.primaps));
      return result;
    }
    case Task::kPseudoLabel: {
      ASSIGN_OR_RETURN(result.primaps,
                       ComputePriMaPs(features, *p.image, p.primaps));
      std::optional<LabelMap> prior;
      if (head != nullptr) {
        prior = HeadClassMap(*head, HeadKind::kClusterProbe, features,
                             p.image->height, p.image->width);
      }
      ASSIGN_OR_RETURN(result.labels, PseudoLabels(result.primaps.mask_labels,
                                                   prior ? &*prior : nullptr,
                                                   p.primaps.ignore_label));
      return result;
    }
    case Task::kSegment: {
      const int k = head->classes, h = p.image->height, w = p.image->width;
      const std::vector<float> grid =
          HeadScores(*head, HeadKind::kSegmentation, features);
      std::vector<float> scores = ResizeBilinearWindow(
          grid.data(), k, features.height, features.width, h, w, 0, 0, h, w);
      if (p.primaps.use_crf || p.request.with_probabilities) {
        SoftmaxOverChannels(&scores, k);
      }
      if (p.primaps.use_crf) {
        ASSIGN_OR_RETURN(scores, DenseCrfInference(DenormalizeToRgb(*p.image),
                                                   scores, k, p.primaps.crf));
      }
      result.labels = ArgmaxLabels(scores, k, w, h);
      if (p.request.with_probabilities)
        result.probabilities = std::move(scores);
      return result;
    }
  }
  return absl::InternalError("unknown task");
}

void InferencePipeline::Run(
    PipelineRequest request,
    std::function<void(absl::StatusOr<PipelineResult>)> done) {
  // Admission control: refuse at once rather than queue without bound.
  if (in_flight_.fetch_add(1) >= options_.max_in_flight) {
    const int now = --in_flight_;
    done(absl::ResourceExhaustedError(
        absl::StrCat("server overloaded: ", now, " requests in flight (limit ",
                     options_.max_in_flight, "); retry with backoff")));
    return;
  }
  auto shared_done =
      std::make_shared<std::function<void(absl::StatusOr<PipelineResult>)>>(
          [this,
           done = std::move(done)](absl::StatusOr<PipelineResult> result) {
            --in_flight_;
            done(std::move(result));
          });
  cpu_pool_->Schedule([this, request = std::move(request),
                       shared_done]() mutable {
    absl::StatusOr<std::shared_ptr<Prepared>> prepared = Prepare(request);
    if (!prepared.ok()) {
      (*shared_done)(prepared.status());
      return;
    }
    std::shared_ptr<Prepared> p = *std::move(prepared);
    DynamicBatcher::Work work;
    work.image = p->image;
    work.deadline = request.deadline;
    work.is_cancelled = request.is_cancelled;
    work.done = [this, p, shared_done](absl::StatusOr<FeatureMap> features) {
      if (!features.ok()) {
        (*shared_done)(features.status());
        return;
      }
      // Off the batcher thread: it goes back to the next batch.
      cpu_pool_->Schedule(
          [this, p, shared_done, f = *std::move(features)]() mutable {
            (*shared_done)(Finish(*p, std::move(f)));
          });
    };
    const absl::Status submitted = batcher_->Submit(std::move(work));
    if (!submitted.ok()) (*shared_done)(submitted);
  });
}

}  // namespace primaps
