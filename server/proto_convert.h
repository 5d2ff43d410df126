// Conversions between primaps.v1 messages and the pipeline's types, and the
// one place where absl::Status becomes grpc::Status.
#ifndef PRIMAPS_SERVER_PROTO_CONVERT_H_
#define PRIMAPS_SERVER_PROTO_CONVERT_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "primaps/v1/service.pb.h"
#include "server/inference_pipeline.h"

namespace primaps {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Validates and converts the image and preprocessing fields.
absl::StatusOr<PipelineRequest> ToPipelineRequest(
    Task task, const v1::Image& image, const v1::Preprocess& preprocess);

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
