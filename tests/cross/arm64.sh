#!/usr/bin/env bash
# The CPU kernels on 64-bit ARM, without ARM hardware: installs Debian's aarch64 cross compiler,
# qemu-user, and the arm64 builds of Abseil, Highway, GoogleTest and libgomp (multiarch packages
# beside the native ones; the test runs on their C library, deploy/aarch64-linux-gnu.cmake says
# why), cross-compiles bitplane_kernel_test alone (ANYPREC_CPU_KERNELS_ONLY) into
# build-arm64/, and runs it under qemu twice: on a CPU with every extension qemu has (-cpu max),
# where the neon-dotprod kernel must be found and match the scalar reference, and on a
# Cortex-A53 (ARMv8.0, no dot product), where no int8 kernel may be found and the rest must pass.
# Idempotent; CMAKE_BUILD_PARALLEL_LEVEL caps the compile jobs (default: every core).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-arm64"

packages=(g++-aarch64-linux-gnu qemu-user libabsl-dev:arm64 libhwy-dev:arm64 libgtest-dev:arm64 libgomp1:arm64)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  dpkg --print-foreign-architectures | grep -qx arm64 || "${sudo_cmd[@]}" dpkg --add-architecture arm64
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE="$root/deploy/aarch64-linux-gnu.cmake" \
  -DANYPREC_CPU_KERNELS_ONLY=ON > "$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" --target bitplane_kernel_test --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

# run CPU EXPECTED_KERNELS: the test passes under qemu -cpu CPU, and finds exactly those int8
# kernels (the test prints them), so that a kernel left out by a wrong CPU check fails here.
run() {
  local cpu=$1 expected=$2 log="$build/bitplane_kernel_test.$1.log"
  echo "== bitplane_kernel_test under qemu-aarch64 -cpu $cpu"
  if ! qemu-aarch64 -cpu "$cpu" "$build/bin/bitplane_kernel_test" > "$log" 2>&1; then
    grep -E -m 8 -A8 "Failure" "$log" || tail -20 "$log"
    echo "bitplane_kernel_test failed under -cpu $cpu: the whole log is in $log"
    exit 1
  fi
  grep -E "^(int8 kernels|chosen):|^\[  (PASSED|SKIPPED) +\] [0-9]+ tests?" "$log"
  if ! grep -qx "int8 kernels: $expected" "$log"; then
    echo "under -cpu $cpu the int8 kernels should be: $expected"
    exit 1
  fi
}
run max neon-dotprod
run cortex-a53 none
