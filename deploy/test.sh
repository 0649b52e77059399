#!/usr/bin/env bash
# Sets everything up, builds, and runs every test. Tests read ../shared (models, texts, tokenizers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/build.sh"
cd "$root/build"
ctest --output-on-failure --parallel "$(nproc)" --timeout 900
