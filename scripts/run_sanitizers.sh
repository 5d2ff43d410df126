#!/usr/bin/env bash
# Builds the torch-free unit tests with ASan + UBSan (LeakSanitizer on) in
# build-asan/ and runs them. (LibTorch is not instrumented, so the tests
# that run it are left out; TSan is not run because Debian's Abseil is not
# built with it and absl::Mutex is then invisible to TSan: every access it
# guards shows as a race.)
set -euo pipefail
cd "$(dirname "$0")/.."
tests=(image_test checkpoint_formats_test dense_crf_test segmentation_head_test model_registry_test
       file_util_test)
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRIMAPS_SANITIZE=address,undefined \
    -DPRIMAPS_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build build-asan --target "${tests[@]}"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
passed=0
for t in "${tests[@]}"; do
  "build-asan/tests/$t" --gtest_brief=1
  passed=$((passed + 1))
done
echo "$passed passed, 0 failed"
