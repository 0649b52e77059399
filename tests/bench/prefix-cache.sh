#!/usr/bin/env bash
# Prefix caching under load: every request starts with the same system prompt of about
# --system-tokens tokens (TinyStories text, measured with the server's tokenizer), then 10-30 words
# of its own. anyprec-loadtest runs against anyprec-server with the cache on and off (a fresh
# server each), first closed loop with --max-running in flight (throughput), then open loop at
# --load times the cache-off server's closed-loop rate (TTFT when the server is not saturated).
# Each measured run follows one request of the system prompt alone, as a server in service has
# seen it before (the cold first request is not what a 60 s run's p99 should show).
# Prints a markdown table: TTFT p50/p99, requests/s and output tokens/s, and the share of prompt
# tokens the cache served. Not part of CI (it measures).
#
# Usage: tests/bench/prefix-cache.sh --image DIR [--tokenizer FILE] [--build DIR] [--duration S]
#            [--system-tokens 400] [--tokens 32] [--max-running 16] [--load 0.5] [--bits 8]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$repo/build
image=
tokenizer=
duration=30
system_tokens=400
tokens=32
max_running=16
load_fraction=0.5
bits=8
while [ $# -gt 0 ]; do
  case $1 in
    --image) image=$2; shift 2 ;;
    --tokenizer) tokenizer=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --system-tokens) system_tokens=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --max-running) max_running=$2; shift 2 ;;
    --load) load_fraction=$2; shift 2 ;;
    --bits) bits=$2; shift 2 ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
  esac
done
[ -n "$image" ] || { sed -n '2,13p' "$0"; exit 2; }
shared=$repo/../shared
text=$shared/data/tinystories/tinystories_val_head.txt
. "$repo/tests/bench/server-lib.sh"
bench_work prefix-cache
server_flags=(--max-running "$max_running" --default-bits "$bits")
[ -z "$tokenizer" ] || server_flags+=(--tokenizer "$tokenizer")
load=("$build/bin/anyprec-loadtest" --prompts "$text" --prompt-words 10-30 --output-tokens "$tokens" --mix "$bits")

# The system prompt: the text's opening words, as many as make at most --system-tokens tokens
# with this image's tokenizer (counted by the server: the prompt tokens of a 1-token request).
start_server "$build" "$work" "$image" "${server_flags[@]}"
warm_up() {
  "$build/bin/anyprec" client --addr "$grpc" --bits "$bits" --max-new-tokens 1 --prompt "$(cat "$work/system.txt")" > /dev/null 2>&1
}
count_tokens() {
  "$build/bin/anyprec" client --addr "$grpc" --bits "$bits" --max-new-tokens 1 --prompt "$(cat "$1")" 2>&1 >/dev/null |
    grep -o '[0-9]* prompt' | cut -d' ' -f1
}
words=$system_tokens
for _ in $(seq 8); do
  tr -s '\n' ' ' < "$text" | cut -d' ' -f1-"$words" > "$work/system.txt"
  have=$(count_tokens "$work/system.txt")
  [ "$have" -le "$system_tokens" ] && [ "$have" -gt $((system_tokens * 97 / 100)) ] && break
  words=$(( words * system_tokens / have ))
  [ "$have" -le "$system_tokens" ] || words=$((words - 1))
done
stop_server
echo "system prompt: $words words, $have tokens" >&2

# measure MODE: with the cache on, then off, each on a fresh server that has seen the system
# prompt once, the load with the rest of the arguments; reports in $work/MODE-{on,off}.json.
measure() {
  local mode=$1 cache
  shift
  for cache in on off; do
    local flags=("${server_flags[@]}")
    [ "$cache" = on ] || flags+=(--no-prefix-cache)
    start_server "$build" "$work" "$image" "${flags[@]}"
    warm_up
    "${load[@]}" --server "$grpc" --prefix-file "$work/system.txt" --duration "$duration" "$@" --json "$work/$mode-$cache.json" > /dev/null
    stop_server
  done
}
measure closed --concurrency "$max_running"
rate=$(python3 -c "import json,sys; print('%.3f' % (float(sys.argv[2]) * json.load(open(sys.argv[1]))[0]['by_bits']['all']['requests_per_second']))" \
  "$work/closed-off.json" "$load_fraction")
echo "open loop at $rate requests/s ($load_fraction x the cache-off closed-loop rate)" >&2
measure open --rate "$rate"

python3 - "$work" "$have" "$max_running" "$rate" <<'PY'
import json, sys
work, system_tokens, max_running, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
print(f"System prompt of {system_tokens} tokens before every request.\n")
print("| run | prefix cache | sent | ok | req/s | out tok/s | TTFT ms p50 | TTFT ms p99 | TPOT ms p50 | prompt tokens cached |")
print("|---|---|---|---|---|---|---|---|---|---|")
ttft = {}
for mode, name in (("closed", f"closed loop, {max_running} in flight"), ("open", f"open loop, {rate:.2f} req/s")):
    for cache in ("off", "on"):
        a = json.load(open(f"{work}/{mode}-{cache}.json"))[0]["by_bits"]["all"]
        ttft[mode, cache] = a["ttft"]
        share = a["cached_prompt_tokens"] / a["prompt_tokens"] if a["prompt_tokens"] else 0
        print(f"| {name} | {cache} | {a['requests']} | {a['completed']} | {a['requests_per_second']:.2f} | "
              f"{a['output_tokens_per_second']:.1f} | {a['ttft']['p50'] * 1e3:.0f} | {a['ttft']['p99'] * 1e3:.0f} | "
              f"{a['tpot']['p50'] * 1e3:.1f} | {share:.2f} |")
print()
for mode in ("closed", "open"):
    off, on = ttft[mode, "off"], ttft[mode, "on"]
    print(f"- {mode} loop: TTFT p50 {off['p50'] / on['p50']:.2f}x lower with the cache, p99 {off['p99'] / on['p99']:.2f}x")
PY
