#!/usr/bin/env python3
"""PyTorch checkpoints for tests/test_torch_io.cpp, written by torch.save.

Good files, each with the tensors it must load as (expected.safetensors, keys
"<file stem>/<tensor path>", with the dtype attn reads them as):
  dtypes.pt      one tensor of every storage type torch.save writes
  views.pt       views: storage offsets, transposes, slices with steps,
                 expanded (stride 0) and tied tensors sharing one storage,
                 0-d and empty tensors
  nested.pt      {"model": state_dict, "optimizer": {...}, "epoch": 3, ...}
  module.pth     an nn.Module's state_dict (OrderedDict with _metadata)
  params.pt      nn.Parameters (rebuilt through _rebuild_parameter)
  proto4.pt      the same as dtypes.pt with pickle protocol 4
  deflated.pt    dtypes.pt re-zipped with deflate compression
Hostile files (hostile/NAME.pt; each must be refused with the message part
in hostile/expect.json, and nothing run: the marker file must not appear):
  reduce_os_system, reduce_eval, pickled_module, legacy_format, and
  hand-made archives and pickles (see make_hostile).

Usage: gen_torch.py --out DIR
"""
import argparse
import io
import json
import os
import struct
import sys
import zipfile

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pt_writer import archive, proto2, state_dict, tensor  # noqa: E402
from st_writer import write_safetensors  # noqa: E402

MARKER = "/tmp/attn_torch_io_pwned"


def attn_view(t):
    """The tensor as attn reads it: float16 -> float32, narrow ints -> int64."""
    t = t.detach().contiguous()
    if t.dtype == torch.float16:
        return t.float()
    if t.dtype in (torch.int32, torch.int16, torch.int8, torch.uint8):
        return t.long()
    return t


def flatten(obj, prefix, out):
    if isinstance(obj, torch.Tensor):
        out[prefix] = attn_view(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, "%s.%s" % (prefix, k) if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, "%s.%d" % (prefix, i) if prefix else str(i), out)


def good_files(out_dir, expected):
    g = torch.Generator().manual_seed(5)
    dtypes = {
        "f32": torch.randn(3, 4, generator=g),
        "f64": torch.randn(5, generator=g).double(),
        "f16": torch.randn(2, 3, generator=g).half(),
        "bf16": torch.randn(4, 2, generator=g).bfloat16(),
        "i64": torch.randint(-2**40, 2**40, (6,), generator=g),
        "i32": torch.randint(-2**30, 2**30, (2, 2), generator=g).int(),
        "i16": torch.randint(-30000, 30000, (3,), generator=g).short(),
        "i8": torch.randint(-128, 127, (4,), generator=g).to(torch.int8),
        "u8": torch.randint(0, 255, (5,), generator=g).to(torch.uint8),
        "bool": torch.rand(7, generator=g) < 0.5,
    }
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    tied = torch.randn(8, 3, generator=g)
    views = {
        "offset": base[2:4],              # storage offset 20
        "transposed": base.t(),           # strides (1, 10)
        "stepped": base[1::2, ::3],       # offset 10, strides (20, 3)
        "column": base[:, 7],             # offset 7, stride 10
        "expanded": torch.randn(3, 1, generator=g).expand(3, 5),  # stride 0
        "tied_a": tied,
        "tied_b": tied,                   # the same tensor twice
        "tied_view": tied[1:],            # a view of the same storage
        "scalar": torch.tensor(2.5),      # 0-d
        "empty": torch.zeros(0, 4),
        "empty_int": torch.zeros(3, 0, dtype=torch.int64),
    }
    m = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    nested = {
        "model": m.state_dict(),
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(3, 4, generator=g)}},
                      "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "params": [0, 1]}]},
        "epoch": 3,
        "loss": 0.25,
        "name": "run-7",
        "best": True,
        "note": None,
    }
    params = {"w": nn.Parameter(torch.randn(2, 3, generator=g)), "b": nn.Parameter(torch.randn(3, generator=g))}
    files = {"dtypes.pt": (dtypes, {}), "views.pt": (views, {}), "nested.pt": (nested, {}),
             "module.pth": (m.state_dict(), {}), "params.pt": (params, {}),
             "proto4.pt": (dtypes, {"pickle_protocol": 4})}
    for name, (obj, kw) in files.items():
        torch.save(obj, os.path.join(out_dir, name), **kw)
        flat = {}
        flatten(obj, "", flat)
        for k, v in flat.items():
            expected[name.split(".")[0] + "/" + k] = v
    # dtypes.pt with every entry deflated
    with zipfile.ZipFile(os.path.join(out_dir, "dtypes.pt")) as src, \
            zipfile.ZipFile(os.path.join(out_dir, "deflated.pt"), "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    for k, v in list(expected.items()):
        if k.startswith("dtypes/"):
            expected["deflated/" + k[len("dtypes/"):]] = v
    return {"nested": {"epoch": "3", "loss": "0.25", "name": "run-7", "best": "True", "note": None}}


class RunsCode:
    """A pickle that calls os.system when unpickled."""
    def __reduce__(self):
        return (os.system, ("touch " + MARKER,))


class EvalsCode:
    def __reduce__(self):
        return (eval, ("open(%r, 'w').close()" % MARKER,))


def storage_pkl(numel, size, stride, offset=0):
    """{'w': a float tensor of SIZE and STRIDE over storage '0' of NUMEL elements}"""
    return state_dict([("w", tensor("0", "FloatStorage", numel, size, stride, offset))])


def make_hostile(d):
    """Each case: file name -> the part of attn's message it must contain."""
    expect = {}

    def put(name, data, message):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        expect[name] = message

    torch.save({"x": RunsCode()}, os.path.join(d, "reduce_os_system.pt"))
    expect["reduce_os_system.pt"] = "refused the global posix.system"
    torch.save({"x": EvalsCode()}, os.path.join(d, "reduce_eval.pt"))
    expect["reduce_eval.pt"] = "refused the global __builtin__.eval"
    torch.save(nn.Linear(2, 2), os.path.join(d, "pickled_module.pt"))
    expect["pickled_module.pt"] = "torch.save(model.state_dict(), path)"
    torch.save({"w": torch.ones(2)}, os.path.join(d, "legacy_format.pt"), _use_new_zipfile_serialization=False)
    expect["legacy_format.pt"] = "legacy (pre-1.6) format"

    good = storage_pkl(6, [2, 3], [3, 1])
    data6 = struct.pack("<6f", *range(6))
    archive(os.path.join(d, "well_formed.pt"), good, [("0", data6)])
    expect["well_formed.pt"] = ""  # loads: the control case for the hand-made archives
    archive(os.path.join(d, "storage_short.pt"), good, [("0", data6[:20])])
    expect["storage_short.pt"] = "holds 20 bytes but the pickle declares 6 elements"
    archive(os.path.join(d, "view_past_end.pt"), storage_pkl(6, [3, 3], [3, 1]), [("0", data6)])
    expect["view_past_end.pt"] = "reaches element 8 of storage 0, which has 6"
    archive(os.path.join(d, "offset_past_end.pt"), storage_pkl(6, [2], [1], offset=5), [("0", data6)])
    expect["offset_past_end.pt"] = "reaches element 6"
    archive(os.path.join(d, "negative_stride.pt"), storage_pkl(6, [2], [-1], offset=3), [("0", data6)])
    expect["negative_stride.pt"] = "negative size or stride"
    archive(os.path.join(d, "huge_size.pt"), storage_pkl(6, [2**30, 2**30, 2**30], [0, 0, 0]), [("0", data6)])
    expect["huge_size.pt"] = "more elements than int64 counts"
    archive(os.path.join(d, "missing_storage.pt"), good, [])
    expect["missing_storage.pt"] = "has no entry \"archive/data/0\""
    with zipfile.ZipFile(os.path.join(d, "no_data_pkl.pt"), "w") as z:
        z.writestr("archive/version", "3\n")
    expect["no_data_pkl.pt"] = "without a data.pkl"
    # Pickles out of order or out of bounds.
    archive(os.path.join(d, "pop_empty.pt"), proto2(b"0"))
    expect["pop_empty.pt"] = "pops an empty stack"
    archive(os.path.join(d, "unknown_opcode.pt"), proto2(b"}\xff"))
    expect["unknown_opcode.pt"] = "opcode 0xff"
    archive(os.path.join(d, "newobj.pt"), proto2(b"ccollections\nOrderedDict\n)\x81"))
    expect["newobj.pt"] = "constructs an object"
    archive(os.path.join(d, "long_string.pt"), b"\x80\x02}X\xff\xff\xff\x7fabc")
    expect["long_string.pt"] = "runs past the end of the pickle"
    archive(os.path.join(d, "bad_memo.pt"), proto2(b"j\xff\xff\xff\x7f"))
    expect["bad_memo.pt"] = "never put"
    archive(os.path.join(d, "setitem_on_list.pt"), proto2(b"]K\x01K\x02s"))
    expect["setitem_on_list.pt"] = "SETITEM on a value that is not a dict"
    archive(os.path.join(d, "no_stop.pt"), b"\x80\x02}")
    expect["no_stop.pt"] = "runs past the end of the pickle"
    archive(os.path.join(d, "two_values.pt"), proto2(b"}}"))
    expect["two_values.pt"] = "2 values on its stack"
    archive(os.path.join(d, "not_a_dict.pt"), proto2(b"]"))
    expect["not_a_dict.pt"] = "not a dict of tensors"
    # A list nested 100 000 deep inside the dict; then a dict holding itself.
    deep = b"}X\x01\x00\x00\x00a" + b"]" * 100000 + b"a" * 99999 + b"s"
    archive(os.path.join(d, "deep_nesting.pt"), proto2(deep))
    expect["deep_nesting.pt"] = "nested deeper than 64 levels"
    archive(os.path.join(d, "self_reference.pt"), proto2(b"}q\x00X\x01\x00\x00\x00ah\x00s"))
    expect["self_reference.pt"] = "nested deeper than 64 levels"
    # Shared subtrees: 40 levels of a dict holding the previous one twice (2^40 paths).
    body = b"}"
    for i in range(40):
        body += b"q" + bytes([i]) + b"0}X\x01\x00\x00\x00ah" + bytes([i]) + b"sX\x01\x00\x00\x00bh" \
            + bytes([i]) + b"s"
    archive(os.path.join(d, "shared_subtrees.pt"), proto2(body))
    expect["shared_subtrees.pt"] = "refer to each other far more"
    # The zip itself: truncated, a wrong central directory, not a zip.
    raw = open(os.path.join(d, "well_formed.pt"), "rb").read()
    put("truncated_zip.pt", raw[: len(raw) // 2], "not a readable zip archive")
    eocd = raw.rfind(b"PK\x05\x06")
    bad_cd = bytearray(raw)
    struct.pack_into("<I", bad_cd, eocd + 16, len(raw) + 1000)  # central directory offset past the end
    put("wrong_central_directory.pt", bytes(bad_cd), "not a readable zip archive")
    put("not_a_zip.pt", b"hello, this is text", "not a zip archive")
    put("empty.pt", b"", "the file is empty")
    # A storage whose stored bytes fail their CRC.
    crc = bytearray(raw)
    at = crc.find(data6)
    crc[at] ^= 0xFF
    put("bad_crc.pt", bytes(crc), "is corrupt")
    with open(os.path.join(d, "expect.json"), "w") as f:
        json.dump(expect, f, indent=1, sort_keys=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(os.path.join(args.out, "hostile"), exist_ok=True)
    if os.path.exists(MARKER):
        os.remove(MARKER)
    expected = {}
    values = good_files(args.out, expected)
    write_safetensors(os.path.join(args.out, "expected.safetensors"), expected,
                      {"values": json.dumps(values), "marker": MARKER})
    make_hostile(os.path.join(args.out, "hostile"))
    print("wrote %d expected tensors and %d hostile files to %s (torch %s)"
          % (len(expected), len(os.listdir(os.path.join(args.out, "hostile"))) - 1, args.out, torch.__version__))


if __name__ == "__main__":
    main()
