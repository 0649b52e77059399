#!/usr/bin/env bash
# Sets everything up, builds, and runs every test: once on the Release build, once more on a
# build with AddressSanitizer and UndefinedBehaviorSanitizer. Tests read ../shared.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/build.sh"
ctest --test-dir "$root/build" --output-on-failure --parallel "$(nproc)" --timeout 900

cmake -S "$root" -B "$root/build-sanitize" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DANYPREC_SANITIZE=ON
cmake --build "$root/build-sanitize" --parallel "$(nproc)"
ctest --test-dir "$root/build-sanitize" --output-on-failure --parallel "$(nproc)" --timeout 900
