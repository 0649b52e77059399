#!/usr/bin/env bash
# The GPU check, to run as is on a machine with an NVIDIA GPU: configures and builds the CUDA
# plugin with the GPU tests and benchmark (ANYPREC_GPU_ONLY: needs only CMake, a C++20
# compiler and the CUDA toolkit), runs the op tests against the CPU reference, runs the
# benchmark; where the full build's packages and ../shared are there too, checks the whole
# forward pass against the CPU and times decode; prints a short table last. Full logs go to
# LOG_DIR.
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

# The whole forward pass needs the full build (deploy/install-deps.sh's packages) and the
# shared models; where both are there, check it on the GPU against the CPU, and time decode
# on a Llama-2-7B-shaped image.
forward=skipped
shared=$root/../shared
if [ -f "$shared/models/TinyStories-656K/config.json" ] &&
   cmake -S "$root" -B "$build-full" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc" >"$logs/build_full.log" 2>&1 &&
   cmake --build "$build-full" -j "$(nproc)" >>"$logs/build_full.log" 2>&1; then
  echo "== whole forward pass (logs: $logs/forward.log)"
  bin=$build-full/bin
  images=$build-full/gpu-check-images
  {
    [ -d "$images/TinyStories-656K" ] || "$bin/anyprec-quantize" --model "$shared/models/TinyStories-656K" --out "$images/TinyStories-656K" --sensitivity none
    "$bin/anyprec-check-forward-gpu" --model "$images/TinyStories-656K"
    if [ ! -d "$images/llama-2-7b-2l" ]; then
      "$bin/anyprec-synthesize" --config "$root/tests/bench/llama-2-7b.config.json" --layers 2 --out "$images/llama-2-7b-2l-hf" &&
        cp "$shared/tokenizers/mistral-7b-v0.1/tokenizer.json" "$images/llama-2-7b-2l-hf/" &&
        "$bin/anyprec-quantize" --model "$images/llama-2-7b-2l-hf" --out "$images/llama-2-7b-2l" --sensitivity none --seed-method lloyd
    fi
    "$bin/anyprec-check-forward-gpu" --model "$images/llama-2-7b-2l" --decode-tokens 64
  } >"$logs/forward.log" 2>&1
  forward="exit $?"
  grep -E "FAIL|passed|^\| " "$logs/forward.log" | tail -20
else
  echo "== whole forward pass: skipped (needs deploy/install-deps.sh's packages and ../shared; see $logs/build_full.log)"
fi

echo
echo "== summary"
head -3 "$logs/bench_gpu.md"
grep -E "^## |^\| 1 \|" "$logs/bench_gpu.md"
echo
echo "op tests: $(tail -1 "$logs/test_backend_ops.log") (exit $tests); benchmark exit $bench; whole forward pass: $forward;" \
  "$(( $(date +%s) - start )) s in all"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ] && { [ "$forward" = skipped ] || [ "$forward" = "exit 0" ]; }
