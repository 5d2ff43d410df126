#!/usr/bin/env bash
# The compose topology without Docker: primaps-server, Prometheus (Debian's)
# on loopback with the compose file's scrape config pointed at the server,
# a few calls, then a query against Prometheus's API.
#   prometheus_scrape_test.sh SERVER_BIN CLIENT_BIN SOURCE_DIR
set -euo pipefail
server_bin=$1; client_bin=$2; src=$3
tmp=$(mktemp -d)
cleanup() { kill -KILL "${server_pid:-}" "${prom_pid:-}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

metrics_port=$(free_port)
"$server_bin" --listen=127.0.0.1:0 --metrics_listen="127.0.0.1:$metrics_port" --http_listen= 2> "$tmp/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q "serving on port" "$tmp/server.log" && break; sleep 0.1; done
grpc_port=$(grep -oE "serving on port [0-9]+" "$tmp/server.log" | grep -oE "[0-9]+$")

# The compose scrape config, with the server's address and a 1 s interval.
sed -e "s/server:9464/127.0.0.1:$metrics_port/" -e "s/scrape_interval: 15s/scrape_interval: 1s/" \
    "$src/deploy/prometheus/prometheus.yml" > "$tmp/prometheus.yml"
grep -q "127.0.0.1:$metrics_port" "$tmp/prometheus.yml"
prom_port=$(free_port)
prometheus --config.file="$tmp/prometheus.yml" --web.listen-address="127.0.0.1:$prom_port" \
    --storage.tsdb.path="$tmp/tsdb" > "$tmp/prometheus.log" 2>&1 &
prom_pid=$!

image="$src/tests/golden/fixtures/sample_scene.png"
for i in 1 2 3; do
  "$client_bin" propose --server="127.0.0.1:$grpc_port" --image="$image" --out="$tmp/l$i.png" --resize=64 > /dev/null
done

# Wait for a scrape that saw the three calls.
query="sum(primaps_requests_total{job=\"primaps-server\",method=\"ProposeMasks\",code=\"OK\"})"
for _ in $(seq 60); do
  value=$(curl -s --get "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$query" |
          /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true)
  [ "$value" = "3" ] && break
  sleep 0.5
done
echo "Prometheus reports primaps_requests_total = ${value:-none}"
[ "$value" = "3" ] || { tail -20 "$tmp/prometheus.log"; exit 1; }
echo "1 passed, 0 failed"
