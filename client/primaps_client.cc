#include "client/primaps_client.h"

#include <grpcpp/grpcpp.h>

#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace primaps {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

bool IsRetryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kResourceExhausted ||
         code == absl::StatusCode::kDeadlineExceeded;
}

void Backoff::Wait() {
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  absl::SleepFor(next_ * jitter(rng_));
  next_ = std::min(next_ * 2, max_);
}

absl::StatusOr<std::unique_ptr<PrimapsClient>> PrimapsClient::Create(
    const ClientOptions& options) {
  if (options.target.empty())
    return absl::InvalidArgumentError("no server address (--server)");
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::InsecureChannelCredentials();
  if (!options.tls_ca.empty() || !options.tls_cert.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile(options.tls_ca, 1 << 20));
    }
    if (!options.tls_cert.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadFile(options.tls_cert, 1 << 20));
      ASSIGN_OR_RETURN(ssl.pem_private_key, ReadFile(options.tls_key, 1 << 20));
    }
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // Reconnect quickly after a server restart (gRPC's default backoff grows
  // to minutes), and spread calls over every address a name resolves to.
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS stays unset on purpose: gRPC also takes
  // it as the minimum time a connection attempt may last (default 20 s), so
  // a small value fails every TLS handshake slower than that on a loaded or
  // distant server ("timed out before receiving SETTINGS frame").
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetLoadBalancingPolicyName("round_robin");
  auto channel = grpc::CreateCustomChannel(options.target, credentials, args);
  return std::unique_ptr<PrimapsClient>(
      new PrimapsClient(options, std::move(channel)));
}

PrimapsClient::PrimapsClient(ClientOptions options,
                             std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::PriMaPsService::NewStub(channel_)),
      admin_stub_(v1::AdminService::NewStub(channel_)) {}

template <typename Response>
absl::StatusOr<Response> PrimapsClient::WithRetries(
    const std::function<grpc::Status(grpc::ClientContext*, Response*)>& call,
    bool admin) {
  Backoff backoff(options_.initial_backoff, options_.max_backoff,
                  std::random_device{}());
  absl::Status last;
  for (int attempt = 0; attempt <= options_.retries; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.deadline));
    // No token, no header: the server answers UNAUTHENTICATED.
    if (admin && !options_.admin_token.empty()) {
      context.AddMetadata("authorization", "Bearer " + options_.admin_token);
    }
    Response response;
    last = FromGrpcStatus(call(&context, &response));
    if (last.ok()) return response;
    if (!IsRetryable(last.code()) || attempt == options_.retries) break;
    backoff.Wait();
  }
  return last;
}

absl::StatusOr<v1::MaskProposals> PrimapsClient::ProposeMasks(
    const v1::ImageRequest& request) {
  return WithRetries<v1::MaskProposals>(
      [&](grpc::ClientContext* c, v1::MaskProposals* r) {
        return stub_->ProposeMasks(c, request, r);
      },
      false);
}

absl::StatusOr<v1::PseudoLabelResponse> PrimapsClient::PseudoLabel(
    const v1::ImageRequest& request) {
  return WithRetries<v1::PseudoLabelResponse>(
      [&](grpc::ClientContext* c, v1::PseudoLabelResponse* r) {
        return stub_->PseudoLabel(c, request, r);
      },
      false);
}

absl::StatusOr<v1::Segmentation> PrimapsClient::Segment(
    const v1::ImageRequest& request) {
  return WithRetries<v1::Segmentation>(
      [&](grpc::ClientContext* c, v1::Segmentation* r) {
        return stub_->Segment(c, request, r);
      },
      false);
}

absl::StatusOr<v1::FeatureResponse> PrimapsClient::ExtractFeatures(
    const v1::FeatureRequest& request) {
  return WithRetries<v1::FeatureResponse>(
      [&](grpc::ClientContext* c, v1::FeatureResponse* r) {
        auto stream = stub_->ExtractFeatures(c);
        stream->Write(request);
        stream->WritesDone();
        const bool got = stream->Read(r);
        grpc::Status status = stream->Finish();
        if (status.ok() && !got)
          return grpc::Status(grpc::StatusCode::INTERNAL,
                              "no response on the stream");
        return status;
      },
      false);
}

absl::StatusOr<v1::LoadCheckpointResponse> PrimapsClient::LoadCheckpoint(
    const v1::LoadCheckpointRequest& request) {
  return WithRetries<v1::LoadCheckpointResponse>(
      [&](grpc::ClientContext* c, v1::LoadCheckpointResponse* r) {
        return admin_stub_->LoadCheckpoint(c, request, r);
      },
      true);
}

absl::StatusOr<v1::ModelStatus> PrimapsClient::GetModelStatus() {
  return WithRetries<v1::ModelStatus>(
      [&](grpc::ClientContext* c, v1::ModelStatus* r) {
        return admin_stub_->GetModelStatus(c, v1::GetModelStatusRequest(), r);
      },
      true);
}

absl::StatusOr<v1::RollbackResponse> PrimapsClient::Rollback() {
  return WithRetries<v1::RollbackResponse>(
      [&](grpc::ClientContext* c, v1::RollbackResponse* r) {
        return admin_stub_->Rollback(c, v1::RollbackRequest(), r);
      },
      true);
}

absl::StatusOr<v1::GetCheckpointResponse> PrimapsClient::GetCheckpoint() {
  return WithRetries<v1::GetCheckpointResponse>(
      [&](grpc::ClientContext* c, v1::GetCheckpointResponse* r) {
        return admin_stub_->GetCheckpoint(c, v1::GetCheckpointRequest(), r);
      },
      true);
}

absl::StatusOr<std::string> PrimapsClient::Health() {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(
      absl::Now() + std::min(options_.deadline, absl::Seconds(10))));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status =
      stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
      response.status());
}

}  // namespace primaps
