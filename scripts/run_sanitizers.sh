#!/usr/bin/env bash
# Builds every test with ASan + UBSan (LeakSanitizer on) in build-asan/ and
# runs the unit and integration tests there: the servers, clients and
# trainers those tests start are the instrumented binaries too. LibTorch,
# gRPC and Abseil come from Debian uninstrumented, so ASan checks our code's
# accesses and the calls into them, not their insides.
#
# Left out: the meta tests (fuzzers, sanitizers, the SSE2 kernel build,
# deploy configs), and the trainer's long end-to-end EM run (minutes even
# without ASan; its kill-and-resume test and the head trainer's unit tests
# do run).
# The memory-growth assertions skip themselves under ASan, whose quarantine
# of freed memory makes resident size meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRIMAPS_SANITIZE=address,undefined \
    -DPRIMAPS_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build build-asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan_suppressions.txt"
cd build-asan
ctest -j2 --timeout 600 --output-on-failure \
    -E "^(fuzzers_short|sanitizers_.*|crf_kernels_sse2|deploy_configs_validate|TrainerTest.EmImprovesOnItsInitAndPushesIntoTheServer)$"
