#!/usr/bin/env bash
# Runs examples/python_client.py (on the primaps_serve package) against a
# real primaps-server.
#   python_client_test.sh SERVER_BIN PYTHON_PACKAGE_DIR SOURCE_DIR
set -euo pipefail
server_bin=$1; package_dir=$2; source_dir=$3
tmp=$(mktemp -d); trap 'kill -KILL $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
"$server_bin" --listen=127.0.0.1:0 --metrics_listen= --http_listen= 2> "$tmp/log" &
pid=$!
for _ in $(seq 100); do grep -q "serving on port" "$tmp/log" && break; sleep 0.1; done
port=$(grep -oE "serving on port [0-9]+" "$tmp/log" | grep -oE "[0-9]+$")
export PYTHONPATH="$package_dir"
# A committed sample scene (written by tools/make_sample_images.cc).
image="$source_dir/tests/golden/fixtures/sample_scene.png"
out=$(/usr/bin/python3 "$source_dir/examples/python_client.py" --server "127.0.0.1:$port" \
      --image "$image" --out "$tmp/labels.png")
echo "$out"
grep -qE "masks, 320x320 labels, backbone builtin, head version 0$" <<< "$out"
head -c 8 "$tmp/labels.png" | od -An -c | grep -q "P   N   G"
# A bad image: a clear error and a non-zero exit.
echo "not an image" > "$tmp/bad.png"
if /usr/bin/python3 "$source_dir/examples/python_client.py" --server "127.0.0.1:$port" \
    --image "$tmp/bad.png" 2> "$tmp/err"; then exit 1; fi
grep -q "INVALID_ARGUMENT" "$tmp/err"
echo "1 passed, 0 failed"
