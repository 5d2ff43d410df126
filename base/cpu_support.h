// Whether this CPU can run this build's numeric kernels (see PRIMAPS_AVX2 in
// engine/CMakeLists.txt). Binaries call it first thing, so that a CPU
// without AVX2 gets a clear message instead of an illegal instruction.
#ifndef PRIMAPS_BASE_CPU_SUPPORT_H_
#define PRIMAPS_BASE_CPU_SUPPORT_H_

#include "absl/status/status.h"

namespace primaps {

// FailedPrecondition naming the missing instruction set, or OK.
absl::Status CheckCpuSupport();

// Whether this CPU computes bf16 products natively (AVX512-BF16 or AMX-BF16,
// with the operating system's support for AVX-512 state): where bf16 is
// worth its loss of precision.
bool CpuHasNativeBf16();

// For main(): false, after printing "program: why" to stderr, when this CPU
// cannot run this build.
bool CpuCanRunThisBuild(const char* program);

}  // namespace primaps

#endif  // PRIMAPS_BASE_CPU_SUPPORT_H_
