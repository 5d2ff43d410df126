// Conversions between primaps.v1 messages and the pipeline's types, and the
// one place where absl::Status becomes grpc::Status.
#ifndef PRIMAPS_SERVER_PROTO_CONVERT_H_
#define PRIMAPS_SERVER_PROTO_CONVERT_H_

#include <grpcpp/grpcpp.h>

#include <optional>

#include "absl/status/statusor.h"
#include "primaps/v1/service.pb.h"
#include "server/inference_pipeline.h"

namespace primaps {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The one request builder: every entry point (the unary calls, both
// streams, HTTP) turns its message into the pipeline's request here, so
// every field means the same on each. Validates the image and preprocessing
// fields; the caller sets what belongs to its call (deadline,
// is_cancelled).
absl::StatusOr<PipelineRequest> ToPipelineRequest(
    Task task, const v1::ImageRequest& request);
absl::StatusOr<PipelineRequest> ToPipelineRequest(
    const v1::FeatureRequest& request);

// A preprocessing enum as the pipeline's option: nullopt for UNSPECIFIED
// (the server's default), INVALID_ARGUMENT for values this build does not
// know.
absl::StatusOr<std::optional<CropMode>> FromProto(v1::CropMode crop);
absl::StatusOr<std::optional<ResizeFilter>> FromProto(v1::ResizeFilter filter);
absl::StatusOr<std::optional<OutputSize>> FromProto(v1::OutputSize size);
absl::StatusOr<std::optional<CrfResolution>> FromProto(
    v1::CrfResolution resolution);

void FillGeometry(const LabelGeometry& geometry, v1::LabelGeometry* out);
void FillModelInfo(const ModelSnapshot& model, v1::ModelInfo* info);
absl::Status FillLabelMap(const LabelMap& labels, bool png, v1::LabelMap* out);
void FillSoftMasks(const SoftMasks& masks, v1::SoftMasks* out);

absl::Status FillMaskProposals(const PipelineResult& result,
                               const v1::ImageRequest& request,
                               v1::MaskProposals* out);
absl::Status FillPseudoLabel(const PipelineResult& result,
                             const v1::ImageRequest& request,
                             v1::PseudoLabelResponse* out);
absl::Status FillSegmentation(const PipelineResult& result,
                              const v1::ImageRequest& request,
                              v1::Segmentation* out);
absl::Status FillFeatures(const PipelineResult& result,
                          const v1::FeatureRequest& request,
                          v1::FeatureResponse* out);

}  // namespace primaps

#endif  // PRIMAPS_SERVER_PROTO_CONVERT_H_
