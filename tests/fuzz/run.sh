#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/) and runs each on its seed corpus for
# SECONDS (default 30). A crash, a sanitizer report, a leak or an input slower than 10 s fails
# the run; the input that did it is left in build-fuzz/artifacts/. New inputs the fuzzers find
# go to build-fuzz/corpus/ (the seeds in tests/fuzz/corpus stay as they are).
#
# Usage: tests/fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors_fuzz model_config_fuzz model_dir_fuzz tokenizer_file_fuzz tokenizer_fuzz chat_template_fuzz tenants_fuzz request_fuzz)
build="$root/build-fuzz"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DANYPREC_FUZZ=ON -DANYPREC_CUDA=OFF -DBUILD_TESTING=OFF > /tmp/anyprec-fuzz-configure.log 2>&1 || { cat /tmp/anyprec-fuzz-configure.log; exit 1; }
cmake --build "$build" --target anyprec-fuzzers --parallel "$(nproc)"

mkdir -p "$build/artifacts"
export ANYPREC_SHARED=${ANYPREC_SHARED:-$root/../shared}
# Seeds read from ../shared: the families' configs (rope_scaling types, windows, biases,
# q/k norms, partial rotary, GeGLU), copied into the run's corpus.
mkdir -p "$build/corpus/model_config_fuzz"
for config in "$ANYPREC_SHARED"/models/synthetic-arch/*/config.json; do
  install -m 0644 "$config" "$build/corpus/model_config_fuzz/$(basename "$(dirname "$config")").json"
done
# The real chat templates (../shared/chat-templates), likewise.
mkdir -p "$build/corpus/chat_template_fuzz"
for chat_template in "$ANYPREC_SHARED"/chat-templates/*.jinja; do
  install -m 0644 "$chat_template" "$build/corpus/chat_template_fuzz/$(basename "$chat_template")"
done
for target in "${targets[@]}"; do
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"
  echo "== $target: ${seconds} s"
  log="$build/$target.log"
  if ! "$build/bin/$target" "$corpus" "$root/tests/fuzz/corpus/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
      -artifact_prefix="$build/artifacts/$target-" -print_final_stats=1 > "$log" 2>&1; then
    grep -E -A30 "^==[0-9]+==|runtime error|SUMMARY" "$log" | head -60
    echo "$target failed: the input is in $build/artifacts, the whole log in $log"
    exit 1
  fi
  grep -E "^Done [0-9]+ runs|cov: [0-9]+" "$log" | tail -2
done
echo "fuzzing: every target ran ${seconds} s without a finding"
