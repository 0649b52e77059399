#!/usr/bin/env bash
# Sets everything up, builds, and runs every test: once on the Release build, once more on a
# build with AddressSanitizer and UndefinedBehaviorSanitizer. Tests read ../shared.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/build.sh"
ctest --test-dir "$root/build" --output-on-failure --parallel "$(nproc)" --timeout 900

# The CUDA plugin is built and its loading tested by the Release build; the sanitizers are
# for the host code, so this build leaves CUDA out.
cmake -S "$root" -B "$root/build-sanitize" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DANYPREC_SANITIZE=ON -DANYPREC_CUDA=OFF
cmake --build "$root/build-sanitize" --parallel "$(nproc)"
# The sensitivity quality table is a measurement (Release above prints it); the code it runs is
# under the sanitizers through gradient_test and fisher_test.
ctest --test-dir "$root/build-sanitize" --output-on-failure --parallel "$(nproc)" --timeout 900 --exclude-regex '^SensitivityQuality\.'

