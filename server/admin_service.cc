#include "server/admin_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/file_util.h"
#include "engine/segmentation_head.h"
#include "server/proto_convert.h"

namespace primaps {
namespace {

// Compares in time that depends only on the lengths, not on where the
// first difference is.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

AdminServiceImpl::AdminServiceImpl(ModelRegistry* registry, std::string token,
                                   ServerMetrics* metrics, ThreadPool* pool)
    : registry_(registry),
      token_(std::move(token)),
      metrics_(metrics),
      pool_(pool) {}

absl::Status AdminServiceImpl::Authorize(
    const grpc::CallbackServerContext* context) const {
  const auto& metadata = context->client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(
        "AdminService needs \"authorization: Bearer <token>\" metadata");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ") ||
      absl::StripAsciiWhitespace(value).empty()) {
    return absl::UnauthenticatedError(
        "the authorization metadata is not a bearer token");
  }
  if (!ConstantTimeEquals(value, token_)) {
    return absl::PermissionDeniedError("the admin token is wrong");
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AdminServiceImpl::Respond(
    grpc::CallbackServerContext* context, const char* method,
    const absl::Status& status) {
  metrics_->RecordRequest(method, absl::StatusCodeToString(status.code()),
                          absl::ZeroDuration());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::LoadCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::LoadCheckpointRequest* request,
    v1::LoadCheckpointResponse* response) {
  const absl::Status authorized = Authorize(context);
  if (!authorized.ok()) return Respond(context, "LoadCheckpoint", authorized);
  // Reading and validating a checkpoint takes as long as its file: off the
  // callback thread, which gRPC needs for every other call.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = absl::Now();
  pool_->Schedule([this, reactor, request, response, start] {
    absl::StatusOr<std::shared_ptr<const ModelSnapshot>> snapshot;
    switch (request->source_case()) {
      case v1::LoadCheckpointRequest::kPath:
        snapshot = registry_->LoadFromPath(request->path());
        break;
      case v1::LoadCheckpointRequest::kData:
        snapshot = registry_->LoadFromBytes(request->data());
        break;
      default:
        snapshot = absl::InvalidArgumentError("set path or data");
    }
    if (snapshot.ok()) FillModelInfo(**snapshot, response->mutable_model());
    metrics_->RecordRequest("LoadCheckpoint",
                            absl::StatusCodeToString(snapshot.status().code()),
                            absl::Now() - start);
    reactor->Finish(ToGrpcStatus(snapshot.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetModelStatus(
    grpc::CallbackServerContext* context, const v1::GetModelStatusRequest*,
    v1::ModelStatus* response) {
  const absl::Status status = Authorize(context);
  if (status.ok()) {
    FillModelInfo(*registry_->Current(), response->mutable_model());
    for (const auto& old : registry_->History())
      FillModelInfo(*old, response->add_history());
    response->set_swaps(registry_->swaps());
    response->set_refused_swaps(registry_->refused_swaps());
  }
  return Respond(context, "GetModelStatus", status);
}

grpc::ServerUnaryReactor* AdminServiceImpl::Rollback(
    grpc::CallbackServerContext* context, const v1::RollbackRequest*,
    v1::RollbackResponse* response) {
  absl::Status status = Authorize(context);
  if (status.ok()) {
    auto snapshot = registry_->Rollback();
    status = snapshot.status();
    if (snapshot.ok()) FillModelInfo(**snapshot, response->mutable_model());
  }
  return Respond(context, "Rollback", status);
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetCheckpoint(
    grpc::CallbackServerContext* context, const v1::GetCheckpointRequest*,
    v1::GetCheckpointResponse* response) {
  absl::Status status = Authorize(context);
  if (status.ok()) {
    const std::shared_ptr<const ModelSnapshot> snapshot = registry_->Current();
    if (snapshot->head == nullptr) {
      status = absl::FailedPreconditionError(
          "the server has no head to return; load one first");
    } else {
      FillModelInfo(*snapshot, response->mutable_model());
      response->set_data(SerializeHeadCheckpoint(*snapshot->head));
    }
  }
  return Respond(context, "GetCheckpoint", status);
}

}  // namespace primaps
