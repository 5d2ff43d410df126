#include "server/primaps_service.h"

#include <deque>
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
      ToPipelineRequest(task, request->image(), request->preprocess());
  if (!pipeline_request.ok()) {
    finish(pipeline_request.status());
    return reactor;
  }
  pipeline_request->with_probabilities = request->probabilities();
  pipeline_request->min_head_version = request->min_head_version();
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

// A bidirectional stream with up to kMaxInFlight images in the pipeline at
// once. Responses are written one at a time; with `ordered`, in request
// order. With `per_request_errors`, a failed image answers with an error
// response and the stream goes on; otherwise the stream ends with that
// image's status.
//
// Lifetime: the reactor deletes itself in OnDone, but only once every
// pipeline callback it started has returned (they hold pointers into it).
template <typename Request, typename Response>
class StreamReactor : public grpc::ServerBidiReactor<Request, Response> {
 public:
  using Process = std::function<void(
      const Request&, std::function<void(absl::Status, Response)>)>;
  using ErrorResponse =
      std::function<Response(const Request&, const absl::Status&)>;

  StreamReactor(PriMaPsServiceImpl* service, const char* method, bool ordered,
                Process process, ErrorResponse error_response)
      : service_(service),
        method_(method),
        ordered_(ordered),
        process_(std::move(process)),
        error_response_(std::move(error_response)) {
    ++service_->active_calls_;
    absl::MutexLock lock(&mu_);
    reading_ = true;
    this->StartRead(&incoming_);
  }

  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    if (!ok) {
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    auto slot = std::make_shared<Slot>();
    slot->request = incoming_;
    slot->start = absl::Now();
    slots_.push_back(slot);
    ++in_flight_;
    // Release the lock before calling into the pipeline: `done` may run
    // on another thread at once.
    mu_.Unlock();
    process_(slot->request,
             [this, slot](absl::Status status, Response response) {
               bool remove;
               {
                 absl::MutexLock done_lock(&mu_);
                 slot->status = std::move(status);
                 slot->response = std::move(response);
                 slot->ready = true;
                 --in_flight_;
                 service_->metrics_->RecordRequest(
                     method_, absl::StatusCodeToString(slot->status.code()),
                     absl::Now() - slot->start);
                 MaybeWriteLocked();
                 MaybeReadLocked();
                 MaybeFinishLocked();
                 remove = ShouldDeleteLocked();
               }
               if (remove) Delete();
             });
    mu_.Lock();
    MaybeReadLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      // The client is gone; stop writing and wind down.
      broken_ = true;
    }
    MaybeWriteLocked();
    MaybeReadLocked();
    MaybeFinishLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    broken_ = true;
    MaybeFinishLocked();
  }

  void OnDone() override {
    bool remove;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      remove = ShouldDeleteLocked();
    }
    if (remove) Delete();
  }

 private:
  struct Slot {
    Request request;
    Response response;
    absl::Status status;
    absl::Time start;
    bool ready = false;
  };
  static constexpr int kMaxInFlight = 8;

  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reading_ || reads_done_ || broken_ || finished_) return;
    if (static_cast<int>(slots_.size()) >= kMaxInFlight) return;
    reading_ = true;
    this->StartRead(&incoming_);
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || broken_ || finished_) return;
    auto it = slots_.begin();
    if (!ordered_) {
      while (it != slots_.end() && !(*it)->ready) ++it;
    }
    if (it == slots_.end() || !(*it)->ready) return;
    std::shared_ptr<Slot> slot = *it;
    slots_.erase(it);
    if (!slot->status.ok()) {
      if (!error_response_) {
        // This stream has no per-image errors: end it with this status.
        finished_ = true;
        this->Finish(ToGrpcStatus(
            absl::Status(slot->status.code(),
                         absl::StrCat("request \"", slot->request.request_id(),
                                      "\": ", slot->status.message()))));
        return;
      }
      slot->response = error_response_(slot->request, slot->status);
    }
    writing_ = true;
    current_write_ = std::move(slot);
    this->StartWrite(&current_write_->response);
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (broken_) {
      if (writing_ || reading_) return;  // wait for the outstanding operation
      finished_ = true;
      this->Finish(cancelled_ ? grpc::Status::CANCELLED
                              : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                             "client stopped reading"));
      return;
    }
    if (reads_done_ && slots_.empty() && !writing_) {
      finished_ = true;
      this->Finish(grpc::Status::OK);
    }
  }

  // True exactly once: when gRPC is done with the call and no pipeline
  // callback is pending. The caller deletes after releasing mu_ (a member).
  bool ShouldDeleteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!done_ || in_flight_ > 0 || deleting_) return false;
    deleting_ = true;
    return true;
  }

  void Delete() {
    PriMaPsServiceImpl* service = service_;
    delete this;
    --service->active_calls_;
  }

  PriMaPsServiceImpl* const service_;
  const char* const method_;
  const bool ordered_;
  const Process process_;
  const ErrorResponse error_response_;
  absl::Mutex mu_;
  Request incoming_;
  std::deque<std::shared_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Slot> current_write_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool deleting_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::ServerBidiReactor<v1::FeatureRequest, v1::FeatureResponse>*
PriMaPsServiceImpl::ExtractFeatures(grpc::CallbackServerContext* context) {
  InferencePipeline* pipeline = pipeline_;
  const absl::Time deadline = Deadline(context);
  auto process =
      [pipeline, deadline, context](
          const v1::FeatureRequest& request,
          std::function<void(absl::Status, v1::FeatureResponse)> done) {
        absl::StatusOr<PipelineRequest> p = ToPipelineRequest(
            Task::kFeatures, request.image(), request.preprocess());
        if (!p.ok()) {
          done(p.status(), {});
          return;
        }
        p->with_masks = request.masks();
        p->deadline = deadline;
        p->is_cancelled = [context] { return context->IsCancelled(); };
        pipeline->Run(*std::move(p),
                      [request, done](absl::StatusOr<PipelineResult> result) {
                        v1::FeatureResponse response;
                        absl::Status status = result.status();
                        if (result.ok())
                          status = FillFeatures(*result, request, &response);
                        done(status, std::move(response));
                      });
      };
  return new StreamReactor<v1::FeatureRequest, v1::FeatureResponse>(
      this, "ExtractFeatures",
      /*ordered=*/true, process, nullptr);
}

grpc::ServerBidiReactor<v1::ImageRequest, v1::PseudoLabelStreamResponse>*
PriMaPsServiceImpl::StreamPseudoLabels(grpc::CallbackServerContext* context) {
  InferencePipeline* pipeline = pipeline_;
  const absl::Time deadline = Deadline(context);
  auto process =
      [pipeline, deadline, context](
          const v1::ImageRequest& request,
          std::function<void(absl::Status, v1::PseudoLabelStreamResponse)>
              done) {
        absl::StatusOr<PipelineRequest> p = ToPipelineRequest(
            Task::kPseudoLabel, request.image(), request.preprocess());
        if (!p.ok()) {
          done(p.status(), {});
          return;
        }
        p->deadline = deadline;
        p->is_cancelled = [context] { return context->IsCancelled(); };
        pipeline->Run(*std::move(p),
                      [request, done](absl::StatusOr<PipelineResult> result) {
                        v1::PseudoLabelStreamResponse response;
                        response.set_request_id(request.request_id());
                        absl::Status status = result.status();
                        if (result.ok())
                          status =
                              FillPseudoLabel(*result, request,
                                              response.mutable_pseudo_label());
                        done(status, std::move(response));
                      });
      };
  auto error_response = [](const v1::ImageRequest& request,
                           const absl::Status& status) {
    v1::PseudoLabelStreamResponse response;
    response.set_request_id(request.request_id());
    response.mutable_error()->set_code(static_cast<int>(status.code()));
    response.mutable_error()->set_message(std::string(status.message()));
    return response;
  };
  return new StreamReactor<v1::ImageRequest, v1::PseudoLabelStreamResponse>(
      this, "StreamPseudoLabels", /*ordered=*/false, process, error_response);
}

}  // namespace primaps
