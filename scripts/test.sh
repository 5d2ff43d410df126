#!/usr/bin/env bash
# Installs what is missing, builds and runs the test suite.
#
#   scripts/test.sh [--full] [BUILD_DIR]     (default build dir: build)
#
# Without --full: the unit and integration tests (ctest). With --full, then
# also the builds that compile the project again with other settings, each
# outside ctest's timeouts: the libFuzzer targets (a short run each), ASan +
# UBSan over the test suite, ThreadSanitizer over the concurrent parts, the
# CRF kernels built for SSE2 compared bit for bit with the main build's, and
# the CPU Docker image built and run with its Compose services
# (scripts/check_images.sh; skipped with a line saying why where Docker is
# not usable).
set -euo pipefail
cd "$(dirname "$0")/.."
full=0
build_dir=build
for arg in "$@"; do
  case "$arg" in
    --full) full=1 ;;
    -*) echo "usage: scripts/test.sh [--full] [BUILD_DIR]" >&2; exit 2 ;;
    *) build_dir="$arg" ;;
  esac
done

if [ "$full" -eq 1 ]; then bash scripts/install_deps.sh --full; else bash scripts/install_deps.sh; fi
# ccache (when installed) shares its cache between checkouts in different
# folders: paths relative to the checkout, the working directory not hashed.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
# Benchmarks are not tests: the suite builds without them (bench/ builds with
# the default configuration, e.g. `cmake -S . -B build`).
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRIMAPS_BUILD_BENCHMARKS=OFF
cmake --build "$build_dir" --parallel "$(nproc)"
ctest --test-dir "$build_dir" --output-on-failure --parallel "$(nproc)"
echo "test.sh: install, build and test suite done in $SECONDS s"

if [ "$full" -eq 1 ]; then
  step() {  # step NAME COMMAND...: runs and times one of the extra builds
    local name=$1; shift
    local start=$SECONDS
    echo "== $name"
    "$@"
    echo "== $name: passed in $((SECONDS - start)) s"
  }
  step fuzzers bash scripts/run_fuzzers.sh 10
  step sse2_kernels bash scripts/run_sse2_kernels.sh "$build_dir"
  step tsan bash scripts/run_tsan.sh "$build_dir"
  step asan_ubsan bash scripts/run_sanitizers.sh
  step docker_images bash scripts/check_images.sh "$build_dir"
  echo "full: 4 extra builds and the Docker images passed"
fi
