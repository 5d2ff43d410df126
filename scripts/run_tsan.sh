#!/usr/bin/env bash
# ThreadSanitizer on the three concurrent parts CI checks for races: the
# dynamic batcher (its unit tests), the model registry's hot swap (its unit
# tests, 8 threads swapping and reading), and the batch-job client (a
# TSan-built primaps-client running `label` with 8 workers against a normal
# server from MAIN_BUILD).
#
#   scripts/run_tsan.sh [MAIN_BUILD]    (default: build)
#
# These parts synchronize with pthread mutexes and std::atomic, which TSan
# sees. Debian's Abseil and gRPC are not instrumented, so absl::Mutex is
# invisible to TSan and the gRPC server itself is not checked here.
set -euo pipefail
cd "$(dirname "$0")/.."
main_build=${1:-build}
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRIMAPS_SANITIZE=thread \
    -DPRIMAPS_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build build-tsan --target dynamic_batcher_test model_registry_test primaps-client
cmake --build "$main_build" --target primaps-server primaps-make-samples
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1"

build-tsan/tests/dynamic_batcher_test --gtest_brief=1
build-tsan/tests/model_registry_test --gtest_brief=1

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/in"
"$main_build/tools/primaps-make-samples" --out="$work/in" --count=24
"$main_build/server/primaps-server" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 --http_listen=127.0.0.1:0 \
    --resize=96 --cpu_threads=2 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
  grep -q "serving on port" "$work/server.log" && break
  sleep 0.1
done
port=$(grep -oE "serving on port [0-9]+" "$work/server.log" | grep -oE "[0-9]+$")
# Exit code 66 (or a report in the log) means TSan found a race. gRPC's
# own threads hand file descriptors and buffers to each other through its
# uninstrumented locks; ignore_noninstrumented_modules keeps TSan to the
# accesses our code makes.
TSAN_OPTIONS="$TSAN_OPTIONS ignore_noninstrumented_modules=1" \
build-tsan/client/primaps-client label --server="127.0.0.1:$port" --input="$work/in" \
    --output="$work/out" --concurrency=8 --overlays 2>&1 | tee "$work/client.log"
if grep -q "ThreadSanitizer" "$work/client.log"; then
  echo "ThreadSanitizer reported a problem in the batch-job client" >&2
  exit 1
fi
echo "TSan: batcher, registry and batch-job client clean"
