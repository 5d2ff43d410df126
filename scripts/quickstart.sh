#!/usr/bin/env bash
# The main job, end to end: installs what is missing, builds the server and
# the client, starts primaps-server on the built-in backbone, writes pseudo
# labels and colour overlays for sample images (whole photos, at their own
# size, with a legend), and stops the server.
# Results: out/quickstart/{labels,overlays}/.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build}"
out=out/quickstart

bash scripts/install_deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build "$build_dir" --target primaps-server primaps-client primaps-make-samples

rm -rf "$out" && mkdir -p "$out/images" "$out/labels" "$out/overlays"
"$build_dir/tools/primaps-make-samples" --out="$out/images" --count=4
# The demo photos, when they sit beside the checkout.
if [ -d ../shared/data/demo ]; then cp ../shared/data/demo/* "$out/images/"; fi

source scripts/lib/server.sh
start_server "$build_dir/server/primaps-server" "$out/server.log" --backbone=builtin
echo "primaps-server is up on 127.0.0.1:$port (log: $out/server.log)"

for image in "$out"/images/*; do
  name=$(basename "${image%.*}")
  "$build_dir/client/primaps-client" pseudo --server="127.0.0.1:$port" --image="$image" \
      --output_size=original --out="$out/labels/$name.png" --overlay="$out/overlays/$name.png"
done

stop_server
echo "done: $(ls "$out/labels" | wc -l) label maps in $out/labels, overlays in $out/overlays"
