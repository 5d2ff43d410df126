#include "server/primaps_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/proto_convert.h"

namespace primaps {
namespace {

std::string CodeName(absl::StatusCode code) {
  return absl::StatusCodeToString(code);
}

absl::Time Deadline(const grpc::CallbackServerContext* context) {
  const auto deadline = context->deadline();
  // gRPC reports "no deadline" as a time far in the future.
  if (deadline >= std::chrono::system_clock::time_point::max() -
                      std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

}  // namespace

PriMaPsServiceImpl::PriMaPsServiceImpl(InferencePipeline* pipeline,
                                       ServerMetrics* metrics)
    : pipeline_(pipeline), metrics_(metrics) {}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* PriMaPsServiceImpl::Unary(
    const char* method, Task task, grpc::CallbackServerContext* context,
    const Request* request, Response* response,
    absl::Status (*fill)(const PipelineResult&, const Request&, Response*)) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = absl::Now();
  ++active_calls_;
  auto finish = [this, reactor, method, start](const absl::Status& status) {
    metrics_->RecordRequest(method, CodeName(status.code()),
                            absl::Now() - start);
    --active_calls_;
    reactor->Finish(ToGrpcStatus(status));
  };
  absl::StatusOr<PipelineRequest> pipeline_request =
      ToPipelineRequest(task, *request);
  if (!pipeline_request.ok()) {
    finish(pipeline_request.status());
    return reactor;
  }
  pipeline_request->deadline = Deadline(context);
  // The context stays valid until Finish, which comes after the last poll.
  pipeline_request->is_cancelled = [context] { return context->IsCancelled(); };
  pipeline_->Run(
      *std::move(pipeline_request), [this, request, response, fill, finish](
                                        absl::StatusOr<PipelineResult> result) {
        if (!result.ok()) {
          finish(result.status());
          return;
        }
        const absl::Time encode_start = absl::Now();
        const absl::Status filled = fill(*result, *request, response);
        metrics_->RecordStage("encode", absl::Now() - encode_start);
        finish(filled);
      });
  return reactor;
}

grpc::ServerUnaryReactor* PriMaPsServiceImpl::ProposeMasks(
    grpc::CallbackServerContext* context, const v1::ImageRequest* request,
    v1::MaskProposals* response) {
  return Unary("ProposeMasks", Task::kProposeMasks, context, request, response,
               &FillMaskProposals);
}

grpc::ServerUnaryReactor* PriMaPsServiceImpl::PseudoLabel(
    grpc::CallbackServerContext* context, const v1::ImageRequest* request,
    v1::PseudoLabelResponse* response) {
  return Unary("PseudoLabel", Task::kPseudoLabel, context, request, response,
               &FillPseudoLabel);
}

grpc::ServerUnaryReactor* PriMaPsServiceImpl::Segment(
    grpc::CallbackServerContext* context, const v1::ImageRequest* request,
    v1::Segmentation* response) {
  return Unary("Segment", Task::kSegment, context, request, response,
               &FillSegmentation);
}

template <typename Reactor>
Reactor* PriMaPsServiceImpl::AddStream(Reactor* reactor) {
  ++active_calls_;
  bool draining;
  {
    absl::MutexLock lock(&streams_mu_);
    streams_.insert(reactor);
    draining = draining_;
  }
  if (draining) reactor->Drain();
  return reactor;
}

void PriMaPsServiceImpl::DrainStreams() {
  absl::MutexLock lock(&streams_mu_);
  draining_ = true;
  // Under the lock: a stream unregisters itself (OnStreamDone) before it is
  // deleted, so every pointer here is alive.
  for (DrainableStream* stream : streams_) stream->Drain();
}

void PriMaPsServiceImpl::OnStreamItem(const char* method, absl::StatusCode code,
                                      absl::Duration took) {
  metrics_->RecordRequest(method, CodeName(code), took);
}

void PriMaPsServiceImpl::OnStreamDone(DrainableStream* stream) {
  {
    absl::MutexLock lock(&streams_mu_);
    streams_.erase(stream);
  }
  --active_calls_;
}

namespace {

// One stream item through the pipeline. Runs after the call's context may
// be gone, so it holds only the stream's cancellation and deadline, never
// the context (stream_reactor.h). `fill` writes the result into the
// response; `done` gets the item's status and response.
template <typename Request, typename Response>
void RunStreamItem(InferencePipeline* pipeline, absl::Time deadline,
                   std::shared_ptr<const StreamCancellation> cancellation,
                   absl::StatusOr<PipelineRequest> p, const Request& request,
                   absl::Status (*fill)(const PipelineResult&, const Request&,
                                        Response*),
                   std::function<void(absl::Status, Response)> done) {
  if (!p.ok()) {
    done(p.status(), {});
    return;
  }
  p->deadline = deadline;
  p->is_cancelled = [cancellation] { return cancellation->cancelled(); };
  pipeline->Run(*std::move(p), [request, fill, done = std::move(done)](
                                   absl::StatusOr<PipelineResult> result) {
    Response response;
    absl::Status status = result.status();
    if (result.ok()) status = fill(*result, request, &response);
    done(status, std::move(response));
  });
}

absl::Status FillStreamPseudoLabel(const PipelineResult& result,
                                   const v1::ImageRequest& request,
                                   v1::PseudoLabelStreamResponse* out) {
  out->set_request_id(request.request_id());
  return FillPseudoLabel(result, request, out->mutable_pseudo_label());
}

}  // namespace

grpc::ServerBidiReactor<v1::FeatureRequest, v1::FeatureResponse>*
PriMaPsServiceImpl::ExtractFeatures(grpc::CallbackServerContext* context) {
  using Reactor = StreamReactor<v1::FeatureRequest, v1::FeatureResponse>;
  InferencePipeline* pipeline = pipeline_;
  const absl::Time deadline = Deadline(context);
  auto process = [pipeline, deadline](
                     const v1::FeatureRequest& request,
                     std::shared_ptr<const StreamCancellation> cancellation,
                     Reactor::Done done) {
    RunStreamItem(pipeline, deadline, std::move(cancellation),
                  ToPipelineRequest(request), request, &FillFeatures,
                  std::move(done));
  };
  return AddStream(
      new Reactor(this, "ExtractFeatures", /*ordered=*/true, process, nullptr));
}

grpc::ServerBidiReactor<v1::ImageRequest, v1::PseudoLabelStreamResponse>*
PriMaPsServiceImpl::StreamPseudoLabels(grpc::CallbackServerContext* context) {
  using Reactor =
      StreamReactor<v1::ImageRequest, v1::PseudoLabelStreamResponse>;
  InferencePipeline* pipeline = pipeline_;
  const absl::Time deadline = Deadline(context);
  auto process = [pipeline, deadline](
                     const v1::ImageRequest& request,
                     std::shared_ptr<const StreamCancellation> cancellation,
                     Reactor::Done done) {
    RunStreamItem(pipeline, deadline, std::move(cancellation),
                  ToPipelineRequest(Task::kPseudoLabel, request), request,
                  &FillStreamPseudoLabel, std::move(done));
  };
  auto error_response = [](const v1::ImageRequest& request,
                           const absl::Status& status) {
    v1::PseudoLabelStreamResponse response;
    response.set_request_id(request.request_id());
    response.mutable_error()->set_code(static_cast<int>(status.code()));
    response.mutable_error()->set_message(std::string(status.message()));
    return response;
  };
  return AddStream(new Reactor(this, "StreamPseudoLabels", /*ordered=*/false,
                               process, error_response));
}

}  // namespace primaps
