"""A small safetensors writer (the format: 8-byte little-endian header length,
a JSON header, then the raw little-endian data), so the parity scripts need no
package beyond torch and numpy."""
import json
import os
import struct

import numpy as np
import torch

_DTYPES = {
    torch.float32: ("F32", np.float32),
    torch.float64: ("F64", np.float64),
    torch.int64: ("I64", np.int64),
    torch.bool: ("BOOL", np.bool_),
    torch.bfloat16: ("BF16", None),  # numpy has no bfloat16: written as its 16-bit patterns
}


def write_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype not in _DTYPES:
            raise ValueError("st_writer: unsupported dtype %s for %s" % (t.dtype, name))
        code, npt = _DTYPES[t.dtype]
        if npt is None:
            data = t.view(torch.int16).numpy().tobytes()
        else:
            data = t.numpy().astype(npt, copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """(metadata, {name: torch tensor}) of a safetensors file with F32, F64,
    I64 or BOOL tensors (what attn writes for the tests to read back)."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    codes = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "BOOL": np.bool_}
    tensors = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        a = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=codes[h["dtype"]]).reshape(h["shape"])
        tensors[name] = torch.from_numpy(a.copy())
    return meta, tensors
