#!/usr/bin/env bash
# Installs anyprec's dependencies from Debian 12's packages. Idempotent: packages already
# present are left as they are.
# Usage: deploy/install-deps.sh [build|all]
#   build: what compiling the binaries needs (the container images' build stage)
#   all (default): also what the tests, benchmarks, fuzzers and deployment checks need
set -euo pipefail
group=${1:-all}

build_packages=(
  build-essential cmake ninja-build ccache pkg-config
  libabsl-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libpcre2-dev libutf8proc-dev libhwy-dev libxxhash-dev libopenblas-dev libtomlplusplus-dev libssl-dev openssl
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc prometheus-cpp-dev libcpp-httplib-dev
)
test_packages=(
  git curl iproute2 prometheus gnuplot-nox clang libclang-rt-14-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  podman runc debootstrap
)

case "$group" in
  build) packages=("${build_packages[@]}") ;;
  all) packages=("${build_packages[@]}" "${test_packages[@]}") ;;
  *) echo "install-deps.sh: unknown group '$group' (build or all)" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the offline schema checks of the Kubernetes and Compose files.
if [ "$group" = all ] && ! command -v npm > /dev/null; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
