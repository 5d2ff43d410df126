// PriMaPs-EM's EMA teacher schedule (DESIGN.md section 2): every
// `every` steps theta_M <- d * theta_M + (1 - d) * theta_R; the first two
// updates copy theta_R (d = 0); update n >= 3 uses d = (n - 1) / n, capped
// at `max_decay` (0.98).
#ifndef PRIMAPS_TRAINER_EM_SCHEDULE_H_
#define PRIMAPS_TRAINER_EM_SCHEDULE_H_

#include <algorithm>
#include <cstdint>

namespace primaps {

// Whether step `step` (1-based count of optimizer steps done) ends with an
// EMA update.
inline bool IsEmaStep(int64_t step, int every = 10) {
  return every > 0 && step % every == 0;
}

// The decay of EMA update number `n` (1-based).
inline double EmaDecay(int64_t n, double max_decay = 0.98) {
  if (n <= 2) return 0.0;
  return std::min(static_cast<double>(n - 1) / static_cast<double>(n),
                  max_decay);
}

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_EM_SCHEDULE_H_
