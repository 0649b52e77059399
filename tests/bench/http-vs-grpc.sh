#!/usr/bin/env bash
# The OpenAI HTTP front against gRPC on one anyprec-server: anyprec-loadtest in a closed loop at
# 1 and 16 clients, greedy requests of T tokens (EOS ignored) over widths 3, 4 and 8, the two
# fronts alternating R times on the same server. Prints a markdown table of the median
# completion tokens/s, TTFT and ITL p50 per front and concurrency, the wall time per token, and
# the server's own CPU time per token (the clients share the machine, so wall time carries their
# cost too). Not part of CI (it measures).
#
# Usage: tests/bench/http-vs-grpc.sh [--image DIR] [--build DIR] [--requests N] [--tokens T] [--repetitions R]
#   --image DIR   an anyprec image (default: TinyStories-656K, quantized into /tmp/anyprec-http-vs-grpc)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$repo/build
image=
requests=64
tokens=128
repetitions=3
while [ $# -gt 0 ]; do
  case $1 in
    --image) image=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --repetitions) repetitions=$2; shift 2 ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
  esac
done
shared=$repo/../shared
[ -d "$shared/models/TinyStories-656K" ] || { echo "http-vs-grpc: $shared/models is missing" >&2; exit 1; }
. "$repo/tests/bench/server-lib.sh"
bench_work http-vs-grpc
if [ -z "$image" ]; then
  image=$work/image
  "$build/bin/anyprec-quantize" --model "$shared/models/TinyStories-656K" --out "$image" --sensitivity none > /dev/null 2>&1
fi

start_server "$build" "$work" "$image" --max-running 16

# The server's CPU time so far (user + system), in clock ticks.
server_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
run() {  # FRONT CLIENTS REPETITION
  local target=(--server "$grpc")
  [ "$1" = http ] && target=(--http "$http")
  local before
  before=$(server_ticks)
  "$build/bin/anyprec-loadtest" "${target[@]}" --prompts "$shared/data/tinystories/tinystories_val_head.txt" \
    --concurrency "$2" --requests "$requests" --output-tokens "$tokens" --prompt-words 20 --mix 3:1,4:1,8:1 \
    --json "$work/$1-$2-$3.json" > /dev/null
  echo $(( $(server_ticks) - before )) > "$work/$1-$2-$3.ticks"
}
for clients in 1 16; do
  for r in $(seq "$repetitions"); do
    run grpc "$clients" "$r"
    run http "$clients" "$r"
  done
done

python3 - "$work" "$repetitions" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
work, reps, tick = sys.argv[1], int(sys.argv[2]), 1 / int(sys.argv[3])
def load(front, clients):
    runs = []
    for r in range(1, reps + 1):
        report = json.load(open(f"{work}/{front}-{clients}-{r}.json"))[0]["by_bits"]["all"]
        report["server_cpu"] = int(open(f"{work}/{front}-{clients}-{r}.ticks").read()) * tick
        runs.append(report)
    med = lambda f: statistics.median(f(x) for x in runs)
    assert all(x["completed"] == x["requests"] for x in runs), "a request failed"
    return (med(lambda x: x["output_tokens_per_second"]), med(lambda x: x["ttft"]["p50"]), med(lambda x: x["itl"]["p50"]),
            med(lambda x: x["server_cpu"] / x["output_tokens"]))
print("| clients | front | tokens/s | TTFT p50 (ms) | ITL p50 (ms) | wall µs per token | server CPU µs per token |")
print("|---|---|---|---|---|---|---|")
for clients in (1, 16):
    for name, (tps, ttft, itl, cpu) in (("gRPC", load("grpc", clients)), ("HTTP", load("http", clients))):
        print(f"| {clients} | {name} | {tps:.0f} | {ttft * 1e3:.2f} | {itl * 1e3:.3f} | {1e6 / tps:.1f} | {cpu * 1e6:.1f} |")
PY
