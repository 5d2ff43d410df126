#!/usr/bin/env bash
# Where a ViT-S/8 forward's time goes, per op, in fp32 and bf16: one
# profiled forward (LibTorch's profiler) per size and precision after the
# timed ones; each op's self time (its time less that of the ops it calls),
# summed by kind.
#   bench/vit_profile.sh [build-dir] [threads] [sizes]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"; threads="${2:-2}"; sizes="${3:-320 448}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 bench/vit_forward_bench.py write "$tmp/vits8.safetensors"
for size in $sizes; do
  for precision in fp32 bf16; do
    "$build/bench/primaps_vit_bench" --weights="$tmp/vits8.safetensors" \
        --threads="$threads" --reps=2 --chunks=0 --size="$size" \
        --precision="$precision" --profile="$tmp/trace_${precision}_${size}.json" >/dev/null
  done
done
/usr/bin/python3 - "$tmp" "$sizes" <<'PY'
import collections, json, sys
tmp, sizes = sys.argv[1], sys.argv[2].split()
KINDS = [  # (kind, op names), first match wins
    ("linear products (QKV, projection, MLP)", ("aten::addmm", "aten::addmm_", "aten::mm", "aten::mkldnn_linear", "aten::linear")),
    ("attention products (scores, times values)", ("aten::bmm", "aten::baddbmm", "aten::baddbmm_", "aten::matmul")),
    ("softmax", ("aten::softmax", "aten::_softmax")),
    ("LayerNorm", ("aten::layer_norm", "aten::native_layer_norm")),
    ("GELU", ("aten::gelu",)),
    ("patch embedding", ("aten::conv2d", "aten::convolution", "aten::_convolution", "aten::mkldnn_convolution")),
    ("adds and scales", ("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::div")),
    ("copies and layout", ("aten::copy_", "aten::contiguous", "aten::clone", "aten::cat",
                           "aten::to", "aten::_to_copy", "aten::reshape", "aten::view",
                           "aten::permute", "aten::transpose", "aten::t", "aten::slice",
                           "aten::select", "aten::unbind", "aten::expand", "aten::narrow")),
    ("allocation", ("aten::empty", "aten::empty_strided", "aten::zeros", "aten::resize_")),
]
def kind(name):
    for k, names in KINDS:
        if name in names:
            return k
    return "other"

def self_times(path):
    events = json.load(open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
    by_thread = collections.defaultdict(list)
    for e in spans:
        by_thread[e.get("tid")].append(e)
    out = collections.Counter()
    total = 0.0
    for tid, es in by_thread.items():
        es.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [end, event, child time]
        def close(item):
            end, e, child = item
            out[kind(e["name"])] += e["dur"] - child
        for e in es:
            while stack and e["ts"] >= stack[-1][0]:
                close(stack.pop())
            if stack:
                stack[-1][2] += e["dur"]
            else:
                total += e["dur"]
            stack.append([e["ts"] + e["dur"], e, 0.0])
        while stack:
            close(stack.pop())
    return out, total

columns = []
for size in sizes:
    for precision in ("fp32", "bf16"):
        columns.append((f"{size} {precision}", *self_times(f"{tmp}/trace_{precision}_{size}.json")))
print("| op (self time, % of the forward's ops) | " + " | ".join(c[0] for c in columns) + " |")
print("|---|" + "---|" * len(columns))
for k in [k for k, _ in KINDS] + ["other"]:
    print(f"| {k} | " + " | ".join(f"{100 * c[1][k] / c[2]:.1f}%" for c in columns) + " |")
print("| all ops (ms) | " + " | ".join(f"{c[2] / 1000:.0f}" for c in columns) + " |")
PY
