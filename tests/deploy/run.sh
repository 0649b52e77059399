#!/usr/bin/env bash
# Checks the deployment files offline: renders both Kubernetes overlays with `kubectl kustomize`
# and validates every object against the Kubernetes (and Prometheus Operator) schemas and the
# references between them; validates the Compose files against the Compose specification;
# checks the Prometheus configuration with promtool. A broken file fails it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
deploy=$(cd "$here/../../deploy" && pwd)
for tool in kubectl node npm promtool; do
  command -v "$tool" > /dev/null || { echo "deploy checks: $tool is missing: run deploy/install-deps.sh" >&2; exit 1; }
done
# kubectl's own kustomize must know `labels` and `patches` (v4 and later; Debian 12's
# kubernetes-client 1.20 has v2, so the machine's kubectl is needed).
kustomize=$(kubectl version --client 2> /dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
[ "${kustomize:-0}" -ge 4 ] || { echo "deploy checks: kubectl's kustomize is v${kustomize:-?}; v4 or later is needed" >&2; exit 1; }
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error > /dev/null)

for overlay in cpu gpu; do
  echo -n "k8s overlay $overlay: "
  kubectl kustomize "$deploy/k8s/overlays/$overlay" | node "$here/validate-k8s.mjs" --provided Secret/anyprec-api-keys
done
echo -n "prometheus-adapter rules: "
(cd "$here" && node -e 'const y = require("yaml"); const r = y.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  if (!r.rules.custom.some((c) => c.name.as === "anyprec_num_requests_waiting")) { console.error("no rule serves anyprec_num_requests_waiting"); process.exit(1); }
  console.log("serve anyprec_num_requests_waiting")' "$deploy/k8s/prometheus-adapter/rules.yaml")
echo -n "compose: "
(cd "$here" && node validate-compose.mjs "$deploy/compose.yaml" "$deploy/compose.gpu.yaml")
promtool check config "$deploy/prometheus/prometheus.yml"
echo "deploy checks passed"
