// Status propagation helpers. Debian's Abseil ships no RETURN_IF_ERROR or
// ASSIGN_OR_RETURN, so the project defines them once, here.
#ifndef PRIMAPS_BASE_STATUS_MACROS_H_
#define PRIMAPS_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PRIMAPS_CONCAT_INNER(a, b) a##b
#define PRIMAPS_CONCAT(a, b) PRIMAPS_CONCAT_INNER(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    const ::absl::Status primaps_status_ = (expr);     \
    if (!primaps_status_.ok()) return primaps_status_; \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns `x` from an
// absl::StatusOr, or returns its error status from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, rexpr)                                        \
  PRIMAPS_ASSIGN_OR_RETURN_IMPL(PRIMAPS_CONCAT(primaps_or_, __LINE__), lhs, \
                                rexpr)

#define PRIMAPS_ASSIGN_OR_RETURN_IMPL(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // PRIMAPS_BASE_STATUS_MACROS_H_
