#!/usr/bin/python3
"""Writes a Llama-family Hugging Face folder (config.json + model.safetensors, as
anyprec-synthesize makes) as an F16 GGUF that llama.cpp loads, so that both engines run the
same weights (tests/bench/vs-llamacpp.sh).

What llama.cpp's convert_hf_to_gguf.py does for LlamaForCausalLM, without its torch
dependency: llama.cpp's tensor names, q and k rows permuted for its RoPE layout, norms in F32
and the rest in F16, the llama.* hyperparameters, and the tokenizer.* metadata copied from a
vocabulary GGUF (llama.cpp's models/ggml-vocab-llama-spm.gguf has the 32000-token Llama SPM
one). Tensors are written one at a time, so memory stays at about one tensor.

Run with Debian's python3 and PYTHONPATH=<llama.cpp>/gguf-py.
"""

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

import gguf

_SAFETENSORS_DTYPES = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}


def read_safetensors_header(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return 8 + length, header


def load_tensor(path, data_start, entry):
    """The tensor as float32, read through a memory map."""
    dtype = entry["dtype"]
    if dtype not in _SAFETENSORS_DTYPES:
        sys.exit(f"{path}: dtype {dtype} is not handled (only {', '.join(_SAFETENSORS_DTYPES)})")
    begin, end = entry["data_offsets"]
    raw = np.memmap(path, dtype=_SAFETENSORS_DTYPES[dtype], mode="r", offset=data_start + begin,
                    shape=((end - begin) // np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize,))
    if dtype == "BF16":
        values = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        values = raw.astype(np.float32)
    return values.reshape(entry["shape"])


def permute_rope_rows(weights, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute: Hugging Face's q and k rows rotate the
    two halves of each head; llama.cpp's RoPE rotates adjacent pairs."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def field_value(field):
    """A GGUFReader field's value in the form GGUFWriter.add_key_value takes."""
    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        if field.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [v for i in field.data for v in field.parts[i].tolist()]
    if kind == gguf.GGUFValueType.STRING:
        return bytes(field.parts[-1]).decode("utf-8")
    return field.parts[-1][0]


def copy_tokenizer(vocab_path, writer, vocab_size):
    reader = gguf.GGUFReader(vocab_path)
    tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
    if tokens is None or len(tokens.data) != vocab_size:
        have = "none" if tokens is None else len(tokens.data)
        sys.exit(f"{vocab_path}: {have} tokens, but the model's vocab_size is {vocab_size}")
    for name, field in reader.fields.items():
        # GGUFWriter types an array by its first element: the float scores stay FLOAT32 and
        # the int token types INT32, as in the vocabulary file.
        if name.startswith("tokenizer."):
            writer.add_key_value(name, field_value(field), field.types[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="Hugging Face folder: config.json and model.safetensors")
    parser.add_argument("out", type=Path, help="GGUF file to write")
    parser.add_argument("--vocab", type=Path, required=True, help="GGUF whose tokenizer.* metadata to copy")
    parser.add_argument("--name", help="general.name (default: the folder's name)")
    args = parser.parse_args()

    config = json.loads((args.model_dir / "config.json").read_text())
    if config.get("model_type") != "llama":
        sys.exit(f"{args.model_dir}: model_type {config.get('model_type')!r}, only 'llama' is handled")
    n_layers = config["num_hidden_layers"]
    n_head = config["num_attention_heads"]
    n_head_kv = config.get("num_key_value_heads", n_head)
    head_dim = config.get("head_dim", config["hidden_size"] // n_head)

    writer = gguf.GGUFWriter(args.out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(args.name or args.model_dir.name)
    writer.add_block_count(n_layers)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    copy_tokenizer(args.vocab, writer, config["vocab_size"])

    path = args.model_dir / "model.safetensors"
    data_start, header = read_safetensors_header(path)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    plan = []  # (hf name, gguf name, numpy dtype of the output)
    for hf_name, entry in header.items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            sys.exit(f"{path}: no llama.cpp name for tensor {hf_name}")
        # llama.cpp's norms (and any 1-D tensor) must be F32, as convert_hf_to_gguf.py writes them.
        dtype = np.float32 if len(entry["shape"]) == 1 or name.endswith("_norm.weight") else np.float16
        plan.append((hf_name, name, dtype))
        count = int(np.prod(entry["shape"]))
        writer.add_tensor_info(name, entry["shape"], np.dtype(dtype), count * np.dtype(dtype).itemsize)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for hf_name, name, dtype in plan:
        values = load_tensor(path, data_start, header[hf_name])
        if hf_name.endswith("q_proj.weight"):
            values = permute_rope_rows(values, n_head)
        elif hf_name.endswith("k_proj.weight"):
            values = permute_rope_rows(values, n_head_kv)
        writer.write_tensor_data(np.ascontiguousarray(values, dtype=dtype))
    writer.close()


if __name__ == "__main__":
    main()
