#!/usr/bin/env bash
# Adaptive width under load: anyprec-loadtest --sweep against anyprec-server for fixed 8-bit,
# fixed 3-bit and adaptive 3..8 requests, at offered rates from 0.5x to 3x the saturation rate of
# fixed 8-bit serving, which it measures first (closed loop, as many in flight as --max-running).
# The SLOs (TTFT 2 s, TPOT 150 ms by default) are both the server's objectives for adaptive
# requests and the report's goodput bound. Each mode runs on a fresh server. Prints a markdown
# table of goodput and mean width served and draws both against the offered rate. Not part of CI
# (it measures).
#
# Usage: tests/bench/adaptive-sweep.sh --image DIR [--tokenizer FILE] [--build DIR] [--duration S]
#            [--multiples "0.5 1 1.5 2 3"] [--ttft-ms 2000] [--tpot-ms 150] [--tokens 32] [--max-running 16]
#            [--plot PNG]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$repo/build
image=
tokenizer=
duration=30
multiples="0.5 1 1.5 2 3"
ttft_ms=2000
tpot_ms=150
tokens=32
max_running=16
plot=
while [ $# -gt 0 ]; do
  case $1 in
    --image) image=$2; shift 2 ;;
    --tokenizer) tokenizer=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --multiples) multiples=$2; shift 2 ;;
    --ttft-ms) ttft_ms=$2; shift 2 ;;
    --tpot-ms) tpot_ms=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --max-running) max_running=$2; shift 2 ;;
    --plot) plot=$2; shift 2 ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
  esac
done
[ -n "$image" ] || { sed -n '2,13p' "$0"; exit 2; }
shared=$repo/../shared
. "$repo/tests/bench/server-lib.sh"
bench_work adaptive-sweep
server_flags=(--max-running "$max_running" --slo-ttft-ms "$ttft_ms" --slo-tpot-ms "$tpot_ms")
[ -z "$tokenizer" ] || server_flags+=(--tokenizer "$tokenizer")
load=("$build/bin/anyprec-loadtest" --prompts "$shared/data/tinystories/tinystories_val_head.txt" --prompt-words 20-60
      --output-tokens "$tokens" --slo-ttft-ms "$ttft_ms" --slo-tpot-ms "$tpot_ms")

# Saturation: fixed 8 bits, every slot busy.
start_server "$build" "$work" "$image" "${server_flags[@]}"
"${load[@]}" --server "$grpc" --concurrency "$max_running" --duration "$duration" --mix 8 --json "$work/saturation.json" > /dev/null
stop_server
saturation=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['by_bits']['all']['requests_per_second'])" "$work/saturation.json")
rates=$(python3 -c "import sys; print(','.join('%.3f' % (float(m) * float(sys.argv[1])) for m in sys.argv[2].split()))" "$saturation" "$multiples")
echo "saturation of fixed 8-bit serving: $saturation requests/s; offered rates $rates" >&2

for mode in 8 3 3-8; do
  start_server "$build" "$work" "$image" "${server_flags[@]}"
  "${load[@]}" --server "$grpc" --sweep "$rates" --duration "$duration" --mix "$mode" --json "$work/$mode.json" > "$work/$mode.txt"
  curl -s "http://$(grep -o 'metrics on [0-9.:]*' "$work/server.out" | cut -d' ' -f3)/metrics" | grep '^anyprec_width_changes_total' \
    > "$work/$mode.changes" || true
  stop_server
done

python3 - "$work" "$saturation" "$multiples" "$plot" <<'PY'
import json, subprocess, sys
work, saturation, multiples, plot = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
modes = {"8": "fixed 8-bit", "3": "fixed 3-bit", "3-8": "adaptive 3..8"}
runs = {m: json.load(open(f"{work}/{m}.json")) for m in modes}
print(f"Saturation of fixed 8-bit serving: {saturation:.2f} requests/s.\n")
print("| × saturation | offered req/s | " + " | ".join(f"{name} goodput req/s | {name} mean bits" for name in modes.values()) + " |")
print("|---|---|" + "---|---|" * len(modes))
rows = []
for i, multiple in enumerate(multiples):
    offered = runs["8"][i]["offered_rate"]
    cells = []
    row = [float(multiple), offered]
    for m in modes:
        a = runs[m][i]["by_bits"]["all"]
        cells.append(f"{a['goodput']:.2f} | {a['mean_bits']:.2f}")
        row += [a["goodput"], a["mean_bits"]]
    rows.append(row)
    print(f"| {multiple} | {offered:.2f} | " + " | ".join(cells) + " |")
print()
for m, name in modes.items():
    outcomes = [";".join(f"{k} {v}" for k, v in r["by_bits"]["all"]["outcomes"].items()) for r in runs[m]]
    print(f"- {name}: outcomes per rate: " + " / ".join(outcomes))
    changes = open(f"{work}/{m}.changes").read().split("\n")
    print(f"  width changes: " + ", ".join(c for c in changes if c) if any(changes) else "  width changes: none")
if plot:
    with open(f"{plot}.dat", "w") as out:
        out.write("# multiple offered " + " ".join(f"goodput_{m} bits_{m}" for m in modes) + "\n")
        for row in rows:
            out.write(" ".join(f"{v:.4f}" for v in row) + "\n")
    script = f"""
set terminal pngcairo size 1200,480 font ",11"
set output "{plot}"
set multiplot layout 1,2
set key right top
set xlabel "offered rate / fixed 8-bit saturation rate"
set ylabel "goodput (requests/s within TTFT and TPOT SLOs)"
plot "{plot}.dat" using 1:3 with linespoints title "fixed 8-bit", "" using 1:5 with linespoints title "fixed 3-bit", "" using 1:7 with linespoints title "adaptive 3..8"
set ylabel "mean width served (bits)"
set key right center
set yrange [2.5:8.5]
plot "{plot}.dat" using 1:4 with linespoints title "fixed 8-bit", "" using 1:6 with linespoints title "fixed 3-bit", "" using 1:8 with linespoints title "adaptive 3..8"
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
PY
