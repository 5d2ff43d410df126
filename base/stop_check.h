// Lets a long computation notice that nobody waits for it any more: polled
// between its steps (a mean-field iteration, a PriMaPs iteration, a block
// of the ViT), it says CANCELLED or DEADLINE_EXCEEDED, naming the step, so
// that an abandoned request stops within one step and frees its memory.
#ifndef PRIMAPS_BASE_STOP_CHECK_H_
#define PRIMAPS_BASE_STOP_CHECK_H_

#include <functional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace primaps {

class StopCheck {
 public:
  // Never stops.
  StopCheck() = default;
  // Stops once `deadline` has passed or `cancelled` (may be empty) says so.
  StopCheck(absl::Time deadline, std::function<bool()> cancelled)
      : deadline_(deadline), cancelled_(std::move(cancelled)) {}

  // OK to go on; otherwise why to stop. A clock read and one call.
  absl::Status Poll(absl::string_view step) const;

 private:
  absl::Time deadline_ = absl::InfiniteFuture();
  std::function<bool()> cancelled_;
};

// Poll on a StopCheck that may be absent.
inline absl::Status PollStop(const StopCheck* stop, absl::string_view step) {
  return stop == nullptr ? absl::OkStatus() : stop->Poll(step);
}

}  // namespace primaps

#endif  // PRIMAPS_BASE_STOP_CHECK_H_
