#!/usr/bin/env bash
# anyprec against llama.cpp on this CPU, side by side, on one set of random Llama-2-7B-shaped
# weights: decode and prefill tokens/s of anyprec at every width 3..8 (once per int8 kernel
# the CPU runs, and the exact one) and of llama.cpp at Q3_K_S, Q4_0, Q4_K_M and Q8_0, the two
# engines alternating, with the machine's read bandwidth measured in the same run. Prints a
# markdown table. Not part of CI: it builds llama.cpp (~5 minutes on 2 cores) and writes
# gigabytes. See ../shared/anchors/README.md for the method.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: tests/bench/vs-llamacpp.sh [options]

  --work DIR       where llama.cpp is built and the models are written (default /tmp/anyprec-vs-llamacpp);
                   an existing llama.cpp build there is reused
  --layers N       decoder layers of the Llama-2-7B shape (default 8)
  --full           all 32 layers. anyprec-quantize widens a BF16 folder to fp32 in memory, so this needs
                   about 27 GB of free RAM (and ~55 GB of disk); the script refuses to start without them
  --quick          --layers 1 --repetitions 1: a check that the pipeline works, not a measurement
  --kernels LIST   anyprec kernels to run, comma-separated (avx512-vbmi, avx2-vnni, avx2, exact;
                   default: every one this CPU supports)
  --threads N      threads for both engines (default 2)
  --repetitions N  timed repetitions of each measurement; medians are reported (default 3)
  --build DIR      anyprec's build folder (default: build/ in this repository)
  --keep           keep the quantized GGUFs and the anyprec image (reused by the next run with the
                   same --work and --layers); the Hugging Face folder and the F16 GGUF always go
  -h, --help       this text

Needs Debian's python3-numpy, python3-yaml and python3-sentencepiece (for llama.cpp's gguf-py),
ninja and cmake, and anyprec's anyprec-synthesize, anyprec-quantize and anyprec-bench-decode.
EOF
}

die() {
  echo "vs-llamacpp: error: $*" >&2
  exit 1
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=/tmp/anyprec-vs-llamacpp
layers=8
repetitions=3
kernels=
threads=2
build="$repo/build"
keep=0
while (($#)); do
  case "$1" in
    --work|--layers|--kernels|--threads|--repetitions|--build) (($# >= 2)) || die "$1 needs a value" ;;
  esac
  case "$1" in
    --work) work=$2; shift ;;
    --layers) layers=$2; shift ;;
    --full) layers=32 ;;
    --quick) layers=1; repetitions=1 ;;
    --kernels) kernels=$2; shift ;;
    --threads) threads=$2; shift ;;
    --repetitions) repetitions=$2; shift ;;
    --build) build=$2; shift ;;
    --keep) keep=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  shift
done
[[ $layers =~ ^[1-9][0-9]*$ && $layers -le 32 ]] || die "--layers must be 1..32, not '$layers'"
[[ $threads =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive number, not '$threads'"
[[ $repetitions =~ ^[1-9][0-9]*$ ]] || die "--repetitions must be a positive number, not '$repetitions'"

tarball="$repo/../shared/anchors/llama.cpp-c392e50.tar.xz"
config="$repo/tests/bench/llama-2-7b.config.json"
python=/usr/bin/python3  # Debian's: gguf-py's numpy, yaml and sentencepiece come from apt, not pip
for tool in anyprec-synthesize anyprec-quantize anyprec-bench-decode; do
  [[ -x "$build/bin/$tool" ]] ||
    die "$build/bin/$tool is missing; build it: cmake --build $build --target anyprec-synthesize anyprec-quantize anyprec-bench-decode -j2"
done
[[ -f $tarball ]] || die "$tarball is missing"
for t in cmake ninja; do
  command -v "$t" >/dev/null || die "llama.cpp's build needs cmake and ninja (apt-get install cmake ninja-build)"
done
"$python" -c 'import numpy, yaml, sentencepiece' 2>/dev/null ||
  die "$python lacks numpy, yaml or sentencepiece: apt-get install python3-numpy python3-yaml python3-sentencepiece"

supported=$("$build/bin/anyprec-bench-decode" --list-kernels | paste -sd, -)
kernels=${kernels:-$supported}
for k in ${kernels//,/ }; do
  [[ ",$supported," == *",$k,"* ]] || die "--kernels: '$k' is not one this CPU runs ($supported)"
done

# Seconds since the step began, for the timing lines.
step_start=0
step() {
  step_start=$(date +%s)
  echo "== $*" >&2
}
step_done() { echo "   took $(($(date +%s) - step_start)) s" >&2; }

mkdir -p "$work"
work=$(cd "$work" && pwd)
models="$work/llama-2-7b-L$layers"
hf="$models/hf"
f16="$models/f16.gguf"
image="$models/anyprec"
types=(Q3_K_S Q4_0 Q4_K_M Q8_0)
results="$work/results-L$layers-$(date +%Y%m%d-%H%M%S)"

# The Hugging Face folder and the F16 GGUF are the big intermediates (2 bytes a weight each):
# they go whatever happens. The quantized models stay only with --keep.
cleanup() {
  rm -rf "$hf" "$hf.tmp" "$f16" "$f16.tmp" "$image.tmp"
  rm -f "$models"/*.gguf.tmp
  if ((!keep)); then
    rm -rf "$image"
    for t in "${types[@]}"; do rm -f "$models/$t.gguf"; done
    rmdir "$models" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# --- llama.cpp, built as ../shared/anchors/README.md says -------------------------------------
llama="$work/llama.cpp-c392e50"
if [[ ! -x $llama/build/bin/llama-bench || ! -x $llama/build/bin/llama-quantize ]]; then
  step "building llama.cpp in $llama"
  [[ -d $llama ]] || tar xJf "$tarball" -C "$work"
  cmake -S "$llama" -B "$llama/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=OFF -DLLAMA_CURL=OFF \
    -DGGML_NATIVE=ON -DGGML_CCACHE=OFF >"$work/llama-cmake.log" 2>&1 || die "llama.cpp's cmake failed: see $work/llama-cmake.log"
  ninja -C "$llama/build" -j2 llama-bench llama-quantize >"$work/llama-build.log" 2>&1 ||
    die "llama.cpp's build failed: see $work/llama-build.log"
  step_done
else
  echo "== reusing the llama.cpp build in $llama" >&2
fi

# --- one set of weights for both engines ----------------------------------------------------------
have_models=1
[[ -d $image ]] || have_models=0
for t in "${types[@]}"; do [[ -f $models/$t.gguf ]] || have_models=0; done
if ((have_models)); then
  echo "== reusing the models in $models (kept by an earlier --keep run)" >&2
else
  # anyprec-quantize holds every weight widened to fp32: 4 bytes a parameter, plus a margin.
  params=$("$python" - "$config" "$layers" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
h, f, v, n = c["hidden_size"], c["intermediate_size"], c["vocab_size"], int(sys.argv[2])
kv = h * c["num_key_value_heads"] // c["num_attention_heads"]
print(2 * v * h + n * (2 * h * h + 2 * h * kv + 3 * h * f))
EOF
)
  need_ram=$((params * 4 * 11 / 10))
  free_ram=$(($(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) * 1024))
  ((free_ram >= need_ram)) ||
    die "$layers layers: anyprec-quantize needs ~$((need_ram >> 30)) GiB of RAM (the weights widened to fp32), only $((free_ram >> 30)) GiB is available; use fewer --layers"
  # Peak disk, in bytes a parameter: the BF16 folder and the F16 GGUF (2 each), the four GGUFs
  # (~2.7 together) and the image (~1 for the planes, less for the int8 head and embedding).
  need_disk=$((params * 8))
  free_disk=$(($(df --output=avail -k "$work" | tail -1) * 1024))
  ((free_disk >= need_disk)) ||
    die "$layers layers need ~$((need_disk >> 30)) GiB of disk in $work, only $((free_disk >> 30)) GiB is free"

  rm -rf "$models"
  mkdir -p "$models"
  step "anyprec-synthesize: random BF16 weights, Llama-2-7B shape, $layers layers"
  "$build/bin/anyprec-synthesize" --config "$config" --layers "$layers" --out "$hf.tmp" 2>"$work/synthesize.log" ||
    die "anyprec-synthesize failed: see $work/synthesize.log"
  mv "$hf.tmp" "$hf"
  step_done

  step "hf_to_gguf_f16.py: the same tensors as an F16 GGUF"
  PYTHONPATH="$llama/gguf-py" "$python" "$repo/tests/bench/hf_to_gguf_f16.py" "$hf" "$f16.tmp" \
    --vocab "$llama/models/ggml-vocab-llama-spm.gguf" --name "llama-2-7b-L$layers" >"$work/to-gguf.log" 2>&1 || die "the F16 GGUF failed: see $work/to-gguf.log"
  mv "$f16.tmp" "$f16"
  step_done

  for t in "${types[@]}"; do
    step "llama-quantize $t"
    "$llama/build/bin/llama-quantize" "$f16" "$models/$t.gguf.tmp" "$t" "$threads" >"$work/quantize-$t.log" 2>&1 ||
      die "llama-quantize $t failed: see $work/quantize-$t.log"
    mv "$models/$t.gguf.tmp" "$models/$t.gguf"
    step_done
  done
  rm -f "$f16"

  # The head and the embedding as int8 rows, as llama.cpp quantizes its output layer (Q6_K or
  # Q8_0): random weights have no perplexity for --dense-dtype auto to measure.
  step "anyprec-quantize: widths 3..8, no sensitivity, Lloyd seed, int8 head and embedding"
  "$build/bin/anyprec-quantize" --model "$hf" --out "$image.tmp" --model-name "llama-2-7b-L$layers" --sensitivity none \
    --seed-method lloyd --dense-dtype int8 --threads "$threads" >"$work/anyprec-quantize.log" 2>&1 ||
    die "anyprec-quantize failed: see $work/anyprec-quantize.log"
  mv "$image.tmp" "$image"
  step_done
  rm -rf "$hf"
fi

# --- measurements: the read bandwidth, then the engines in turn, width by width ----------------
# Percent of all CPU time spent over 2 s, while this script only sleeps: other tenants' share.
# With as many threads as cores, any of it stalls both engines' barriers and skews the numbers.
others_busy() {
  local a b
  read -ra a < <(grep '^cpu ' /proc/stat)
  sleep 2
  read -ra b < <(grep '^cpu ' /proc/stat)
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  local idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $((total > 0 ? 100 * (total - idle) / total : 0))
}
busy_before=$(others_busy)
((busy_before < 10)) ||
  echo "vs-llamacpp: warning: other processes keep the CPUs ${busy_before}% busy; the numbers will be low and noisy" >&2
mkdir -p "$results"
# This machine's memory bandwidth drifts by a third within minutes (a VM's neighbours), so the
# plain read is timed before each width's round and after the last; the table gives its median.
read_bandwidth() {
  step "plain $threads-thread read of a 2 GiB buffer"
  "$build/bin/anyprec-bench-decode" --read-gib 2 --threads "$threads" >>"$results/read.jsonl"
  step_done
}
declare -A matched=([3]="Q3_K_S" [4]="Q4_0 Q4_K_M" [8]="Q8_0")
for bits in 3 4 5 6 7 8; do
  read_bandwidth
  for k in ${kernels//,/ }; do
    step "anyprec $bits bits, kernel $k"
    ANYPREC_CPU_KERNEL=$k "$build/bin/anyprec-bench-decode" --image "$image" --bits "$bits" --threads "$threads" \
      --repetitions "$repetitions" >>"$results/anyprec-$k.jsonl" || die "anyprec-bench-decode failed ($bits bits, kernel $k)"
    step_done
  done
  for t in ${matched[$bits]:-}; do
    step "llama.cpp $t"
    "$llama/build/bin/llama-bench" -m "$models/$t.gguf" -p 64 -n 32 -r "$repetitions" -t "$threads" -o json \
      >"$results/llamacpp-$t.json" 2>"$results/llamacpp-$t.log" || die "llama-bench $t failed: see $results/llamacpp-$t.log"
    stat -c %s "$models/$t.gguf" >"$results/llamacpp-$t.bytes"
    step_done
  done
done

read_bandwidth
busy_after=$(others_busy)

# --- the table -------------------------------------------------------------------------------------
flags=$(grep -m1 '^flags' /proc/cpuinfo)
isa=
for f in avx2 avx512f avx512_vnni avx512vbmi avx_vnni; do
  if [[ " ${flags#*:} " == *" $f "* ]]; then isa+="$f yes, "; else isa+="$f no, "; fi
done
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
"$python" "$repo/tests/bench/vs_llamacpp_table.py" "$results" --cpu "$cpu" --isa "${isa%, }" --threads "$threads" \
  --kernels "$kernels" --others-busy "$busy_before% before, $busy_after% after" --model "random weights, Llama-2-7B shape, $layers of 32 layers" | tee "$results/table.md"
echo "results: $results" >&2
