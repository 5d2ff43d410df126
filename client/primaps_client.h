// The C++ client library: channel set-up (plain, TLS or mTLS), deadlines,
// and retries with exponential backoff and jitter on the codes IsRetryable
// names.
#ifndef PRIMAPS_CLIENT_PRIMAPS_CLIENT_H_
#define PRIMAPS_CLIENT_PRIMAPS_CLIENT_H_

#include <memory>
#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "primaps/v1/admin.grpc.pb.h"
#include "primaps/v1/service.grpc.pb.h"

namespace primaps {

struct ClientOptions {
  // "host:port".
  std::string target;
  // Per attempt.
  absl::Duration deadline = absl::Seconds(60);
  // Extra attempts after the first on UNAVAILABLE or RESOURCE_EXHAUSTED.
  int retries = 3;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // TLS: a CA to verify the server with turns TLS on; a client certificate
  // and key add mTLS. Files, PEM.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  // Bearer token for AdminService calls.
  std::string admin_token;
  int max_message_bytes = 64 << 20;
};

class PrimapsClient {
 public:
  static absl::StatusOr<std::unique_ptr<PrimapsClient>> Create(
      const ClientOptions& options);

  absl::StatusOr<v1::MaskProposals> ProposeMasks(
      const v1::ImageRequest& request);
  absl::StatusOr<v1::PseudoLabelResponse> PseudoLabel(
      const v1::ImageRequest& request);
  absl::StatusOr<v1::Segmentation> Segment(const v1::ImageRequest& request);
  // One image through the ExtractFeatures stream.
  absl::StatusOr<v1::FeatureResponse> ExtractFeatures(
      const v1::FeatureRequest& request);

  absl::StatusOr<v1::LoadCheckpointResponse> LoadCheckpoint(
      const v1::LoadCheckpointRequest& request);
  absl::StatusOr<v1::ModelStatus> GetModelStatus();
  absl::StatusOr<v1::RollbackResponse> Rollback();
  // The serving head, as a safetensors file.
  absl::StatusOr<v1::GetCheckpointResponse> GetCheckpoint();

  // "SERVING", "NOT_SERVING", ... from grpc.health.v1 (no retries).
  absl::StatusOr<std::string> Health();

  const ClientOptions& options() const { return options_; }
  v1::PriMaPsService::Stub* stub() { return stub_.get(); }

 private:
  PrimapsClient(ClientOptions options, std::shared_ptr<grpc::Channel> channel);

  // Runs `call` (a fresh context each attempt) with retries.
  template <typename Response>
  absl::StatusOr<Response> WithRetries(
      const std::function<grpc::Status(grpc::ClientContext*, Response*)>& call,
      bool admin);

  const ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PriMaPsService::Stub> stub_;
  std::unique_ptr<v1::AdminService::Stub> admin_stub_;
};

// absl::Status from grpc::Status, with the message kept.
absl::Status FromGrpcStatus(const grpc::Status& status);

// Whether a call is worth another attempt, the one rule for the client
// library and the batch job: UNAVAILABLE (no server, or one draining),
// RESOURCE_EXHAUSTED (refused at admission, before any work) and
// DEADLINE_EXCEEDED (the deadline is per attempt, and the server stops an
// abandoned call within its current step, so a retry costs it little).
bool IsRetryable(absl::StatusCode code);

// The waits between attempts, for every retry loop of the clients:
// exponential backoff from `initial` to `max`, with equal jitter (each
// wait drawn from [b/2, b] for the current b), so that clients refused
// together do not come back together.
class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max, uint32_t seed)
      : next_(initial), max_(max), rng_(seed) {}
  // Sleeps for the next wait.
  void Wait();

 private:
  absl::Duration next_;
  const absl::Duration max_;
  std::mt19937 rng_;
};

}  // namespace primaps

#endif  // PRIMAPS_CLIENT_PRIMAPS_CLIENT_H_
