#!/bin/sh
# Prints the packages that hold the shared libraries the given binaries and plugins load, one per
# line: the runtime stage installs exactly these, on the same distribution as the build stage.
set -eu
for binary in "$@"; do
  ldd "$binary" | awk '/=> \//{print $3}'
done | sort -u | while read -r library; do
  dpkg -S "$(readlink -f "$library")" 2> /dev/null || dpkg -S "$library" 2> /dev/null ||
    echo "runtime-packages.sh: no package holds $library; the runtime base image must have it" >&2
done | cut -d: -f1 | sort -u
