// The PriMaPsService gRPC handlers (callback API): a thin shell that turns
// messages into pipeline requests (proto_convert.h) and results back into
// messages. The streams' reactor and its lifetime rules are in
// stream_reactor.h.
#ifndef PRIMAPS_SERVER_PRIMAPS_SERVICE_H_
#define PRIMAPS_SERVER_PRIMAPS_SERVICE_H_

#include <atomic>
#include <set>

#include "absl/synchronization/mutex.h"
#include "primaps/v1/service.grpc.pb.h"
#include "server/inference_pipeline.h"
#include "server/server_metrics.h"
#include "server/stream_reactor.h"

namespace primaps {

class PriMaPsServiceImpl final : public v1::PriMaPsService::CallbackService,
                                 private StreamObserver {
 public:
  // Borrowed pointers; they must outlive the service.
  PriMaPsServiceImpl(InferencePipeline* pipeline, ServerMetrics* metrics);

  grpc::ServerUnaryReactor* ProposeMasks(grpc::CallbackServerContext* context,
                                         const v1::ImageRequest* request,
                                         v1::MaskProposals* response) override;
  grpc::ServerUnaryReactor* PseudoLabel(
      grpc::CallbackServerContext* context, const v1::ImageRequest* request,
      v1::PseudoLabelResponse* response) override;
  grpc::ServerUnaryReactor* Segment(grpc::CallbackServerContext* context,
                                    const v1::ImageRequest* request,
                                    v1::Segmentation* response) override;
  grpc::ServerBidiReactor<v1::FeatureRequest, v1::FeatureResponse>*
  ExtractFeatures(grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<v1::ImageRequest, v1::PseudoLabelStreamResponse>*
  StreamPseudoLabels(grpc::CallbackServerContext* context) override;

  // Asks every open stream to wind down: no more reads; each finishes with
  // UNAVAILABLE once its images in flight are answered. Streams opened
  // after this are refused the same way.
  void DrainStreams() ABSL_LOCKS_EXCLUDED(streams_mu_);

  // Calls whose handlers have started and not yet completed (a request
  // counts until its reactor is done). Used to check that drains finish and
  // that nothing leaks.
  int64_t active_calls() const { return active_calls_.load(); }

 private:
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Unary(
      const char* method, Task task, grpc::CallbackServerContext* context,
      const Request* request, Response* response,
      absl::Status (*fill)(const PipelineResult&, const Request&, Response*));

  // Registers a new stream (drained at once when the server drains).
  template <typename Reactor>
  Reactor* AddStream(Reactor* reactor) ABSL_LOCKS_EXCLUDED(streams_mu_);

  // StreamObserver.
  void OnStreamItem(const char* method, absl::StatusCode code,
                    absl::Duration took) override;
  void OnStreamDone(DrainableStream* stream) override
      ABSL_LOCKS_EXCLUDED(streams_mu_);

  InferencePipeline* const pipeline_;
  ServerMetrics* const metrics_;
  std::atomic<int64_t> active_calls_{0};
  absl::Mutex streams_mu_;
  std::set<DrainableStream*> streams_ ABSL_GUARDED_BY(streams_mu_);
  bool draining_ ABSL_GUARDED_BY(streams_mu_) = false;
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_PRIMAPS_SERVICE_H_
