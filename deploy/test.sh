#!/usr/bin/env bash
# Sets everything up, builds, and runs every test: on the Release build (and again on the AVX2
# kernel where the CPU has a faster one), the CPU kernels cross-compiled for aarch64 under qemu, the deployment checks and the container test, then
# the tests again on a build with AddressSanitizer and UndefinedBehaviorSanitizer,
# ThreadSanitizer over the concurrency tests, and the fuzzers.
# Tests read ../shared.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/build.sh"
ctest --test-dir "$root/build" --output-on-failure --parallel "$(nproc)" --timeout 900

# The whole suite again on the AVX2 kernel, the one AVX2-only CPUs (AMD Zen 1-3, Intel before
# Ice Lake) run, when this machine runs a faster one by default: every program and test then
# takes it, as ANYPREC_CPU_KERNEL makes them (load tests size their load by what they measure).
kernels=$("$root/build/bin/anyprec-bench-decode" --list-kernels)
if [ "$(head -n 1 <<< "$kernels")" != avx2 ] && grep -qx avx2 <<< "$kernels"; then
  ANYPREC_CPU_KERNEL=avx2 ctest --test-dir "$root/build" --output-on-failure --parallel "$(nproc)" --timeout 900
fi

# The CPU kernels cross-compiled for aarch64 (build-arm64/) and run under qemu-user: the NEON
# kernel against the reference, and the exact kernel on an ARM CPU without the dot product.
"$root/tests/cross/arm64.sh"

# The deployment: Kubernetes and Compose files validated offline, then the CPU image built with
# podman and run (docs/DEPLOY.md).
"$root/tests/deploy/run.sh"
"$root/tests/container/run.sh" "$root/build/container-test"

# The CUDA plugin is built and its loading tested by the Release build; the sanitizers are
# for the host code, so this build leaves CUDA out.
cmake -S "$root" -B "$root/build-sanitize" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DANYPREC_SANITIZE=ON -DANYPREC_CUDA=OFF
cmake --build "$root/build-sanitize" --parallel "$(nproc)"
# The sensitivity quality table and the perplexity of every kernel are measurements (Release above
# prints them); the code they run is under the sanitizers through gradient_test, fisher_test and
# bitplane_kernel_test, which runs every kernel the CPU has.
ctest --test-dir "$root/build-sanitize" --output-on-failure --parallel "$(nproc)" --timeout 900 \
  --exclude-regex '^(SensitivityQuality\.|CliImageTest\.EveryKernelKeepsPerplexity)'


# ThreadSanitizer over the engine loop's and the tenant registry's concurrency tests, with one
# OpenMP thread (libgomp is not instrumented; see docs/RELIABILITY.md).
cmake -S "$root" -B "$root/build-tsan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DANYPREC_TSAN=ON -DANYPREC_CUDA=OFF
cmake --build "$root/build-tsan" --target scheduler_test tenants_test --parallel "$(nproc)"
OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" "$root/build-tsan/bin/scheduler_test"
TSAN_OPTIONS="halt_on_error=1" "$root/build-tsan/bin/tenants_test"

# Every libFuzzer target for 30 s on its seed corpus (clang, ASan, UBSan, LeakSanitizer).
"$root/tests/fuzz/run.sh" 30
