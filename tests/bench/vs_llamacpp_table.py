#!/usr/bin/python3
"""The markdown report of tests/bench/vs-llamacpp.sh, from the results folder it fills:

  read.jsonl            anyprec-bench-decode --read-gib, run several times: {"read_gb_per_s": ...}
  anyprec-KERNEL.jsonl  anyprec-bench-decode per width: a {"kernel": summary} line, then
                        {"bits", "bytes_per_token", "decode_tok_per_s", ...}
  llamacpp-TYPE.json    llama-bench -o json: one entry for pp (n_gen 0), one for tg (n_prompt 0)
  llamacpp-TYPE.bytes   the GGUF file's size

One table per anyprec kernel, in --kernels order; llama.cpp's numbers repeat in each. Speeds are medians of the
repetitions (llama-bench's samples_ts, too, so both engines are summarized alike).
"""

import argparse
import json
import statistics
from pathlib import Path

# The llama.cpp types set beside each anyprec width, by bits per weight (see
# ../shared/anchors/README.md): 3 ~ Q3_K_S (3.44), 4 ~ Q4_0 (4.5) and Q4_K_M (4.8), 8 ~ Q8_0 (8.5).
MATCHED_TYPES = {3: ["Q3_K_S"], 4: ["Q4_0", "Q4_K_M"], 8: ["Q8_0"]}


def read_json_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def llamacpp_speeds(results, type_name):
    """(decode tok/s, pp tok/s) of one llama-bench run, or None when it was not run."""
    path = results / f"llamacpp-{type_name}.json"
    if not path.exists():
        return None
    speeds = {}
    for test in json.loads(path.read_text()):
        kind = "tg" if test["n_gen"] > 0 else "pp"
        speeds[kind] = statistics.median(test["samples_ts"])
    return speeds["tg"], speeds["pp"]


def ratio(a, b):
    return f"{a / b:.2f}" if b else "—"


def main():
    parser = argparse.ArgumentParser(description="Markdown table of a vs-llamacpp.sh results folder")
    parser.add_argument("results", type=Path)
    parser.add_argument("--cpu", required=True, help="CPU model name")
    parser.add_argument("--isa", required=True, help="the ISA flags that matter and whether the CPU has them")
    parser.add_argument("--model", required=True, help="what the model is, for the heading")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--others-busy", required=True, help="CPU time other processes took around the measurements")
    parser.add_argument("--kernels", required=True, help="the anyprec kernels run, comma-separated, in table order")
    args = parser.parse_args()
    results = args.results

    reads = [line["read_gb_per_s"] for line in read_json_lines(results / "read.jsonl") if "read_gb_per_s" in line]
    read_gbps = statistics.median(reads)
    print(f"## anyprec vs llama.cpp c392e50: {args.model}, {args.threads} threads\n")
    print(f"- CPU: {args.cpu}")
    print(f"- ISA: {args.isa}")
    print(f"- CPU time taken by other processes just before and after measuring: {args.others_busy} "
          "(more than a few percent makes the numbers low and noisy)")
    print(f"- plain {args.threads}-thread read of a 2 GiB buffer: {read_gbps:.1f} GB/s, the median of {len(reads)} "
          f"spread through the run ({min(reads):.1f} to {max(reads):.1f})")
    print("- decode: anyprec at batch 1, 32 tokens after a 64-token prompt; llama.cpp tg32 (32 tokens from an empty "
          "context). pp64: a 64-token prompt. batch-16: 16 sequences, one token each per step, from empty caches, "
          "summed. Ratios are anyprec / llama.cpp.")
    print("- bandwidth %: anyprec's bytes read per token (Model::BytesReadPerToken) × its batch-1 decode tok/s, "
          "against the plain read's median.")

    for kernel in args.kernels.split(","):
        lines = read_json_lines(results / f"anyprec-{kernel}.jsonl")
        summary = next(line["kernel"] for line in lines if "kernel" in line)
        by_bits = {line["bits"]: line for line in lines if "bits" in line}
        print(f"\n### anyprec kernel: {summary}\n")
        print("| width | anyprec decode tok/s | llama.cpp type (GGUF bytes) | llama.cpp decode tok/s | ratio "
              "| anyprec pp64 tok/s | llama.cpp pp64 tok/s | ratio | anyprec batch-16 decode tok/s "
              "| bytes/token × tok/s, % of read bandwidth |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for bits, a in sorted(by_bits.items()):
            bandwidth = a["bytes_per_token"] * a["decode_tok_per_s"] / 1e9
            anyprec_cells = (f"{a['decode_tok_per_s']:.2f}", f"{a['prefill_tok_per_s']:.2f}",
                             f"{a['batch_decode_tok_per_s']:.2f}",
                             f"{a['bytes_per_token'] / 1e6:.1f} MB × {a['decode_tok_per_s']:.2f} = "
                             f"{bandwidth:.2f} GB/s, {100 * bandwidth / read_gbps:.0f}%")
            rows = [(t, llamacpp_speeds(results, t)) for t in MATCHED_TYPES.get(bits, [])]
            rows = [(t, s) for t, s in rows if s is not None] or [(None, None)]
            for type_name, speeds in rows:
                decode, prefill, batch16, bw = anyprec_cells
                if speeds is None:
                    llama = ("—", "—", "—", "—", "—")
                else:
                    size = int((results / f"llamacpp-{type_name}.bytes").read_text())
                    llama = (f"{type_name} ({size:,})", f"{speeds[0]:.2f}", ratio(a["decode_tok_per_s"], speeds[0]),
                             f"{speeds[1]:.2f}", ratio(a["prefill_tok_per_s"], speeds[1]))
                print(f"| {bits} | {decode} | {llama[0]} | {llama[1]} | {llama[2]} | {prefill} | {llama[3]} | {llama[4]} "
                      f"| {batch16} | {bw} |")


if __name__ == "__main__":
    main()
