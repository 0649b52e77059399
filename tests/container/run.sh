#!/usr/bin/env bash
# The container test: builds the CPU image (deploy/container/cpu.Dockerfile) with podman, runs it
# on TinyStories-656K quantized at first start, talks to it with `anyprec client`, has a real
# Prometheus scrape it and answer every query of the Grafana dashboard, checks the health check,
# the non-root user and a restart that reuses the image, then stops it with SIGTERM under load.
# Needs root (rootful podman), build/bin from deploy/build.sh, and ../shared.
# No Docker engine or registry is needed: the Debian base image is made here with debootstrap
# from the mirror apt already uses, and kept for later runs.
# Usage: tests/container/run.sh [LOG_DIR]   (default: build/container-test)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
shared=${ANYPREC_SHARED:-$(cd "$root/.." && pwd)/shared}
work=$(mkdir -p "${1:-$root/build/container-test}" && cd "${1:-$root/build/container-test}" && pwd)
bin=$root/build/bin
model=$shared/models/TinyStories-656K
base_image=localhost/anyprec-base:bookworm
image=localhost/anyprec:cpu
container=anyprec-container-test
grpc_port=${ANYPREC_TEST_GRPC_PORT:-55051}
metrics_port=${ANYPREC_TEST_METRICS_PORT:-59464}
http_port=${ANYPREC_TEST_HTTP_PORT:-58000}
prometheus_port=${ANYPREC_TEST_PROMETHEUS_PORT:-59090}

say() { echo "container-test: $*"; }
fail() { echo "container-test: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root for rootful podman"
[ -f "$model/config.json" ] || fail "no model at $model (../shared must sit beside the repository)"
for tool in podman runc debootstrap prometheus curl node; do
  command -v "$tool" > /dev/null || fail "$tool is missing: run deploy/install-deps.sh"
done
[ -x "$bin/anyprec" ] || fail "no $bin/anyprec: run deploy/build.sh first"

# The settings that let podman run here: no ulimits to raise, cgroups without systemd.
export CONTAINERS_CONF=$work/containers.conf
printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' > "$CONTAINERS_CONF"
podman_() { podman --runtime /usr/bin/runc "$@"; }

load_pids=()
cleanup() {
  podman_ rm -f -v "$container" > /dev/null 2>&1 || true
  [ -n "${prometheus_pid:-}" ] && kill "$prometheus_pid" 2> /dev/null || true
  for pid in "${load_pids[@]}"; do kill "$pid" 2> /dev/null || true; done
}
trap cleanup EXIT
cleanup

if ! podman_ image exists "$base_image"; then
  # Debian's own archives as apt uses them here (other repositories need keys the image lacks).
  suites=$(apt-cache policy | awk '$3 ~ /^bookworm(-updates|-security)?\/main$/ {print $2, $3}' | sort -u)
  mirror=$(awk '$2 == "bookworm/main" {print $1; exit}' <<< "$suites")
  [ -n "$mirror" ] || fail "apt here uses no Debian bookworm archive"
  say "making $base_image with debootstrap from $mirror"
  rootfs=$work/rootfs
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 || fail "debootstrap (see $work/debootstrap.log)"
  # The same suites as this machine (updates and security too), so the image gets the same versions.
  awk '{split($2, s, "/"); print "deb", $1, s[1], "main"}' <<< "$suites" > "$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | podman_ import - "$base_image" > "$work/import.log" 2>&1 || fail "podman import (see $work/import.log)"
  rm -rf "$rootfs"
fi

say "building $image"
started=$SECONDS
podman_ build --format docker --network host --build-arg "BASE_IMAGE=$base_image" \
  -f "$root/deploy/container/cpu.Dockerfile" -t "$image" "$root" > "$work/build.log" 2>&1 || { tail -30 "$work/build.log"; fail "podman build (see $work/build.log)"; }
say "built in $((SECONDS - started)) s: $(podman_ image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"

# NVIDIA's base images cannot be fetched here, so the CUDA Dockerfile's build stage is built on
# the Debian base with this machine's CUDA toolkit mounted in: that checks its steps, the plugin's
# build inside a container, and the runtime package list; the runtime stage stays unverified.
if [ -x /usr/local/cuda/bin/nvcc ]; then
  say "building the CUDA image's build stage (Debian base, this machine's CUDA toolkit)"
  started=$SECONDS
  podman_ build --format docker --network host --target build --build-arg "BUILD_IMAGE=$base_image" \
    -v /usr/local/cuda:/usr/local/cuda:ro -f "$root/deploy/container/cuda.Dockerfile" -t localhost/anyprec:cuda-build "$root" \
    > "$work/build-cuda.log" 2>&1 || { tail -30 "$work/build-cuda.log"; fail "podman build of the CUDA build stage (see $work/build-cuda.log)"; }
  podman_ run --rm --entrypoint test localhost/anyprec:cuda-build -s /opt/anyprec/lib/libanyprec_cuda.so ||
    fail "the CUDA build stage made no plugin"
  say "CUDA build stage built in $((SECONDS - started)) s"
else
  say "no /usr/local/cuda/bin/nvcc: the CUDA Dockerfile's build stage is not built"
fi

# A volume for the image the container quantizes at first start, owned by its user.
rm -rf "$work/models" && mkdir -p "$work/models" && chown 10001:10001 "$work/models"
# The tenants file, and gold's key in plain text in a key folder beside it (as a Kubernetes
# Secret mounts keys), in a folder mounted at /etc/anyprec as deploy/compose.yaml does.
gold_key=container-test-gold-key
rm -rf "$work/etc" && mkdir -p "$work/etc/keys"
{
  echo 'anonymous_tenant = "free"'
  echo '[tenants.free]'
  echo 'default_bits = 3'
  echo 'max_bits = 4'
  echo '[tenants.gold]'
  echo 'default_bits = 8'
} > "$work/etc/tenants.toml"
echo "$gold_key" > "$work/etc/keys/gold"
chmod -R a+rX "$work/etc"

# Arguments go to the server.
run_container() {
  podman_ run -d --name "$container" --network host --stop-timeout 45 \
    -v "$model:/models/hf:ro" -v "$shared/data/wikitext-2-raw/wiki.valid.raw:/models/calibration.txt:ro" -v "$work/models:/models/out" -v "$work/etc:/etc/anyprec:ro" \
    -e ANYPREC_IMAGE=/models/out/image -e ANYPREC_MODEL_NAME=TinyStories-656K \
    -e "ANYPREC_LISTEN=127.0.0.1:$grpc_port" -e "ANYPREC_METRICS_LISTEN=127.0.0.1:$metrics_port" -e "ANYPREC_HTTP_LISTEN=127.0.0.1:$http_port" \
    "$image" "$@" > /dev/null 2>> "$work/podman-run.log"
}
# `podman healthcheck run` runs the image's HEALTHCHECK once (and fails if it has none).
wait_healthy() {
  for _ in $(seq 1 240); do
    [ "$(podman_ inspect -f '{{.State.Running}}' "$container")" = true ] || { podman_ logs "$container" | tail -20; fail "the container exited"; }
    if podman_ healthcheck run "$container" > /dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  podman_ logs "$container" | tail -20
  fail "not healthy after 120 s"
}
client() { "$bin/anyprec" client --addr "127.0.0.1:$grpc_port" --timeout 60 "$@"; }

say "first start: quantizes the mounted Hugging Face model, then serves"
run_container --max-running 4
wait_healthy
podman_ logs "$container" > "$work/first-start.log" 2>&1
grep -q "quantizing /models/hf" "$work/first-start.log" || fail "the first start did not quantize"
[ -f "$work/models/image/anyprec.safetensors" ] || fail "no image was written to the volume"
[ "$(podman_ exec "$container" id -u)" = 10001 ] || fail "the server does not run as the non-root user 10001"

text=$(client --bits 3 --prompt "Once upon a time" --max-new-tokens 16) || fail "anonymous generation at 3 bits"
[ -n "$text" ] || fail "empty generation"
client --api-key "$gold_key" --prompt "The sun was shining" --max-new-tokens 16 > /dev/null || fail "gold tenant at its default 8 bits"
client --bits 8 --prompt "Once" --max-new-tokens 4 > /dev/null 2>&1 && fail "the free tenant was served at 8 bits"
models=$(client --list-models) || fail "ListModels"
grep -q "TinyStories-656K@3" <<< "$models" || fail "the models are not named after ANYPREC_MODEL_NAME: $models"
http_models=$(curl -fsS -H "Authorization: Bearer $gold_key" "http://127.0.0.1:$http_port/v1/models") || fail "GET /v1/models over HTTP"
grep -q '"TinyStories-656K@3"' <<< "$http_models" || fail "the HTTP front does not list the models: $http_models"
say "served: $text"

metrics=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics") || fail "scraping /metrics"
for series in 'anyprec_generation_tokens_total{api="grpc",bits="3",tenant="free"}' 'anyprec_generation_tokens_total{api="grpc",bits="8",tenant="gold"}' anyprec_requests_waiting anyprec_build_info; do
  grep -qF "$series" <<< "$metrics" || fail "/metrics has no $series"
done

say "a real Prometheus scrapes the container; every query of the Grafana dashboard must evaluate"
sed -e "s/anyprec:9464/127.0.0.1:$metrics_port/" -e 's/scrape_interval: .*/scrape_interval: 1s/' \
  "$root/deploy/prometheus/prometheus.yml" > "$work/prometheus.yml"
rm -rf "$work/prometheus-data"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus-data" \
  --web.listen-address="127.0.0.1:$prometheus_port" > "$work/prometheus.log" 2>&1 &
prometheus_pid=$!
for _ in $(seq 1 60); do
  up=$(curl -fsS "http://127.0.0.1:$prometheus_port/api/v1/query?query=up" 2> /dev/null || true)
  grep -q '"value":\[[0-9.]*,"1"\]' <<< "$up" && break
  sleep 0.5
done
sleep 3  # a few scrapes after the first, so that rates have two samples
node "$root/tests/deploy/check-dashboard.mjs" "$root/deploy/grafana/dashboards/anyprec.json" "http://127.0.0.1:$prometheus_port" "$root/server/metrics.cc" ||
  fail "a dashboard query does not evaluate"

say "restart: the image on the volume is reused, not quantized again"
podman_ stop -t 45 "$container" > /dev/null 2>> "$work/podman-run.log"
podman_ rm -v "$container" > /dev/null 2>> "$work/podman-run.log"
# One request decodes at a time, so that the drain below has a queue to finish.
run_container --max-running 1
wait_healthy
restart_log=$(podman_ logs "$container" 2>&1)
! grep -q "quantizing" <<< "$restart_log" || fail "the restart quantized again"

say "SIGTERM under load: the requests in flight and queued finish, the container exits 0"
"$bin/anyprec-loadtest" --server "127.0.0.1:$grpc_port" --concurrency 12 --requests 12 --output-tokens 400 \
  --prompts "$shared/data/tinystories/tinystories_val_head.txt" --prompt-words 8 --api-key "$gold_key" \
  --json "$work/drain.json" > "$work/drain.log" 2>&1 &
load_pids=($!)
loaded=false
for _ in $(seq 1 500); do
  metrics=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics" || true)
  if grep -qE '^anyprec_requests_running 1' <<< "$metrics" && grep -qE '^anyprec_requests_waiting (1[01]|[4-9])' <<< "$metrics"; then
    loaded=true
    break
  fi
  sleep 0.01
done
$loaded || fail "the load never reached one request running and several queued"
kill -TERM "$(podman_ inspect -f '{{.State.Pid}}' "$container")"
podman_ wait "$container" > /dev/null 2>> "$work/podman-run.log"
wait "${load_pids[0]}" || fail "anyprec-loadtest failed (see $work/drain.log)"
load_pids=()
# Every request was running or queued at SIGTERM: each must have finished whole.
node -e 'const all = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[0].by_bits.all;
  if (JSON.stringify(all.outcomes) !== JSON.stringify({"OK/LENGTH": 12}) || all.output_tokens !== 4800) {
    console.error("at SIGTERM:", JSON.stringify(all.outcomes), all.output_tokens, "tokens"); process.exit(1); }' "$work/drain.json" ||
  fail "a request running or queued at SIGTERM did not finish whole"
exit_code=$(podman_ inspect -f '{{.State.ExitCode}}' "$container")
podman_ logs "$container" > "$work/second-start.log" 2>&1
[ "$exit_code" = 0 ] || fail "exit code $exit_code after SIGTERM (see $work/second-start.log)"
drained=$(sed -n '/draining/,$p' "$work/second-start.log")
grep -q "finish=LENGTH" <<< "$drained" ||
  fail "no request finished during the drain, so none was in flight at SIGTERM (see $work/second-start.log)"
say "passed (logs in $work)"
