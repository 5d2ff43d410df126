#!/usr/bin/env bash
# Validates what can be validated of deploy/ and docker/ without a Docker
# engine or a cluster. Prints "N passed, 0 failed" on success.
set -euo pipefail
cd "$(dirname "$0")/.."
passed=0
check() { echo "check: $1"; passed=$((passed + 1)); }

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# Compose needs the secret file to exist; an empty placeholder is enough.
touch "$tmp/admin_token"
export PRIMAPS_ADMIN_TOKEN_FILE="$tmp/admin_token"
docker-compose -f deploy/docker-compose.yml --profile train --profile label config > /dev/null
check "docker-compose config (all profiles)"
docker-compose -f deploy/docker-compose.yml -f deploy/docker-compose.cuda.yml config > /dev/null
check "docker-compose config (CUDA override)"
promtool check config deploy/prometheus/prometheus.yml > /dev/null
check "promtool check config"
kubectl kustomize deploy/k8s > "$tmp/k8s.yaml"
for kind in Deployment Service PodDisruptionBudget HorizontalPodAutoscaler ServiceMonitor Job ConfigMap; do
  grep -q "^kind: $kind$" "$tmp/k8s.yaml" || { echo "kustomize output has no $kind"; exit 1; }
done
grep -q "completionMode: Indexed" "$tmp/k8s.yaml"
check "kubectl kustomize deploy/k8s"
/usr/bin/python3 - <<'PY'
import json
d = json.load(open("deploy/grafana/dashboards/primaps.json"))
titles = [p["title"] for p in d["panels"]]
for needed in ("Throughput", "Latency", "Queue depth", "Batch sizes", "Model version", "swaps"):
    assert any(needed.lower() in t.lower() for t in titles), needed
PY
check "Grafana dashboard JSON"
# Each Dockerfile builds with the README's install script and ships the
# README's binaries.
for f in docker/Dockerfile.cpu docker/Dockerfile.cuda; do
  grep -q "scripts/install_deps.sh" "$f" || { echo "$f does not use scripts/install_deps.sh"; exit 1; }
  for bin in primaps-server primaps-client primaps-trainer; do
    grep -q "$bin" "$f" || { echo "$f does not ship $bin"; exit 1; }
    grep -q "$bin" README.md || { echo "README does not name $bin"; exit 1; }
  done
  grep -q "^USER primaps" "$f" || { echo "$f does not run as a non-root user"; exit 1; }
  grep -A1 "^HEALTHCHECK" "$f" | grep -q "primaps-client.*health" || { echo "$f has no health check"; exit 1; }
done
grep -q "scripts/install_deps.sh" README.md
check "Dockerfiles use the README's install script and binaries"
echo "$passed passed, 0 failed"
