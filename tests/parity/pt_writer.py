"""Hand-made torch.save archives, standard library only: the zip layout
torch.save writes around a protocol-2 pickle built opcode by opcode, so tests
and the fuzz corpus can make well-formed and broken checkpoints without
PyTorch."""
import struct
import zipfile

STORAGE_SIZE = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "LongStorage": 8, "BoolStorage": 1}


def archive(path, pkl, storages=(), prefix="archive", extra=()):
    """A torch.save-like archive around a pickle: PREFIX/data.pkl,
    PREFIX/data/KEY for each (key, bytes), PREFIX/version."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(prefix + "/data.pkl", pkl)
        for key, data in storages:
            z.writestr(prefix + "/data/" + key, data)
        z.writestr(prefix + "/version", "3\n")
        for name, data in extra:
            z.writestr(name, data)


def proto2(body):
    return b"\x80\x02" + body + b"."


def text(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def ints(xs):
    return b"(" + b"".join(b"J" + struct.pack("<i", x) for x in xs) + b"t"


def tensor(key, storage_type, numel, size, stride, offset=0):
    """_rebuild_tensor_v2(storage KEY of STORAGE_TYPE and NUMEL elements, OFFSET, SIZE, STRIDE, False, OrderedDict())"""
    return (b"ctorch._utils\n_rebuild_tensor_v2\n("
            + b"(" + text("storage") + b"ctorch\n" + storage_type.encode() + b"\n" + text(key) + text("cpu")
            + b"J" + struct.pack("<i", numel) + b"tQ"
            + b"J" + struct.pack("<i", offset) + ints(size) + ints(stride)
            + b"\x89ccollections\nOrderedDict\n)RtR")


def state_dict(entries):
    """A pickled dict {name: value bytes} (values are pickle fragments)."""
    return proto2(b"}(" + b"".join(text(k) + v for k, v in entries) + b"u")
