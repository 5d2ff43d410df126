#!/usr/bin/env bash
# The serving path with DINO ViT-S/8 (random weights in the official
# layout) at 320x320, fp32 and bf16, in one run: the C++ engine and server
# (primaps_vit_serving_bench) and the reference pipeline in PyTorch on the
# same weights, photos and threads (vit_forward_bench.py pipeline).
#   [MEMORY_REQUESTS=1000] bench/vit_serving_bench.sh [build-dir] [threads] [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"; threads="${2:-2}"; requests="${3:-8}"
images=../shared/data/demo
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 bench/vit_forward_bench.py write "$tmp/vits8.safetensors"
"$build/bench/primaps_vit_serving_bench" --weights="$tmp/vits8.safetensors" \
    --threads="$threads" --requests="$requests" --images_dir="$images" \
    --memory_requests="${MEMORY_REQUESTS:-1000}" | tee "$tmp/cpp.txt"
for precision in fp32 bf16; do
  /usr/bin/python3 bench/vit_forward_bench.py pipeline "$tmp/vits8.safetensors" \
      "$threads" "$requests" "$images" "$precision"
done | tee "$tmp/python.jsonl"
/usr/bin/python3 - "$tmp/cpp.txt" "$tmp/python.jsonl" <<'PY'
import json, sys
cpp = {r["precision"]: r for r in (json.loads(l) for l in open(sys.argv[1]) if l.startswith("{"))}
py = {r["precision"]: r for r in (json.loads(l) for l in open(sys.argv[2]))}
ref = py["fp32"]["median_s"]  # the reference runs in fp32
print("\n| server precision | server images/s, c=4 | reference pipeline (fp32) ms / image | speed-up | "
      "reference in the same precision, ms / image | speed-up |")
print("|---|---|---|---|---|---|")
for p in cpp:
    ips = cpp[p]["server_c4_images_per_s"]
    same = py.get(p, {}).get("median_s")
    print(f"| {p} | {ips:.2f} | {1000 * ref:.0f} | {ref * ips:.1f}x | "
          + (f"{1000 * same:.0f} | {same * ips:.1f}x |" if same else "- | - |"))
PY
