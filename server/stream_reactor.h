// The reactor behind both streaming calls (ExtractFeatures and
// StreamPseudoLabels): up to kMaxInFlight images of one stream in the
// pipeline at once, responses written one at a time.
//
// Lifetime rules (what makes a hang-up safe):
// 1. gRPC frees the call's CallbackServerContext when OnDone returns, and
//    this reactor deletes itself in OnDone. Work in flight (decoding, the
//    batcher, PriMaPs on the CPU pool) therefore never sees the context:
//    it polls a StreamCancellation it shares (shared_ptr) with the reactor,
//    which OnCancel, a failed write and the first error mark.
// 2. Finish is called only when no image is in flight and no write is
//    outstanding (a read may be: Finish completes it with ok = false). So
//    every pipeline callback has returned into the reactor before gRPC can
//    run OnDone, and none comes after. Once finishing_ is set nothing new
//    starts: a read that completes later is dropped.
// 3. Finish is called after mu_ is released, as the last thing its caller
//    does with the reactor (OnDone may delete it on another thread at once).
//    OnDone takes mu_ once before deleting, so that no thread is still
//    inside it, and unregisters from the service before it deletes, so that
//    a drain cannot reach a deleted stream.
//
// However the stream ends, the same rules hold: the client half-closes (OK
// once every answer is written), cancels or hangs up (CANCELLED), stops
// reading while answers wait (the pending write fails: UNAVAILABLE), a
// deadline passes (gRPC cancels: CANCELLED), the first error of a stream
// without per-image errors (that status), or the server drains (answers
// what it read, then UNAVAILABLE).
//
// Memory: at most kMaxInFlight requests and their responses are held (no
// read is started while kMaxInFlight of them wait to be written), plus the
// one being written; a client that stops reading stalls its stream there.
#ifndef PRIMAPS_SERVER_STREAM_REACTOR_H_
#define PRIMAPS_SERVER_STREAM_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/proto_convert.h"

namespace primaps {

// A stream's cancellation as its in-flight work sees it. Lives as long as
// the reactor or the last work item holding it, whichever is later.
class StreamCancellation {
 public:
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> cancelled_{false};
};

// A stream the service can ask to wind down (server drain).
class DrainableStream {
 public:
  virtual ~DrainableStream() = default;
  // Stops reading; once the images already read are answered the stream
  // finishes with UNAVAILABLE (or OK if the client had half-closed). Safe
  // to call at any time before the stream's OnStreamDone.
  virtual void Drain() = 0;
};

// What a stream tells the service: each answered image (for the metrics)
// and its own end (for the count of active calls and for drains).
class StreamObserver {
 public:
  virtual ~StreamObserver() = default;
  virtual void OnStreamItem(const char* method, absl::StatusCode code,
                            absl::Duration took) = 0;
  // Called from OnDone, just before the stream deletes itself.
  virtual void OnStreamDone(DrainableStream* stream) = 0;
};

template <typename Request, typename Response>
class StreamReactor final : public grpc::ServerBidiReactor<Request, Response>,
                            public DrainableStream {
 public:
  using Done = std::function<void(absl::Status, Response)>;
  // Starts the work for one request; calls `done` exactly once, on any
  // thread (possibly before returning). The work may keep `cancellation`
  // (the stream's) as long as it likes, and nothing else of the stream.
  using Process = std::function<void(
      const Request&, std::shared_ptr<const StreamCancellation> cancellation,
      Done done)>;
  // With an ErrorResponse, a failed image is answered by its response and
  // the stream goes on; without one, the stream ends with that status.
  using ErrorResponse =
      std::function<Response(const Request&, const absl::Status&)>;
  static constexpr int kMaxInFlight = 8;

  // `observer` is borrowed and must outlive the reactor. `ordered`: answers
  // in request order; otherwise as they are ready.
  StreamReactor(StreamObserver* observer, const char* method, bool ordered,
                Process process, ErrorResponse error_response)
      : observer_(observer),
        method_(method),
        ordered_(ordered),
        process_(std::move(process)),
        error_response_(std::move(error_response)) {
    absl::MutexLock lock(&mu_);
    reading_ = true;
    this->StartRead(&incoming_);
  }

  void OnReadDone(bool ok) override {
    std::shared_ptr<Slot> slot;
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!ok) reads_done_ = true;
      if (!ok || finishing_ || end_status_.has_value()) {
        // Dropped: the stream is ending (rule 2).
        finish = MaybeFinishLocked();
      } else {
        slot = std::make_shared<Slot>();
        slot->request = std::move(incoming_);
        incoming_.Clear();
        slot->start = absl::Now();
        slots_.push_back(slot);
        // One for the slot's work, one for the call into process_ below:
        // the stream cannot finish (and the reactor die) while process_
        // runs, even when `done` comes first.
        in_flight_ += 2;
        MaybeReadLocked();
      }
    }
    if (finish) {
      this->Finish(*finish);
      return;
    }
    if (slot == nullptr) return;
    // Outside the lock: `done` may run on another thread at once, or here.
    process_(slot->request, cancellation_,
             [this, slot](absl::Status status, Response response) {
               OnProcessed(slot, std::move(status), std::move(response));
             });
    ReleaseInFlight();
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      current_write_.reset();
      if (!ok) {
        BreakLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "the client stopped reading"));
      }
      MaybeWriteLocked();
      MaybeReadLocked();
      finish = MaybeFinishLocked();
    }
    if (finish) this->Finish(*finish);
  }

  void OnCancel() override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      BreakLocked(grpc::Status::CANCELLED);
      finish = MaybeFinishLocked();
    }
    if (finish) this->Finish(*finish);
  }

  void Drain() override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (!end_status_.has_value()) {
        end_status_ = grpc::Status(
            grpc::StatusCode::UNAVAILABLE,
            "the server is shutting down; send the unanswered images again");
      }
      finish = MaybeFinishLocked();
    }
    if (finish) this->Finish(*finish);
  }

  void OnDone() override {
    // Wait out any thread still releasing mu_ after its last use of us.
    { absl::MutexLock lock(&mu_); }
    observer_->OnStreamDone(this);
    delete this;
  }

 private:
  struct Slot {
    Request request;
    Response response;
    absl::Status status;
    absl::Time start;
    bool ready = false;
  };

  void OnProcessed(const std::shared_ptr<Slot>& slot, absl::Status status,
                   Response response) {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      observer_->OnStreamItem(method_, status.code(),
                              absl::Now() - slot->start);
      slot->status = std::move(status);
      slot->response = std::move(response);
      slot->ready = true;
      --in_flight_;
      // Nobody will write it once the stream is broken; drop it now.
      if (broken_) RemoveSlotLocked(slot);
      MaybeWriteLocked();
      MaybeReadLocked();
      finish = MaybeFinishLocked();
    }
    if (finish) this->Finish(*finish);
  }

  void ReleaseInFlight() {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      finish = MaybeFinishLocked();
    }
    if (finish) this->Finish(*finish);
  }

  // Nothing more can be written (the client is gone or cancelled, or the
  // first error ended a stream without per-image errors): stop reading and
  // writing, cancel the work in flight, end with `status`.
  void BreakLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (broken_) return;
    broken_ = true;
    end_status_ = std::move(status);
    cancellation_->Cancel();
    for (auto it = slots_.begin(); it != slots_.end();) {
      it = (*it)->ready ? slots_.erase(it) : std::next(it);
    }
  }

  void RemoveSlotLocked(const std::shared_ptr<Slot>& slot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto it = slots_.begin(); it != slots_.end(); ++it) {
      if (*it == slot) {
        slots_.erase(it);
        return;
      }
    }
  }

  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reading_ || reads_done_ || finishing_ || end_status_.has_value())
      return;
    if (static_cast<int>(slots_.size()) >= kMaxInFlight) return;
    reading_ = true;
    this->StartRead(&incoming_);
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || broken_ || finishing_) return;
    auto it = slots_.begin();
    if (!ordered_) {
      while (it != slots_.end() && !(*it)->ready) ++it;
    }
    if (it == slots_.end() || !(*it)->ready) return;
    std::shared_ptr<Slot> slot = *it;
    if (!slot->status.ok()) {
      if (!error_response_) {
        // The stream ends with this image's status, once the other images
        // in flight have stopped.
        BreakLocked(ToGrpcStatus(
            absl::Status(slot->status.code(),
                         absl::StrCat("request \"", slot->request.request_id(),
                                      "\": ", slot->status.message()))));
        return;
      }
      slot->response = error_response_(slot->request, slot->status);
    }
    slots_.erase(it);
    writing_ = true;
    current_write_ = std::move(slot);
    this->StartWrite(&current_write_->response);
  }

  // The status to Finish with, once: when the stream has ended (or is
  // ending) and nothing is in flight or being written (rule 2).
  std::optional<grpc::Status> MaybeFinishLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_ || in_flight_ > 0 || writing_) return std::nullopt;
    std::optional<grpc::Status> status;
    if (broken_) {
      status = end_status_;
    } else if (slots_.empty() && reads_done_) {
      // Every image the client sent is answered (during a drain too).
      status = grpc::Status::OK;
    } else if (slots_.empty() && end_status_.has_value()) {
      status = end_status_;
    }
    if (status.has_value()) finishing_ = true;
    return status;
  }

  StreamObserver* const observer_;
  const char* const method_;
  const bool ordered_;
  const Process process_;
  const ErrorResponse error_response_;
  const std::shared_ptr<StreamCancellation> cancellation_ =
      std::make_shared<StreamCancellation>();
  absl::Mutex mu_;
  // gRPC writes it between StartRead and OnReadDone.
  Request incoming_;
  // Requests read and not yet written (or dropped), in request order.
  std::deque<std::shared_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Slot> current_write_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  // Set: the stream ends with this status and reads nothing more.
  std::optional<grpc::Status> end_status_ ABSL_GUARDED_BY(mu_);
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace primaps

#endif  // PRIMAPS_SERVER_STREAM_REACTOR_H_
