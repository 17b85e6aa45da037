#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus (fuzz/corpus/*/): small valid safetensors
files of every dtype the parser reads, with and without metadata, with
fields the format does not define, and state
dicts of fuzz_load_state_dict's model (whole, float64, bfloat16, a key
missing, a key extra, a shape wrong), and torch.save-style archives for
fuzz_torch (tests/parity/pt_writer.py: every storage type the seeds need,
views, nested dicts with numbers). Standard library only; deterministic.
    python3 fuzz/make_corpus.py"""
import json
import math
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "parity"))
import pt_writer  # noqa: E402
PACK = {"F32": "f", "F64": "d", "I64": "q", "I32": "i", "I16": "h", "I8": "b", "U8": "B", "BOOL": "B"}


def encode(dtype, values):
    if dtype == "BF16":
        return b"".join(struct.pack("<f", v)[2:] for v in values)
    if dtype == "F16":
        return b"".join(struct.pack("<e", v) for v in values)
    return struct.pack("<%d%s" % (len(values), PACK[dtype]), *values)


def safetensors(tensors, metadata=None, extra=None):
    """tensors: list of (name, dtype, shape, values); extra: fields the format
    does not define, added to every tensor's entry."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, values in tensors:
        raw = encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        header[name].update(extra or {})
        data += raw
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + data


def values(dtype, n, rng):
    if dtype in ("F32", "F64", "BF16", "F16"):
        return [round(rng.uniform(-2, 2), 3) for _ in range(n)]
    if dtype == "BOOL":
        return [rng.randint(0, 1) for _ in range(n)]
    if dtype == "U8":
        return [rng.randint(0, 255) for _ in range(n)]
    if dtype == "I8":
        return [rng.randint(-128, 127) for _ in range(n)]
    return [rng.randint(-1000, 1000) for _ in range(n)]


def write(folder, name, blob):
    os.makedirs(os.path.join(HERE, "corpus", folder), exist_ok=True)
    with open(os.path.join(HERE, "corpus", folder, name + ".st"), "wb") as f:
        f.write(blob)


def main():
    rng = random.Random(7)
    dtypes = ["F32", "F64", "I64", "BOOL", "BF16", "F16", "I32", "I16", "I8", "U8"]
    for dt in dtypes:
        write("safetensors", "one_" + dt.lower(), safetensors([("t", dt, [2, 3], values(dt, 6, rng))]))
    write("safetensors", "mixed", safetensors(
        [("a.weight", "F32", [4, 2], values("F32", 8, rng)), ("a.bias", "F32", [4], values("F32", 4, rng)),
         ("step", "I64", [], values("I64", 1, rng)), ("mask", "BOOL", [3], values("BOOL", 3, rng))],
        {"format": "pt", "app": "fuzz"}))
    write("safetensors", "empty_tensor", safetensors([("e", "F32", [0, 5], [])]))
    write("safetensors", "no_tensors", safetensors([], {"k": "v"}))
    write("safetensors", "extra_fields", safetensors(
        [("x", "F32", [3], [0.5, -1.0, 2.0])], None, {"note": "n", "tags": [1, "a", None], "more": {"k": 2}}))

    model = [("attn.in_proj_weight", [24, 8]), ("attn.in_proj_bias", [24]), ("attn.out_proj.weight", [8, 8]),
             ("attn.out_proj.bias", [8]), ("norm.weight", [8]), ("norm.bias", [8]), ("out.weight", [3, 8]),
             ("out.bias", [3])]

    def state(dtype, entries):
        return safetensors([(k, dtype, s, values(dtype, math.prod(s), rng))
                            for k, s in entries])

    write("load_state_dict", "whole_f32", state("F32", model))
    write("load_state_dict", "whole_f64", state("F64", model))
    write("load_state_dict", "whole_bf16", state("BF16", model))
    write("load_state_dict", "missing_key", state("F32", model[:-1]))
    write("load_state_dict", "extra_key", state("F32", model + [("extra.weight", [2])]))
    write("load_state_dict", "wrong_shape", state("F32", model[:-1] + [("out.bias", [4])]))

    torch_dir = os.path.join(HERE, "corpus", "torch")
    os.makedirs(torch_dir, exist_ok=True)
    pt = pt_writer
    f6 = struct.pack("<6f", *values("F32", 6, rng))
    pt.archive(os.path.join(torch_dir, "float.pt"),
               pt.state_dict([("w", pt.tensor("0", "FloatStorage", 6, [2, 3], [3, 1]))]), [("0", f6)])
    pt.archive(os.path.join(torch_dir, "views.pt"), pt.state_dict([
        ("t", pt.tensor("0", "FloatStorage", 6, [3, 2], [1, 3])),
        ("row", pt.tensor("0", "FloatStorage", 6, [3], [1], offset=3)),
        ("i", pt.tensor("1", "LongStorage", 2, [2], [1])),
        ("m", pt.tensor("2", "BoolStorage", 3, [3], [1])),
        ("h", pt.tensor("3", "HalfStorage", 2, [2], [1]))]),
        [("0", f6), ("1", struct.pack("<2q", 7, -9)), ("2", bytes([1, 0, 1])), ("3", struct.pack("<2e", 0.5, -2.0))])
    nested = pt.proto2(b"}(" + pt.text("model") + b"}(" + pt.text("fc.weight")
                       + pt.tensor("0", "DoubleStorage", 2, [2], [1]) + b"u" + pt.text("epoch") + b"K\x03"
                       + pt.text("lr") + b"G?PbM\xd2\xf1\xa9\xfc" + pt.text("tags") + b"](" + pt.text("a")
                       + b"\x88Ne" + b"u")
    pt.archive(os.path.join(torch_dir, "nested.pt"), nested, [("0", struct.pack("<2d", 1.5, -0.25))])


if __name__ == "__main__":
    main()
