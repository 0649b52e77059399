#!/bin/sh
# The images' HEALTHCHECK: healthy while the server's gRPC health service answers SERVING, on
# the address the entrypoint made it listen on.
listen=${ANYPREC_LISTEN:-0.0.0.0:50051}
host=${listen%:*}
case "$host" in
  0.0.0.0 | "[::]" | "") host=127.0.0.1 ;;
esac
exec anyprec client --health --addr "$host:${listen##*:}" --timeout 4
