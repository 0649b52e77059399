#!/bin/sh
# The runtime stage of both images: installs the packages the build stage listed, and makes the
# non-root user the server runs as and the folder its image volume mounts on.
set -eu
apt-get update -qq
xargs apt-get install -y --no-install-recommends < /opt/anyprec/runtime-packages.txt
rm -rf /var/lib/apt/lists/*
useradd --system --uid 10001 --user-group --home-dir /var/lib/anyprec --create-home anyprec
mkdir -p /models/out
chown -R anyprec:anyprec /models
