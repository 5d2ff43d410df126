#!/usr/bin/env bash
# The CRF and lattice kernels as built with -DPRIMAPS_AVX2=OFF (SSE2 rows,
# four lanes per vector), against the same golden fixtures and exact dense
# CRF as the default AVX2 build: the code path for CPUs without AVX2.
#
#   scripts/run_sse2_kernels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-sse2 -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRIMAPS_AVX2=OFF \
    -DPRIMAPS_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build build-sse2 --target crf_golden_test dense_crf_test
if grep -q -- "-mavx2" build-sse2/build.ninja; then
  echo "build-sse2 still compiles with -mavx2" >&2
  exit 1
fi
build-sse2/tests/crf_golden_test --gtest_brief=1
build-sse2/tests/dense_crf_test --gtest_brief=1
echo "SSE2 kernels: CRF golden and exact-CRF tests pass"
