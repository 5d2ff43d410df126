#!/usr/bin/env bash
# The CRF and lattice kernels as built with -DPRIMAPS_AVX2=OFF (SSE2 rows,
# four lanes per vector), the code path for CPUs without AVX2:
#   - against the same golden fixtures and exact dense CRF as the default
#     build;
#   - bit for bit against MAIN_BUILD's kernels: both builds' CRF marginals
#     on the demo photos and generated scenes, at several label counts, must
#     have the same digest (tools/crf_digest.cc).
#
#   scripts/run_sse2_kernels.sh [MAIN_BUILD]    (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
main_build=${1:-build}
cmake -S . -B build-sse2 -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRIMAPS_AVX2=OFF \
    -DPRIMAPS_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build build-sse2 --target crf_golden_test dense_crf_test primaps-crf-digest
if grep -q -- "-mavx2" build-sse2/build.ninja; then
  echo "build-sse2 still compiles with -mavx2" >&2
  exit 1
fi
build-sse2/tests/crf_golden_test --gtest_brief=1
build-sse2/tests/dense_crf_test --gtest_brief=1

cmake --build "$main_build" --target primaps-crf-digest primaps-make-samples
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$main_build/tools/primaps-make-samples" --out="$work" --count=2
images=("$work"/*.png)
if [ -d ../shared/data/demo ]; then images+=(../shared/data/demo/*); fi
"$main_build/tools/primaps-crf-digest" "${images[@]}" > "$work/main.txt"
build-sse2/tools/primaps-crf-digest "${images[@]}" > "$work/sse2.txt"
if ! diff "$work/main.txt" "$work/sse2.txt"; then
  echo "the SSE2 and $main_build kernels give different CRF marginals" >&2
  exit 1
fi
echo "SSE2 kernels: CRF golden and exact-CRF tests pass; marginals bit-identical to $main_build's ($(wc -l < "$work/main.txt") digests)"
