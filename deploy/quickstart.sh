#!/usr/bin/env bash
# Sets everything up, builds, quantizes a model into an anyprec image (once), and runs
# anyprec-server in the foreground on 127.0.0.1:50051.
# Usage: deploy/quickstart.sh [MODEL_DIR]   (default: ../shared/models/TinyStories-656K)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/../shared/models/TinyStories-656K}
if [ ! -f "$model/config.json" ]; then
  echo "quickstart: no model at '$model'. Pass a Hugging Face Llama-family folder (config.json, model.safetensors, tokenizer.json):" >&2
  echo "  deploy/quickstart.sh /path/to/model" >&2
  exit 2
fi
"$root/deploy/build.sh"
image="$root/build/images/$(basename "$model")-anyprec"
if [ ! -f "$image/config.json" ]; then
  calib=()
  [ -f "$root/../shared/data/wikitext-2-raw/wiki.valid.raw" ] || calib=(--sensitivity none)
  "$root/build/bin/anyprec-quantize" --model "$model" --out "$image" "${calib[@]}"
fi
echo
echo "In another terminal:"
echo "  $root/build/bin/anyprec client --addr 127.0.0.1:50051 --bits 3 --prompt 'Once upon a time'"
echo
exec "$root/build/bin/anyprec-server" --model "$image" --listen 127.0.0.1:50051
