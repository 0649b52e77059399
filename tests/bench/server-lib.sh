# Shared by the benchmark scripts that load a running anyprec-server: source it, call
# `bench_work NAME` for a scratch folder, then `start_server BUILD WORK IMAGE [server flags...]`.
# It starts the server on free loopback ports (gRPC, metrics, HTTP), waits up to 2 minutes for
# it to listen, and sets `server_pid`, `grpc` and `http` (HOST:PORT). `stop_server` ends it
# (bench_work's exit trap does too).

# Sets `work` to a new scratch folder, /tmp/anyprec-NAME.XXXXXX. When the script exits, any
# server still running is stopped and the folder removed.
bench_work() {
  work=$(mktemp -d "/tmp/anyprec-$1.XXXXXX")
  trap 'stop_server; rm -rf "$work"' EXIT
}

server_pid=
start_server() {
  local build=$1 work=$2 image=$3
  shift 3
  "$build/bin/anyprec-server" --model "$image" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 "$@" \
    > "$work/server.out" 2> "$work/server.err" &
  server_pid=$!
  for _ in $(seq 1200); do grep -q 'listening on' "$work/server.out" && break; sleep 0.1; done
  grpc=$(grep -o 'listening on [0-9.:]*' "$work/server.out" | cut -d' ' -f3)
  http=$(grep -o 'http on [0-9.:]*' "$work/server.out" | cut -d' ' -f3)
  if [ -z "$grpc" ] || [ -z "$http" ]; then
    cat "$work/server.err" >&2
    return 1
  fi
}

stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  fi
  server_pid=
}
