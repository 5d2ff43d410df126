#include "server/inference_pipeline.h"

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/dense_labels.h"
#include "engine/image/image_header.h"
#include "engine/image/preprocess.h"
#include "engine/segmentation_head.h"

namespace primaps {

struct InferencePipeline::Prepared {
  PipelineRequest request;
  std::shared_ptr<const ModelSnapshot> model;
  std::shared_ptr<const NormalizedImage> image;
  PriMaPsOptions primaps;
  PreprocessOptions preprocess;
  LabelGeometry geometry;
  // Where labels go; its pixels point into `original`, which is kept only
  // for a CRF at the original size (a 4000x3000 photo is 36 MB).
  OutputTarget target;
  std::shared_ptr<const RgbImage> original;
  // The request's deadline and cancellation, polled inside PriMaPs and the
  // CRF (primaps.stop points here).
  StopCheck stop;
  // Patch tokens the backbone will see.
  int64_t tokens = 0;
  // Held by a large request while it is in the server: releases its place
  // among max_large_in_flight when the request is done with.
  std::shared_ptr<void> large_slot;
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

namespace {

const char* CropName(CropMode crop) {
  return crop == CropMode::kFull ? "full" : "center";
}

// The input's width and height as declared (encoded images: the header,
// before EXIF orientation, which at most swaps them; tokens do not depend
// on the order).
absl::Status DeclaredSize(const PipelineRequest& request, int64_t* width,
                          int64_t* height) {
  if (request.tensor_height > 0) {
    *width = request.tensor_width;
    *height = request.tensor_height;
  } else if (request.raw_channels > 0) {
    *width = request.raw_width;
    *height = request.raw_height;
  } else {
    absl::StatusOr<ImageHeader> header = ReadImageHeader(request.encoded);
    if (!header.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("image: ", header.status().message()));
    }
    *width = header->width;
    *height = header->height;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status InferencePipeline::PlanGeometry(const PipelineRequest& request,
                                             int64_t width, int64_t height,
                                             Prepared* prepared) const {
  const int p = backbone_->patch_size();
  LabelGeometry& g = prepared->geometry;
  g.output_size = request.output_size.value_or(options_.default_output_size);
  const bool original = g.output_size == OutputSize::kOriginal;
  if (original && request.crop == CropMode::kCenter) {
    return absl::InvalidArgumentError(
        "preprocess.output_size ORIGINAL covers the whole image, so it needs "
        "crop FULL (or unset); CENTER labels only the middle");
  }
  if (original && request.task == Task::kSegment &&
      request.with_probabilities) {
    return absl::InvalidArgumentError(
        "probabilities are returned only with output_size PROCESSED (at the "
        "original size they would be classes x 4 bytes per input pixel)");
  }
  g.crop =
      original ? CropMode::kFull : request.crop.value_or(options_.default_crop);
  g.input_width = static_cast<int>(width);
  g.input_height = static_cast<int>(height);
  if (request.tensor_height > 0) {
    // Already preprocessed: no resize, no crop.
    g.crop = CropMode::kFull;
    const int64_t tokens = (width / p) * (height / p);
    prepared->tokens = tokens;
    if (tokens > options_.max_tokens) {
      return absl::InvalidArgumentError(
          absl::StrCat("image.tensor of ", width, "x", height, " is ", tokens,
                       " patch tokens; the limit is ", options_.max_tokens,
                       " (--max_tokens)"));
    }
    return absl::OkStatus();
  }
  int resize = request.resize == 0 ? options_.default_resize : request.resize;
  if (resize < p || resize > options_.max_resize) {
    return absl::InvalidArgumentError(
        absl::StrCat("preprocess.resize is ", resize, ", must be in [", p, ", ",
                     options_.max_resize, "]"));
  }
  // A center crop must be a patch multiple for backbones that insist.
  if (g.crop == CropMode::kCenter && resize % p != 0 &&
      backbone_->requires_patch_multiple()) {
    return absl::InvalidArgumentError(
        absl::StrCat("preprocess.resize ", resize, " is not a multiple of ",
                     backbone_->id(), "'s patch size ", p));
  }
  auto tokens = [&](int r) { return PatchTokens(width, height, r, g.crop, p); };
  if (tokens(resize) > options_.max_tokens) {
    if (request.resize != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "preprocess: a ", width, "x", height, " image at resize ", resize,
          " with crop ", CropName(g.crop), " is ", tokens(resize),
          " patch tokens; the limit is ", options_.max_tokens,
          " (--max_tokens); ask for a smaller resize"));
    }
    // The default resize gives way: the largest short side that fits, down
    // to two patches (PriMaPs needs a grid of at least 2x2).
    int lo = 2 * p, hi = resize - 1;
    if (tokens(lo) > options_.max_tokens) {
      return absl::InvalidArgumentError(absl::StrCat(
          "preprocess: a ", width, "x", height, " image is ", tokens(lo),
          " patch tokens even at resize ", lo, " with crop ", CropName(g.crop),
          "; the limit is ", options_.max_tokens, " (--max_tokens)"));
    }
    while (lo < hi) {
      const int mid = lo + (hi - lo + 1) / 2;
      if (tokens(mid) <= options_.max_tokens) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    resize = lo;
  }
  g.resize = resize;
  prepared->tokens = tokens(resize);
  const bool crf = prepared->primaps.use_crf;
  const CrfResolution crf_at =
      request.crf_resolution.value_or(options_.default_crf_resolution);
  if (original && crf && crf_at == CrfResolution::kOriginal &&
      width * height > options_.max_crf_pixels) {
    return absl::InvalidArgumentError(
        absl::StrCat("preprocess: a CRF at the original resolution of a ",
                     width, "x", height, " image is ", width * height,
                     " pixels; the limit is ", options_.max_crf_pixels,
                     " (--max_crf_pixels); use crf_resolution PROCESSED"));
  }
  prepared->target.size = g.output_size;
  prepared->target.crf_resolution = crf_at;
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<InferencePipeline::Prepared>>
InferencePipeline::Prepare(const PipelineRequest& request) {
  auto prepared = std::make_shared<Prepared>();
  prepared->request = request;
  // The model for the whole request: a swap from here on does not affect it.
  prepared->model = registry_->Current();
  if (prepared->model->version < request.min_head_version) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this server serves head version ", prepared->model->version,
        "; the request needs version ", request.min_head_version, " or newer"));
  }
  if (request.task == Task::kSegment && prepared->model->head == nullptr) {
    return absl::FailedPreconditionError(
        "Segment needs a head checkpoint; none is loaded (load one with "
        "AdminService.LoadCheckpoint "
        "or --head)");
  }
  prepared->primaps = options_.primaps;
  prepared->primaps.patch_size = backbone_->patch_size();
  prepared->stop = StopCheck(request.deadline, request.is_cancelled);
  prepared->primaps.stop = &prepared->stop;
  if (request.threshold.has_value()) {
    const float t = *request.threshold;
    if (!std::isfinite(t) || t < 0.f || t > 1.f) {
      return absl::InvalidArgumentError(
          absl::StrCat("preprocess.threshold is ", t, ", must be in [0, 1]"));
    }
    prepared->primaps.threshold = t;
  }
  if (request.crf.has_value()) prepared->primaps.use_crf = *request.crf;
  int64_t width = 0, height = 0;
  RETURN_IF_ERROR(DeclaredSize(request, &width, &height));
  RETURN_IF_ERROR(PlanGeometry(request, width, height, prepared.get()));
  RETURN_IF_ERROR(AdmitLarge(prepared.get()));
  LabelGeometry& g = prepared->geometry;
  RETURN_IF_ERROR(CheckAlive(request, "decoding"));
  if (request.tensor_height > 0) {
    ASSIGN_OR_RETURN(NormalizedImage image, TensorImage(request));
    g.processed_width = g.output_width = image.width;
    g.processed_height = g.output_height = image.height;
    prepared->target.width = image.width;
    prepared->target.height = image.height;
    prepared->image = std::make_shared<const NormalizedImage>(std::move(image));
    return prepared;
  }
  const absl::Time decode_start = absl::Now();
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
  Observe("decode", decode_start);
  // After EXIF orientation.
  g.input_width = rgb->width;
  g.input_height = rgb->height;
  PreprocessOptions& preprocess = prepared->preprocess;
  preprocess.resize = g.resize;
  preprocess.crop = g.crop;
  preprocess.filter = request.filter.value_or(
      options_.default_filter.value_or(DefaultFilter(request.task)));
  preprocess.patch_size = backbone_->patch_size();
  const absl::Time preprocess_start = absl::Now();
  ASSIGN_OR_RETURN(NormalizedImage image, Preprocess(*rgb, preprocess));
  Observe("preprocess", preprocess_start);
  g.processed_width = image.valid_width;
  g.processed_height = image.valid_height;
  OutputTarget& target = prepared->target;
  if (g.output_size == OutputSize::kOriginal) {
    target.width = g.output_width = rgb->width;
    target.height = g.output_height = rgb->height;
    if (prepared->primaps.use_crf &&
        target.crf_resolution == CrfResolution::kOriginal) {
      prepared->original = std::make_shared<const RgbImage>(*std::move(rgb));
      target.pixels = prepared->original.get();
    }
  } else {
    g.output_width = image.width;
    g.output_height = image.height;
  }
  if (prepared->primaps.use_crf) {
    g.crf_resolution = g.output_size == OutputSize::kOriginal
                           ? target.crf_resolution
                           : CrfResolution::kProcessed;
  }
  prepared->image = std::make_shared<const NormalizedImage>(std::move(image));
  return prepared;
}

absl::StatusOr<LabelMap> InferencePipeline::PseudoLabelsFor(
    const Prepared& p, const FeatureMap& features,
    const PriMaPsResult& primaps) const {
  // Masks take their classes by a vote at the processed size, whatever the
  // output size, so that both sizes label each mask alike.
  std::optional<LabelMap> prior;
  if (p.model->head != nullptr) {
    prior = HeadClassMap(*p.model->head, HeadKind::kClusterProbe,
                         HeadInput(features), p.image->height, p.image->width);
  }
  ASSIGN_OR_RETURN(
      const MaskClassTable table,
      MaskClasses(primaps.processed_mask_labels.labels.empty()
                      ? primaps.mask_labels
                      : primaps.processed_mask_labels,
                  prior ? &*prior : nullptr, p.primaps.ignore_label));
  return ApplyMaskClasses(primaps.mask_labels, table);
}

absl::StatusOr<PipelineResult> InferencePipeline::Segment(
    const Prepared& p, const FeatureMap& features,
    PipelineResult result) const {
  const SegmentationHead& head = *p.model->head;
  DenseLabelOptions dense;
  dense.scores = GridScores::kLogits;
  dense.use_crf = p.primaps.use_crf;
  dense.crf = p.primaps.crf;
  dense.crf.stop = &p.stop;
  dense.keep_probabilities = p.request.with_probabilities;
  ASSIGN_OR_RETURN(
      DenseLabels labels,
      ComputeDenseLabels(
          HeadScores(head, HeadKind::kSegmentation, HeadInput(features)),
          head.classes, features.height, features.width, *p.image, p.target,
          dense));
  result.labels = std::move(labels.labels);
  result.probabilities = std::move(labels.probabilities);
  return result;
}

absl::StatusOr<PipelineResult> InferencePipeline::Finish(
    const Prepared& p, FeatureMap features) const {
  RETURN_IF_ERROR(CheckAlive(p.request, "PriMaPs"));
  PipelineResult result;
  result.model = p.model;
  result.image_height = p.image->height;
  result.image_width = p.image->width;
  result.geometry = p.geometry;
  switch (p.request.task) {
    case Task::kFeatures: {
      if (p.request.with_masks) {
        ASSIGN_OR_RETURN(result.primaps, ComputePriMaPs(features, *p.image,
                                                        p.primaps, p.target));
      }
      result.features = std::move(features);
      return result;
    }
    case Task::kProposeMasks: {
      ASSIGN_OR_RETURN(result.primaps,
                       ComputePriMaPs(features, *p.image, p.primaps, p.target));
      ObservePriMaPs(result.primaps);
      return result;
    }
    case Task::kPseudoLabel: {
      ASSIGN_OR_RETURN(result.primaps,
                       ComputePriMaPs(features, *p.image, p.primaps, p.target));
      ObservePriMaPs(result.primaps);
      const absl::Time head_start = absl::Now();
      ASSIGN_OR_RETURN(result.labels,
                       PseudoLabelsFor(p, features, result.primaps));
      Observe("head", head_start);
      return result;
    }
    case Task::kSegment: {
      const absl::Time head_start = absl::Now();
      absl::StatusOr<PipelineResult> segmented =
          Segment(p, features, std::move(result));
      if (segmented.ok()) Observe("head", head_start);
      return segmented;
    }
  }
  return absl::InternalError("unknown task");
}

absl::Status InferencePipeline::AdmitLarge(Prepared* prepared) {
  if (options_.max_large_in_flight <= 0 ||
      prepared->tokens <= options_.large_request_tokens) {
    return absl::OkStatus();
  }
  if (large_in_flight_.fetch_add(1) >= options_.max_large_in_flight) {
    const int now = --large_in_flight_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "server busy with large requests: ", now, " of over ",
        options_.large_request_tokens, " patch tokens in flight (limit ",
        options_.max_large_in_flight,
        ", --max_large_in_flight); retry with backoff"));
  }
  prepared->large_slot =
      std::shared_ptr<void>(nullptr, [this](void*) { --large_in_flight_; });
  return absl::OkStatus();
}

void InferencePipeline::ObservePriMaPs(const PriMaPsResult& primaps) const {
  if (primaps.proposals.capped && options_.on_mask_cap) options_.on_mask_cap();
  if (!options_.on_stage) return;
  options_.on_stage("proposals", primaps.proposals_time);
  options_.on_stage("labels", primaps.labels_time);
}

void InferencePipeline::Observe(const char* stage, absl::Time since) const {
  if (options_.on_stage) options_.on_stage(stage, absl::Now() - since);
}

bool InferencePipeline::IsLarge(const Prepared& p) const {
  const int64_t processed =
      static_cast<int64_t>(p.image->height) * p.image->width;
  const int64_t output =
      static_cast<int64_t>(p.geometry.output_width) * p.geometry.output_height;
  return std::max(processed, output) >= options_.release_after_pixels;
}

void ReleaseFreedMemory() {
  // glibc keeps freed heap memory for reuse; a large request's buffers
  // (hundreds of MB of CRF state) would otherwise stay resident for good.
  // malloc_trim gives back the free pages of every arena.
  malloc_trim(0);
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
    auto work = std::make_unique<DynamicBatcher::Work>();
    work->image = p->image;
    work->deadline = request.deadline;
    work->is_cancelled = request.is_cancelled;
    work->done = [this, p, shared_done](absl::StatusOr<FeatureMap> features) {
      if (!features.ok()) {
        p->large_slot.reset();
        (*shared_done)(features.status());
        return;
      }
      // Off the batcher thread: it goes back to the next batch.
      cpu_pool_->Schedule(
          [this, p, shared_done, f = *std::move(features)]() mutable {
            const bool large = IsLarge(*p);
            absl::StatusOr<PipelineResult> result = Finish(*p, std::move(f));
            // Free the large slot before the caller hears back, so that its
            // next request finds it free.
            p->large_slot.reset();
            (*shared_done)(std::move(result));
            p.reset();
            if (large) ReleaseFreedMemory();
          });
    };
    const absl::Status submitted = batcher_->Submit(work);
    // Refused: the work is still ours, and its done answers the caller.
    if (!submitted.ok()) work->done(submitted);
  });
}

}  // namespace primaps
