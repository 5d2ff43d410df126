#!/usr/bin/env bash
# DINO ViT-S/8 forward on the CPU: ours (primaps_vit_bench, fp32 and bf16)
# against ONNX Runtime's CPU provider (fp32, every graph optimization) on the
# same random weights, the same input and the same thread count, alternating
# in one run so that both see the same machine load.
#   bench/peer_bench.sh [build-dir] [threads] [rounds] [sizes]
# sizes: HxW list, default "320x320 448x448 320x640". Needs node and npm:
# onnxruntime-node is installed into bench/.peer/ (ignored by git) with
# --ignore-scripts (its install script fetches GPU binaries from elsewhere;
# the CPU binaries are in the package).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"; threads="${2:-2}"; rounds="${3:-3}"
sizes="${4:-320x320 448x448 320x640}"
if [ ! -d bench/.peer/node_modules/onnxruntime-node ]; then
  mkdir -p bench/.peer
  (cd bench/.peer && npm install --silent --no-audit --no-fund --ignore-scripts \
      onnxruntime-node@1.30.0 >/dev/null)
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 bench/vit_forward_bench.py write "$tmp/vits8.safetensors"
for size in $sizes; do
  h=${size%x*}; w=${size#*x}
  /usr/bin/python3 bench/vit_forward_bench.py onnx "$tmp/vits8.safetensors" \
      "$tmp/vits8_${h}x${w}.onnx" "$h" "$w" 2>/dev/null
done
for r in $(seq "$rounds"); do
  for size in $sizes; do
    h=${size%x*}; w=${size#*x}
    for precision in fp32 bf16; do
      "$build/bench/primaps_vit_bench" --weights="$tmp/vits8.safetensors" \
          --threads="$threads" --reps=3 --chunks=0 --height="$h" --width="$w" \
          --precision="$precision" --features_out="$tmp/ours_${precision}_${h}x${w}.bin"
    done
    node bench/peer_ort.js "$tmp/vits8_${h}x${w}.onnx" "$h" "$w" "$threads" 3 \
        "$tmp/ort_${h}x${w}.bin"
  done
done | tee "$tmp/results.jsonl"
/usr/bin/python3 - "$tmp" "$sizes" <<'PY'
import json, statistics, sys
import numpy as np
tmp, sizes = sys.argv[1], sys.argv[2].split()
rows = [json.loads(l) for l in open(f"{tmp}/results.jsonl")]
rate = {p: statistics.median(r["gflops"] for r in rows
                             if r["impl"] == "matmul" and r["precision"] == p)
        for p in ("fp32", "bf16")}
print(f"\nmatmul rate: fp32 {rate['fp32']:.0f} GFLOP/s, bf16 {rate['bf16']:.0f} GFLOP/s "
      f"({rate['bf16'] / rate['fp32']:.2f}x)")

def flop(h, w, d=384, depth=12):
    n = (h // 8) * (w // 8) + 1  # tokens with the class token
    # per block: qkv + projection 4 n d^2, MLP 8 n d^2, scores and values 2 n^2 d
    return 2.0 * depth * (12 * n * d * d + 2 * n * n * d)

def median(impl, precision, h, w):
    return statistics.median(r["median_s"] for r in rows if r["impl"] == impl
                             and r["precision"] == precision
                             and r["height"] == h and r["width"] == w)

print("| input | ONNX Runtime fp32 (s) | ours fp32 (s) | ours / ORT | ours bf16 (s) | bf16 / ORT fp32 "
      "| GFLOP | GFLOP/s ORT / ours fp32 / ours bf16 | max abs diff ORT vs ours fp32 |")
print("|---|---|---|---|---|---|---|---|---|")
for size in sizes:
    h, w = map(int, size.split("x"))
    ort = median("onnxruntime", "fp32", h, w)
    f32 = median("cpp", "fp32", h, w)
    b16 = median("cpp", "bf16", h, w)
    a = np.fromfile(f"{tmp}/ort_{h}x{w}.bin", dtype=np.float32)
    b = np.fromfile(f"{tmp}/ours_fp32_{h}x{w}.bin", dtype=np.float32)
    diff = float(np.abs(a - b).max()) if a.size == b.size else float("inf")
    g = flop(h, w) / 1e9
    print(f"| {h}x{w} | {ort:.3f} | {f32:.3f} | {f32 / ort:.2f} | {b16:.3f} | {b16 / ort:.2f} "
          f"| {g:.0f} | {g / ort:.0f} / {g / f32:.0f} / {g / b16:.0f} | {diff:.1e} |")
    if diff > 1e-3:
        print(f"  ONNX Runtime's features differ from ours by {diff:.2e} (> 1e-3)")
        sys.exit(1)
PY
