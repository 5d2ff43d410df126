#!/usr/bin/env bash
# `pip install ./python` offline (no index, no build isolation: Debian's
# setuptools and wheel build it) into a virtual environment that sees
# Debian's grpcio, protobuf and numpy; then the example client runs from
# that environment, without PYTHONPATH, against a real server.
#   python_install_test.sh SERVER_BIN SOURCE_DIR
set -euo pipefail
server_bin=$1; source_dir=$2
tmp=$(mktemp -d); trap 'kill -KILL $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
pid=0
# A copy, so that the build leaves nothing in the checkout.
mkdir "$tmp/src"
cp -r "$source_dir/python" "$source_dir/proto" "$tmp/src/"
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --no-index --no-build-isolation "$tmp/src/python"
cd "$tmp"
"$tmp/venv/bin/python" -c "import primaps_serve, sys; print('installed', primaps_serve.__version__, primaps_serve.__file__)" \
  | tee "$tmp/where"
grep -q "$tmp/venv" "$tmp/where"
"$server_bin" --listen=127.0.0.1:0 --metrics_listen= --http_listen= 2> "$tmp/log" &
pid=$!
for _ in $(seq 100); do grep -q "serving on port" "$tmp/log" && break; sleep 0.1; done
port=$(grep -oE "serving on port [0-9]+" "$tmp/log" | grep -oE "[0-9]+$")
"$tmp/venv/bin/python" "$source_dir/examples/python_client.py" --server "127.0.0.1:$port" \
  --image "$source_dir/tests/golden/fixtures/sample_scene.png" --out "$tmp/labels.png"
head -c 8 "$tmp/labels.png" | od -An -c | grep -q "P   N   G"
echo "1 passed, 0 failed"
