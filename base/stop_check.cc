#include "base/stop_check.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace primaps {

absl::Status StopCheck::Poll(absl::string_view step) const {
  if (cancelled_ && cancelled_()) {
    return absl::CancelledError(
        absl::StrCat("request cancelled during ", step));
  }
  if (deadline_ != absl::InfiniteFuture() && absl::Now() > deadline_) {
    return absl::DeadlineExceededError(
        absl::StrCat("deadline passed during ", step));
  }
  return absl::OkStatus();
}

}  // namespace primaps
