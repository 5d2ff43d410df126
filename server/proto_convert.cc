#include "server/proto_convert.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/image/label_image.h"

namespace primaps {
namespace {

// IEEE half precision, round to nearest even.
uint16_t FloatToHalf(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int32_t exponent = static_cast<int32_t>((x >> 23) & 0xFF) - 127 + 15;
  uint32_t mantissa = x & 0x7FFFFF;
  if (((x >> 23) & 0xFF) == 0xFF)
    return static_cast<uint16_t>(sign | 0x7C00 | (mantissa ? 0x200 : 0));
  if (exponent >= 31) return static_cast<uint16_t>(sign | 0x7C00);
  if (exponent <= 0) {
    if (exponent < -10) return static_cast<uint16_t>(sign);
    mantissa |= 0x800000;
    const int shift = 14 - exponent;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1),
                   midpoint = 1u << (shift - 1);
    if (rest > midpoint || (rest == midpoint && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half =
      sign | (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1FFF;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;
  return static_cast<uint16_t>(half);
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

namespace {

absl::Status SetImage(const v1::Image& image, PipelineRequest* request) {
  switch (image.source_case()) {
    case v1::Image::kEncoded:
      if (image.encoded().empty())
        return absl::InvalidArgumentError("image.encoded is empty");
      request->encoded = image.encoded();
      break;
    case v1::Image::kRaw:
      if (image.raw().channels() == 0) {
        return absl::InvalidArgumentError(
            "image.raw.channels is 0; expected 1, 3 or 4");
      }
      request->raw_width = image.raw().width();
      request->raw_height = image.raw().height();
      request->raw_channels = image.raw().channels();
      request->raw_pixels = image.raw().pixels();
      break;
    case v1::Image::kTensor:
      if (image.tensor().height() == 0 || image.tensor().width() == 0) {
        return absl::InvalidArgumentError(
            "image.tensor: height and width must be positive");
      }
      request->tensor_height = image.tensor().height();
      request->tensor_width = image.tensor().width();
      request->tensor_data = image.tensor().data();
      break;
    default:
      return absl::InvalidArgumentError(
          "image is missing: set image.encoded, image.raw or image.tensor");
  }
  return absl::OkStatus();
}

absl::Status SetPreprocess(const v1::Preprocess& preprocess,
                           PipelineRequest* request) {
  request->resize = static_cast<int>(preprocess.resize());
  ASSIGN_OR_RETURN(request->crop, FromProto(preprocess.crop()));
  ASSIGN_OR_RETURN(request->filter, FromProto(preprocess.resize_filter()));
  ASSIGN_OR_RETURN(request->output_size, FromProto(preprocess.output_size()));
  ASSIGN_OR_RETURN(request->crf_resolution,
                   FromProto(preprocess.crf_resolution()));
  if (preprocess.has_threshold()) request->threshold = preprocess.threshold();
  if (preprocess.has_crf()) request->crf = preprocess.crf();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::optional<CropMode>> FromProto(v1::CropMode crop) {
  switch (crop) {
    case v1::CROP_MODE_UNSPECIFIED:
      return std::nullopt;
    case v1::CROP_MODE_CENTER:
      return CropMode::kCenter;
    case v1::CROP_MODE_FULL:
      return CropMode::kFull;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("preprocess.crop is ", crop, ", not a known CropMode"));
  }
}

absl::StatusOr<std::optional<ResizeFilter>> FromProto(v1::ResizeFilter filter) {
  switch (filter) {
    case v1::RESIZE_FILTER_UNSPECIFIED:
      return std::nullopt;
    case v1::RESIZE_FILTER_BILINEAR:
      return ResizeFilter::kBilinear;
    case v1::RESIZE_FILTER_ANTIALIAS:
      return ResizeFilter::kAntialias;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("preprocess.resize_filter is ", filter,
                       ", not a known ResizeFilter"));
  }
}

absl::StatusOr<std::optional<OutputSize>> FromProto(v1::OutputSize size) {
  switch (size) {
    case v1::OUTPUT_SIZE_UNSPECIFIED:
      return std::nullopt;
    case v1::OUTPUT_SIZE_PROCESSED:
      return OutputSize::kProcessed;
    case v1::OUTPUT_SIZE_ORIGINAL:
      return OutputSize::kOriginal;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "preprocess.output_size is ", size, ", not a known OutputSize"));
  }
}

absl::StatusOr<std::optional<CrfResolution>> FromProto(
    v1::CrfResolution resolution) {
  switch (resolution) {
    case v1::CRF_RESOLUTION_UNSPECIFIED:
      return std::nullopt;
    case v1::CRF_RESOLUTION_PROCESSED:
      return CrfResolution::kProcessed;
    case v1::CRF_RESOLUTION_ORIGINAL:
      return CrfResolution::kOriginal;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("preprocess.crf_resolution is ", resolution,
                       ", not a known CrfResolution"));
  }
}

absl::StatusOr<PipelineRequest> ToPipelineRequest(
    Task task, const v1::ImageRequest& image_request) {
  PipelineRequest request;
  request.task = task;
  RETURN_IF_ERROR(SetImage(image_request.image(), &request));
  RETURN_IF_ERROR(SetPreprocess(image_request.preprocess(), &request));
  request.with_probabilities = image_request.probabilities();
  request.min_head_version = image_request.min_head_version();
  return request;
}

absl::StatusOr<PipelineRequest> ToPipelineRequest(
    const v1::FeatureRequest& feature_request) {
  PipelineRequest request;
  request.task = Task::kFeatures;
  RETURN_IF_ERROR(SetImage(feature_request.image(), &request));
  RETURN_IF_ERROR(SetPreprocess(feature_request.preprocess(), &request));
  request.with_masks = feature_request.masks();
  return request;
}

void FillModelInfo(const ModelSnapshot& model, v1::ModelInfo* info) {
  info->set_backbone(model.backbone);
  info->set_precision(model.precision);
  info->set_source(model.source);
  info->set_head_version(model.version);
  info->set_checkpoint_digest(model.digest);
  info->set_classes(model.head ? model.head->classes : 0);
  info->set_dino_block(model.dino_block);
  info->set_projection(model.projection);
  info->set_projection_dim(model.projection_dim);
  info->set_projection_source(model.projection_source);
  info->set_projection_digest(model.projection_digest);
}

void FillGeometry(const LabelGeometry& g, v1::LabelGeometry* out) {
  out->set_input_width(g.input_width);
  out->set_input_height(g.input_height);
  out->set_resize(g.resize);
  out->set_crop(g.crop == CropMode::kFull ? v1::CROP_MODE_FULL
                                          : v1::CROP_MODE_CENTER);
  out->set_processed_width(g.processed_width);
  out->set_processed_height(g.processed_height);
  out->set_output_size(g.output_size == OutputSize::kOriginal
                           ? v1::OUTPUT_SIZE_ORIGINAL
                           : v1::OUTPUT_SIZE_PROCESSED);
  out->set_output_width(g.output_width);
  out->set_output_height(g.output_height);
  if (g.crf_resolution.has_value()) {
    out->set_crf_resolution(*g.crf_resolution == CrfResolution::kOriginal
                                ? v1::CRF_RESOLUTION_ORIGINAL
                                : v1::CRF_RESOLUTION_PROCESSED);
  }
}

absl::Status FillLabelMap(const LabelMap& labels, bool png, v1::LabelMap* out) {
  out->set_width(labels.width);
  out->set_height(labels.height);
  if (png) {
    ASSIGN_OR_RETURN(std::string bytes, EncodeLabelPng(labels));
    out->set_png(std::move(bytes));
  } else {
    out->set_labels(labels.labels.data(), labels.labels.size());
  }
  return absl::OkStatus();
}

void FillSoftMasks(const SoftMasks& masks, v1::SoftMasks* out) {
  out->set_count(masks.num_masks);
  out->set_grid_height(masks.height);
  out->set_grid_width(masks.width);
  out->mutable_values()->Add(masks.masks.begin(), masks.masks.end());
}

absl::Status FillMaskProposals(const PipelineResult& result,
                               const v1::ImageRequest& request,
                               v1::MaskProposals* out) {
  out->set_request_id(request.request_id());
  FillModelInfo(*result.model, out->mutable_model());
  const LabelMap& masks = result.primaps.mask_labels;
  RETURN_IF_ERROR(FillLabelMap(masks, request.png(), out->mutable_masks()));
  const int count = result.primaps.proposals.num_masks;
  out->set_mask_count(count);
  std::vector<uint64_t> area(count + 1, 0);
  for (uint8_t l : masks.labels) {
    if (l <= count) ++area[l];
  }
  out->mutable_mask_area()->Add(area.begin(), area.end());
  if (request.soft_masks())
    FillSoftMasks(result.primaps.proposals, out->mutable_soft_masks());
  FillGeometry(result.geometry, out->mutable_geometry());
  return absl::OkStatus();
}

absl::Status FillPseudoLabel(const PipelineResult& result,
                             const v1::ImageRequest& request,
                             v1::PseudoLabelResponse* out) {
  out->set_request_id(request.request_id());
  FillModelInfo(*result.model, out->mutable_model());
  RETURN_IF_ERROR(
      FillLabelMap(result.labels, request.png(), out->mutable_labels()));
  RETURN_IF_ERROR(FillLabelMap(result.primaps.mask_labels, request.png(),
                               out->mutable_masks()));
  out->set_mask_count(result.primaps.proposals.num_masks);
  FillGeometry(result.geometry, out->mutable_geometry());
  return absl::OkStatus();
}

absl::Status FillSegmentation(const PipelineResult& result,
                              const v1::ImageRequest& request,
                              v1::Segmentation* out) {
  out->set_request_id(request.request_id());
  FillModelInfo(*result.model, out->mutable_model());
  RETURN_IF_ERROR(
      FillLabelMap(result.labels, request.png(), out->mutable_labels()));
  out->set_classes(result.model->head->classes);
  out->mutable_probabilities()->Add(result.probabilities.begin(),
                                    result.probabilities.end());
  FillGeometry(result.geometry, out->mutable_geometry());
  return absl::OkStatus();
}

absl::Status FillFeatures(const PipelineResult& result,
                          const v1::FeatureRequest& request,
                          v1::FeatureResponse* out) {
  out->set_request_id(request.request_id());
  FillModelInfo(*result.model, out->mutable_model());
  if (request.features() == v1::FEATURE_KIND_PROJECTION &&
      result.features.code == nullptr) {
    return absl::FailedPreconditionError(
        "features=PROJECTION: this server's backbone has no projection "
        "(ModelInfo.projection is empty); ask for BACKBONE");
  }
  const FeatureMap& f = request.features() == v1::FEATURE_KIND_PROJECTION
                            ? *result.features.code
                            : result.features;
  out->set_features(request.features() == v1::FEATURE_KIND_PROJECTION
                        ? v1::FEATURE_KIND_PROJECTION
                        : v1::FEATURE_KIND_BACKBONE);
  out->set_dim(f.dim);
  out->set_height(f.height);
  out->set_width(f.width);
  if (request.type() == v1::FEATURE_TYPE_FLOAT16) {
    out->set_type(v1::FEATURE_TYPE_FLOAT16);
    std::string data(f.data.size() * 2, '\0');
    for (size_t i = 0; i < f.data.size(); ++i) {
      const uint16_t h = FloatToHalf(f.data[i]);
      std::memcpy(&data[2 * i], &h, 2);
    }
    out->set_data(std::move(data));
  } else {
    out->set_type(v1::FEATURE_TYPE_FLOAT32);
    out->set_data(reinterpret_cast<const char*>(f.data.data()),
                  f.data.size() * 4);
  }
  if (request.masks()) {
    RETURN_IF_ERROR(
        FillLabelMap(result.primaps.mask_labels, false, out->mutable_masks()));
    FillSoftMasks(result.primaps.proposals, out->mutable_soft_masks());
  }
  return absl::OkStatus();
}

}  // namespace primaps
