#!/usr/bin/env bash
# Self-speculative decoding through anyprec-server at 1 and 4 clients: anyprec-loadtest in a
# closed loop, every request greedy at the target width (EOS ignored), plain and then
# speculative at each draft width and lookahead, on one server (--max-running 4). Prints a
# markdown table of completion tokens/s and the acceptance rate. Not part of CI (it measures).
#
# Usage: tests/bench/speculative-server.sh --image DIR [--build DIR] [--target 8] [--drafts "3 4"]
#            [--lookaheads "2 4 8"] [--requests N] [--tokens T]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$repo/build
image=
target=8
drafts="3 4"
lookaheads="2 4 8"
requests=16
tokens=64
while [ $# -gt 0 ]; do
  case $1 in
    --image) image=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --drafts) drafts=$2; shift 2 ;;
    --lookaheads) lookaheads=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done
[ -n "$image" ] || { sed -n '2,9p' "$0"; exit 2; }
shared=$repo/../shared
. "$repo/tests/bench/server-lib.sh"
bench_work speculative-server
start_server "$build" "$work" "$image" --max-running 4

run() {  # NAME CLIENTS [loadtest options...]
  local name=$1 clients=$2
  shift 2
  "$build/bin/anyprec-loadtest" --server "$grpc" --prompts "$shared/data/tinystories/tinystories_val_head.txt" \
    --concurrency "$clients" --requests "$requests" --output-tokens "$tokens" --prompt-words 20 --mix "$target" \
    --json "$work/$name-$clients.json" "$@" > /dev/null
}
for clients in 1 4; do
  run plain "$clients"
  for draft in $drafts; do
    for lookahead in $lookaheads; do
      run "d$draft-k$lookahead" "$clients" --speculative-fraction 1 --speculative-draft-bits "$draft" --speculative-lookahead "$lookahead"
      run plain-again-d$draft-k$lookahead "$clients"
    done
  done
done

python3 - "$work" "$drafts" "$lookaheads" <<'PY'
import json, sys
work, drafts, lookaheads = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def load(name, clients):
    r = json.load(open(f"{work}/{name}-{clients}.json"))[0]["by_bits"]["all"]
    assert r["completed"] == r["requests"], f"{name}: a request failed"
    return r
print("| clients | draft | lookahead | acceptance | tok/s | plain tok/s (before, after) | speedup |")
print("|---|---|---|---|---|---|---|")
for clients in (1, 4):
    previous = load("plain", clients)["output_tokens_per_second"]
    for d in drafts:
        for k in lookaheads:
            r = load(f"d{d}-k{k}", clients)
            after = load(f"plain-again-d{d}-k{k}", clients)["output_tokens_per_second"]
            base = (previous + after) / 2
            acceptance = r["accepted_tokens"] / r["drafted_tokens"] if r["drafted_tokens"] else 0
            print(f"| {clients} | {d} | {k} | {acceptance:.2f} | {r['output_tokens_per_second']:.1f} | {previous:.1f}, {after:.1f} | {r['output_tokens_per_second'] / base:.2f} |")
            previous = after
PY
