#!/usr/bin/env bash
# ViT-S/8 forward at 320x320 on CPU: C++ against PyTorch on the same weights
# and threads, alternating in one run so both see the same machine load.
#   bench/vit_forward_bench.sh [build-dir] [threads] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"; threads="${2:-2}"; rounds="${3:-3}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 bench/vit_forward_bench.py write "$tmp/vits8.safetensors"
for r in $(seq "$rounds"); do
  "$build/bench/primaps_vit_bench" --weights="$tmp/vits8.safetensors" --threads="$threads" \
      --reps=3 --chunks=0,64,256
  /usr/bin/python3 bench/vit_forward_bench.py time "$tmp/vits8.safetensors" "$threads" 3
done | tee "$tmp/results.jsonl"
/usr/bin/python3 - "$tmp/results.jsonl" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
gflops = statistics.median(r["gflops"] for r in rows if r["impl"] == "matmul")
flop = 116e9  # ViT-S/8 forward at 320x320 (1601 tokens, 12 blocks)
py = statistics.median(r["median_s"] for r in rows if r["impl"] == "pytorch")
print(f"\nmatmul rate: {gflops:.0f} GFLOP/s; PyTorch: {py*1000:.0f} ms ({flop/py/1e9:.0f} GFLOP/s, "
      f"{100*flop/py/1e9/gflops:.0f}% of matmul)")
print("| implementation | ms / image | GFLOP/s | % of matmul rate | PyTorch time / this |")
print("|---|---|---|---|---|")
print(f"| PyTorch (python3-torch) | {py*1000:.0f} | {flop/py/1e9:.0f} | {100*flop/py/1e9/gflops:.0f}% | 1.00 |")
for chunk in sorted({r["chunk"] for r in rows if r["impl"] == "cpp"}):
    t = statistics.median(r["median_s"] for r in rows if r["impl"] == "cpp" and r["chunk"] == chunk)
    name = "C++, full attention" if chunk == 0 else f"C++, attention in chunks of {chunk} queries"
    print(f"| {name} | {t*1000:.0f} | {flop/t/1e9:.0f} | {100*flop/t/1e9/gflops:.0f}% | {py/t:.2f} |")
PY
