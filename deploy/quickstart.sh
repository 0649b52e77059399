#!/usr/bin/env bash
# Sets everything up, builds, and tells a story with a model folder (default: ../shared/models/TinyStories-656K).
# Usage: deploy/quickstart.sh [MODEL_DIR] [PROMPT]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/../shared/models/TinyStories-656K}
prompt=${2:-Once upon a time}
if [ ! -f "$model/config.json" ]; then
  echo "quickstart: no model at '$model'. Pass a Hugging Face Llama-family folder (config.json, model.safetensors, tokenizer.json):" >&2
  echo "  deploy/quickstart.sh /path/to/model [PROMPT]" >&2
  exit 2
fi
"$root/deploy/build.sh"
exec "$root/build/bin/anyprec" generate --model "$model" --prompt "$prompt" --max-new-tokens 200
