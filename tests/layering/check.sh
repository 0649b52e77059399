#!/usr/bin/env bash
# The include rules of the layout (docs/ARCHITECTURE.md): each folder includes only what lies
# below it, so dependencies point one way. Prints every include that breaks a rule and fails;
# ctest runs it (Layering). Usage: check.sh [REPOSITORY_ROOT]
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
broken=0

# forbid FOLDERS... -- PREFIXES...: no source under FOLDERS includes "PREFIX...".
forbid() {
  local folders=() prefixes=()
  while [ "$1" != -- ]; do folders+=("$1"); shift; done
  shift
  prefixes=("$@")
  local pattern
  pattern=$(printf '|%s' "${prefixes[@]}")
  pattern="^[[:space:]]*#[[:space:]]*include[[:space:]]*[\"<](${pattern:1})"
  local hits
  hits=$(grep -rnE --include='*.h' --include='*.cc' --include='*.cu' --include='*.cuh' "$pattern" "${folders[@]}" || true)
  if [ -n "$hits" ]; then
    echo "layering: ${folders[*]} must not include ${prefixes[*]}:"
    echo "$hits" | sed 's/^/  /'
    broken=1
  fi
}

# The engine is a library: it knows nothing of the programs and services built on it.
forbid engine -- cli/ flags/ server/ quantizer/ loadtest/ proto/ anyprec/v1/ grpc
# The shared flags, the server, the quantizer and the load generator stand beside the
# command line, not on it.
forbid flags server quantizer loadtest proto -- cli/
forbid flags -- server/ quantizer/ loadtest/
# Within the engine: the model and the tokenizer know no device (the model holds the image's
# canonical planes; each device prepares its own layout); CPU operators and the GPU layout
# know the image's plane layout and half floats, not the model; devices know no runtime.
forbid engine/model engine/tokenizer engine/base -- engine/runtime/ engine/device/ engine/cpu/ engine/cuda/
forbid engine/cpu engine/cuda -- engine/model/model.h engine/model/arch.h engine/device/ engine/runtime/
forbid engine/device -- engine/runtime/
# Chat templates are text over JSON: they know no model, tokenizer, device or runtime.
forbid engine/chat -- engine/model/ engine/tokenizer/ engine/device/ engine/runtime/ engine/cpu/ engine/cuda/
# The quantizer's training graph runs on the CPU operators and the model, beneath the
# quantizer's passes: it knows no device, runtime or quantizer pass.
forbid quantizer/grad -- engine/device/ engine/runtime/ engine/cuda/ 'quantizer/[a-z_]*[.]h'
# nvcc compiles the CUDA files: no spdlog or gRPC headers there (their C++20 and protobuf
# needs break it).
forbid engine/cuda -- spdlog/ grpc google/protobuf

if [ "$broken" -ne 0 ]; then
  echo "layering: FAILED"
  exit 1
fi
echo "layering: every include rule holds"
