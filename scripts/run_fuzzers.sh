#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang (ASan + UBSan) and runs
# each for SECONDS (default 20) on a seed corpus made from the committed
# fixtures. Crashes land in out/fuzz/<name>/ and fail the run.
#   scripts/run_fuzzers.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
out=out/fuzz
mkdir -p "$out"

core=(engine/image/image_header.cc engine/image/image_decode.cc engine/checkpoint/safetensors.cc engine/segmentation_head.cc
      engine/crf/dense_crf.cc engine/crf/mean_field.cc engine/crf/permutohedral_lattice.cc engine/crf/lattice_filter.cc engine/image/preprocess.cc
      engine/image/resize_antialias.cc engine/image/channel_maps.cc engine/checkpoint/tensor_record.cc
      engine/checkpoint/zip_reader.cc engine/checkpoint/pickle_reader.cc engine/checkpoint/pth_reader.cc engine/backbone/backbone_weights.cc
      base/file_util.cc base/stop_check.cc engine/backbone/vit_config.cc engine/image/label_image.cc)
libs=$(pkg-config --libs opencv4)
cflags=$(pkg-config --cflags opencv4)
absl=(-labsl_statusor -labsl_status -labsl_strings -labsl_str_format_internal -labsl_cord -labsl_cordz_info
      -labsl_cord_internal -labsl_cordz_functions -labsl_cordz_handle -labsl_raw_logging_internal
      -labsl_throw_delegate -labsl_int128 -labsl_strings_internal -labsl_base -labsl_spinlock_wait
      -labsl_synchronization -labsl_stacktrace -labsl_symbolize -labsl_time -labsl_time_zone
      -labsl_malloc_internal -labsl_debugging_internal -labsl_demangle_internal -labsl_exponential_biased
      -labsl_graphcycles_internal -labsl_hashtablez_sampler -labsl_civil_time -labsl_strerror)

seed() {  # seed <name> <files...>
  mkdir -p "$out/$1/corpus"
  shift_name=$1; shift
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$out/$shift_name/corpus/" || true; done
}
seed image tests/golden/fixtures/sample_scene.png ../shared/data/demo/coco_example.jpg
# Request seeds: serialized ImageRequests (raw and encoded) written by protoc
# from text.
mkdir -p "$out/request/corpus" "$out/gen"
protoc --cpp_out="$out/gen" -Iproto proto/primaps/v1/types.proto proto/primaps/v1/service.proto
printf 'request_id: "a" image { raw { width: 2 height: 2 channels: 3 pixels: "abcdefghijkl" } } preprocess { resize: 64 threshold: 0.5 }' |
  protoc --encode=primaps.v1.ImageRequest -Iproto proto/primaps/v1/service.proto > "$out/request/corpus/raw"
printf 'image { encoded: "\\211PNG\\r\\n\\032\\n" } preprocess { crop: CROP_MODE_FULL crf: false }' |
  protoc --encode=primaps.v1.ImageRequest -Iproto proto/primaps/v1/service.proto > "$out/request/corpus/encoded"
seed safetensors tests/golden/fixtures/preprocess.safetensors
seed pth tests/golden/fixtures/evil_global.pth tests/golden/fixtures/dino_tiny_fp16.pth

# Each source is compiled once (instrumented for coverage, ASan and UBSan)
# and linked into every fuzzer that needs it, two compilers at a time per
# core.
obj="$out/obj"
rm -rf "$obj" && mkdir -p "$obj"
flags=(-std=c++17 -O1 -g -fno-sanitize-recover=undefined -I. -I"$out/gen" $cflags)
request_sources=("$out/gen/primaps/v1/types.pb.cc" "$out/gen/primaps/v1/service.pb.cc"
                 server/proto_convert.cc)
objects() { for src in "$@"; do echo "$obj/$(echo "$src" | tr '/' '_').o"; done; }
for src in "${core[@]}" "${request_sources[@]}"; do
  clang++ "${flags[@]}" -fsanitize=fuzzer-no-link,address,undefined -c "$src" \
      -o "$(objects "$src")" &
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n; done
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n; done
mapfile -t core_objects < <(objects "${core[@]}")
mapfile -t request_objects < <(objects "${request_sources[@]}")

status=0
for name in image safetensors pth request; do
  bin="$out/$name/${name}_fuzzer"
  extra=()
  if [ "$name" = request ]; then
    extra=("${request_objects[@]}" -lprotobuf -lgrpc++ -lgrpc -lgpr)
  fi
  clang++ "${flags[@]}" -fsanitize=fuzzer,address,undefined \
      "fuzz/${name}_fuzzer.cc" "${extra[@]}" "${core_objects[@]}" $libs "${absl[@]}" -lz -lcrypto -o "$bin"
  echo "== $name: ${seconds}s"
  if ! (cd "$out/$name" && ASAN_OPTIONS=detect_leaks=1 "./${name}_fuzzer" -max_total_time="$seconds" \
          -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 corpus 2> fuzz.log); then
    echo "$name: FAILED (see $out/$name/fuzz.log and crash-* files)"; tail -30 "$out/$name/fuzz.log"; status=1
  fi
  grep -E "stat::number_of_executed_units|cov:" "$out/$name/fuzz.log" | tail -2 || true
done
[ $status -eq 0 ] && echo "4 passed, 0 failed"
exit $status
