#!/usr/bin/env bash
# Builds docker/Dockerfile.cpu and runs the image as a user would: the
# server alone (health, a pseudo-label call from the host, /metrics through
# promtool, the web page, its user, no compiler inside), then the Compose
# file's server with its volumes and secret, the `label` profile over the
# demo photos into a host folder, the `train` profile publishing a head
# into the repository volume that the server then serves, and a drain on
# `docker-compose stop`. Prints each step's time and the image's size.
#
#   scripts/check_images.sh [BUILD_DIR]     (host binaries; default build)
#
# Needs a usable Docker engine: starts dockerd when it is installed and we
# are root, and skips (exit 0) with a line saying why otherwise. Makes
# debian:12 and debian:12-slim with debootstrap when they are missing (no
# registry is reachable here). Prometheus and Grafana images cannot be
# pulled either: their configs are checked by scripts/check_deploy.sh.
# Every port is published on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
build_dir=$(realpath "${1:-build}")
client="$build_dir/client/primaps-client"
trainer="$build_dir/trainer/primaps-trainer"
image=primaps-serve:cpu
project=primaps-check

step_start=$SECONDS
step_name=""
step() {  # step NAME: closes the previous step (its time) and opens the next
  [ -z "$step_name" ] || echo "check_images: $step_name: $((SECONDS - step_start)) s"
  step_start=$SECONDS
  step_name=$1
  [ "$1" = done ] || echo "== check_images: $1"
}
fail() { echo "check_images: FAILED: $*" >&2; exit 1; }

# --- a Docker engine ---------------------------------------------------------
if ! command -v docker > /dev/null; then
  echo "check_images: skipped: no docker command (install docker.io)"
  exit 0
fi
if ! docker info > /dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v dockerd > /dev/null; then
    echo "check_images: starting dockerd (log in $build_dir/dockerd.log)"
    (dockerd > "$build_dir/dockerd.log" 2>&1 &)
    for _ in $(seq 60); do docker info > /dev/null 2>&1 && break; sleep 1; done
  fi
  if ! docker info > /dev/null 2>&1; then
    echo "check_images: skipped: the Docker engine is not usable here" \
         "($(docker info 2>&1 | tail -1))"
    exit 0
  fi
fi
for tool in "$client" "$trainer"; do
  [ -x "$tool" ] || fail "$tool is missing: build the project first (scripts/test.sh)"
done
compose=(docker-compose -p "$project" -f deploy/docker-compose.yml)

tmp=$(mktemp -d)
cleanup() {
  docker rm -f primaps-check-server > /dev/null 2>&1 || true
  (cd "$repo" && "${compose[@]}" --profile train --profile label down -v --remove-orphans \
     > /dev/null 2>&1) || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_serving() {  # wait_serving ADDRESS: until health is SERVING (2 min)
  for _ in $(seq 120); do
    [ "$("$client" health --server="$1" --deadline_ms=1000 2> /dev/null)" = SERVING ] && return 0
    sleep 1
  done
  return 1
}

# --- base images ---------------------------------------------------------------
step "base images debian:12 and debian:12-slim"
if ! docker image inspect debian:12 > /dev/null 2>&1; then
  command -v debootstrap > /dev/null || fail "debian:12 is missing and debootstrap is not installed"
  debootstrap --variant=minbase bookworm "$tmp/rootfs" http://deb.debian.org/debian \
    > "$tmp/debootstrap.log" 2>&1 || { tail -20 "$tmp/debootstrap.log"; fail "debootstrap"; }
  tar -C "$tmp/rootfs" -c . | docker import -c 'CMD ["bash"]' - debian:12 > /dev/null
  rm -rf "$tmp/rootfs"
fi
# A minbase rootfs is already as small as -slim; one image serves as both.
docker image inspect debian:12-slim > /dev/null 2>&1 || docker tag debian:12 debian:12-slim

# --- the image -----------------------------------------------------------------
step "docker build -f docker/Dockerfile.cpu -t $image ."
docker build -q -f docker/Dockerfile.cpu -t "$image" . > "$tmp/build.log" 2>&1 \
  || { tail -40 "$tmp/build.log"; fail "docker build"; }
size_mb=$(( $(docker image inspect --format '{{.Size}}' "$image") / 1000000 ))
echo "check_images: image $image is $size_mb MB"
echo "check_images: runtime packages: $(docker run --rm --entrypoint cat "$image" \
  /usr/share/primaps/runtime-packages.txt | tr '\n' ' ')"

# --- the server alone ------------------------------------------------------------
step "docker run the server"
grpc=$(free_port); metrics=$(free_port); http=$(free_port)
docker run -d --name primaps-check-server \
  -p "127.0.0.1:$grpc:50051" -p "127.0.0.1:$metrics:9464" -p "127.0.0.1:$http:8080" \
  "$image" > /dev/null
wait_serving "127.0.0.1:$grpc" || { docker logs primaps-check-server; fail "health never SERVING"; }
demos=$(ls "$repo"/../shared/data/demo/*.{jpg,png} 2> /dev/null || true)
photo=$(head -1 <<< "$demos")
if [ -z "$photo" ]; then
  "$build_dir/tools/primaps-make-samples" --out="$tmp/samples" > /dev/null
  photo=$(ls "$tmp"/samples/* | head -1)
fi
"$client" pseudo --server="127.0.0.1:$grpc" --image="$photo" --out="$tmp/pseudo.png" > /dev/null \
  || fail "pseudo call"
[ -s "$tmp/pseudo.png" ] || fail "no pseudo labels written"
curl -fsS "http://127.0.0.1:$metrics/metrics" > "$tmp/metrics.txt"
promtool check metrics < "$tmp/metrics.txt" || fail "promtool check metrics"
grep -q '^primaps_requests_total{code="OK",method="PseudoLabel"} 1' "$tmp/metrics.txt" \
  || fail "/metrics does not count the pseudo call"
curl -fsS "http://127.0.0.1:$http/" | grep -qi "<html" || fail "the web page does not answer"
uid=$(docker exec primaps-check-server id -u)
[ "$uid" != 0 ] || fail "the server runs as root"
compilers=$(docker run --rm --entrypoint sh "$image" -c \
  'for c in cc gcc g++ c++ clang cmake; do command -v $c; done' || true)
[ -z "$compilers" ] || fail "the image holds a compiler: $compilers"
for _ in $(seq 60); do
  state=$(docker inspect --format '{{.State.Health.Status}}' primaps-check-server)
  [ "$state" = healthy ] && break
  sleep 2
done
[ "$state" = healthy ] || fail "Docker's health check says $state"
start=$SECONDS
docker stop -t 45 primaps-check-server > /dev/null
code=$(docker inspect --format '{{.State.ExitCode}}' primaps-check-server)
[ "$code" = 0 ] || { docker logs primaps-check-server | tail; fail "docker stop: exit $code"; }
docker logs primaps-check-server 2>&1 | grep -q "drained; 0 calls still active" \
  || fail "the server did not drain"
echo "check_images: server: SERVING, pseudo call, /metrics valid, web page, uid $uid," \
     "no compiler, healthy; docker stop drained in $((SECONDS - start)) s, exit 0"
docker rm primaps-check-server > /dev/null

# --- Docker Compose ----------------------------------------------------------------
step "docker-compose up -d server"
export PRIMAPS_BIND=127.0.0.1
PRIMAPS_GRPC_PORT=$(free_port); PRIMAPS_METRICS_PORT=$(free_port); PRIMAPS_HTTP_PORT=$(free_port)
export PRIMAPS_GRPC_PORT PRIMAPS_METRICS_PORT PRIMAPS_HTTP_PORT
openssl rand -hex 16 > "$tmp/admin_token"
export PRIMAPS_ADMIN_TOKEN_FILE="$tmp/admin_token"
mkdir -p "$tmp/models" "$tmp/input" "$tmp/output" "$tmp/data"
export PRIMAPS_MODELS_DIR="$tmp/models" PRIMAPS_INPUT_DIR="$tmp/input"
export PRIMAPS_OUTPUT_DIR="$tmp/output" PRIMAPS_DATA_DIR="$tmp/data"
chmod 755 "$tmp"
"${compose[@]}" up -d server > "$tmp/compose.log" 2>&1 || { cat "$tmp/compose.log"; fail "compose up"; }
address="127.0.0.1:$PRIMAPS_GRPC_PORT"
wait_serving "$address" || { "${compose[@]}" logs server; fail "compose server never SERVING"; }

step "docker-compose --profile label run label (the demo photos)"
# The demo photos when they sit beside the checkout, else the sample.
if [ -n "$demos" ]; then cp $demos "$tmp/input/"; else cp "$photo" "$tmp/input/"; fi
inputs=$(ls "$tmp/input" | wc -l)
# As deploy/README.md says: the output folder must be writable by the
# container's user (uid 10001).
chown 10001 "$tmp/output"
"${compose[@]}" --profile label run --rm label > "$tmp/label.log" 2>&1 \
  || { cat "$tmp/label.log"; fail "the label profile"; }
labels=$(find "$tmp/output" -name '*.png' ! -path '*/overlays/*' | wc -l)
overlays=$(find "$tmp/output/overlays" -name '*.png' | wc -l)
manifest=$(cat "$tmp"/output/manifest-*.jsonl | wc -l)
[ "$labels" -ge "$inputs" ] && [ "$overlays" -ge "$inputs" ] && [ "$manifest" -ge "$inputs" ] \
  || { ls -R "$tmp/output"; fail "label: $labels labels, $overlays overlays, $manifest manifest lines for $inputs photos"; }
echo "check_images: label: $inputs photos -> $labels label maps, $overlays overlays, $manifest manifest lines"

step "docker-compose --profile train run trainer (a short PriMaPs-EM, published)"
"$trainer" make-dataset --out="$tmp/data/train" --classes=4 --images=16 --seed=1 > /dev/null
"$trainer" make-dataset --out="$tmp/data/val" --classes=4 --images=8 --seed=2 > /dev/null
chmod -R a+rX "$tmp/data"
"${compose[@]}" --profile train run --rm trainer \
  --server=server:50051 --train=/data/train --val=/data/val --classes=4 \
  --out=/checkpoints/run --publish=/repository --publish_every=10 \
  --steps=20 --batch=8 --resize=96 --checkpoint_every=10 > "$tmp/train.log" 2>&1 \
  || { tail -30 "$tmp/train.log"; fail "the train profile"; }
# The server polls the repository every 10 s.
version=0
for _ in $(seq 40); do
  version=$("$client" admin status --server="$address" --token_file="$tmp/admin_token" 2> /dev/null \
    | sed -n 's/^serving: .*head version \([0-9]*\).*/\1/p')
  [ -n "$version" ] && [ "$version" -gt 0 ] && break
  sleep 1
done
[ -n "$version" ] && [ "$version" -gt 0 ] || { "${compose[@]}" logs server | tail; fail "the server never served the published head"; }
echo "check_images: train: published into the repository volume; the server serves head version $version"

step "docker-compose stop (drain)"
start=$SECONDS
"${compose[@]}" stop > /dev/null 2>&1
container=$("${compose[@]}" ps -q server)
code=$(docker inspect --format '{{.State.ExitCode}}' "$container")
[ "$code" = 0 ] || fail "compose stop: the server exited $code"
"${compose[@]}" logs server 2>&1 | grep -q "drained; 0 calls still active" || fail "no drain"
echo "check_images: compose stop: drained, exit 0 in $((SECONDS - start)) s (stop_grace_period 45 s)"
step "done"
echo "check_images: passed"
