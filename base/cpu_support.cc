#include "base/cpu_support.h"

#include <cstdio>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

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

bool CpuHasNativeBf16() {
#if defined(__x86_64__) || defined(__i386__)
  // avx512f also checks that the OS saves the AVX-512 registers.
  if (!__builtin_cpu_supports("avx512f")) return false;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  // Leaf 7, sub-leaf 1: EAX bit 5 is AVX512_BF16.
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 5)))
    return true;
  // Leaf 7, sub-leaf 0: EDX bit 22 is AMX-BF16.
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (edx & (1u << 22)))
    return true;
#endif
  return false;
}

bool CpuCanRunThisBuild(const char* program) {
  const absl::Status status = CheckCpuSupport();
  if (!status.ok())
    std::fprintf(stderr, "%s: %s\n", program, status.ToString().c_str());
  return status.ok();
}

}  // namespace primaps
