#!/usr/bin/env bash
# The GPU check, to run as is on a machine with an NVIDIA GPU: configures and builds the CUDA
# plugin with the GPU tests and benchmark (ANYPREC_GPU_ONLY: needs only CMake, a C++20
# compiler and the CUDA toolkit), runs the op tests against the CPU reference, runs the
# benchmark, and prints a short table last. Full logs go to LOG_DIR.
# Usage: tests/gpu/run.sh LOG_DIR [--quick]
set -uo pipefail
if [ $# -lt 1 ]; then
  echo "usage: tests/gpu/run.sh LOG_DIR [--quick]" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
logs=$(mkdir -p "$1" && cd "$1" && pwd)
shift
build=${ANYPREC_GPU_BUILD:-$root/build-gpu}
nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

{
  echo "== machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  "$nvcc" --version | tail -2
} 2>&1 | tee "$logs/machine.log"

start=$(date +%s)
echo "== build (logs: $logs/build.log)"
if ! { cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DANYPREC_GPU_ONLY=ON \
         -DCMAKE_CUDA_COMPILER="$nvcc" && cmake --build "$build" -j "$(nproc)"; } >"$logs/build.log" 2>&1; then
  tail -30 "$logs/build.log"
  echo "GPU check: BUILD FAILED"
  exit 1
fi
echo "built in $(( $(date +%s) - start )) s"

echo "== op tests (logs: $logs/test_backend_ops.log)"
"$build/bin/anyprec-test-backend-ops" >"$logs/test_backend_ops.log" 2>&1
tests=$?
grep -E "FAIL|passed|SKIPPED|error" "$logs/test_backend_ops.log" | tail -20

echo "== benchmark (logs: $logs/bench_gpu.md)"
"$build/bin/anyprec-bench-gpu" "$@" >"$logs/bench_gpu.md" 2>&1
bench=$?

echo
echo "== summary"
head -3 "$logs/bench_gpu.md"
grep -E "^## |^\| 1 \|" "$logs/bench_gpu.md"
echo
echo "op tests: $(tail -1 "$logs/test_backend_ops.log") (exit $tests); benchmark exit $bench; $(( $(date +%s) - start )) s in all"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
