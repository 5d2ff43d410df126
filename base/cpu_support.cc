#include "base/cpu_support.h"

#include <cstdio>

namespace primaps {

absl::Status CheckCpuSupport() {
#if defined(PRIMAPS_REQUIRE_AVX2)
  if (!__builtin_cpu_supports("avx2")) {
    return absl::FailedPreconditionError(
        "this build's CRF kernels use AVX2, which this CPU lacks; rebuild "
        "with cmake -DPRIMAPS_AVX2=OFF");
  }
#endif
  return absl::OkStatus();
}

bool CpuCanRunThisBuild(const char* program) {
  const absl::Status status = CheckCpuSupport();
  if (!status.ok())
    std::fprintf(stderr, "%s: %s\n", program, status.ToString().c_str());
  return status.ok();
}

}  // namespace primaps
