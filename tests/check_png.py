"""Checks a PNG as a decoder would: signature, chunk CRCs, an 8-bit RGB
IHDR of the given size, and an IDAT stream that inflates to height rows of
1 + 3 * width bytes. Usage: check_png.py FILE WIDTH HEIGHT"""
import struct
import sys
import zlib


def main():
    path, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "signature"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, "CRC of %s" % kind
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert ihdr == (w, h, 8, 2, 0, 0, 0), "IHDR %r" % (ihdr,)
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + 3 * w), "inflated size %d" % len(raw)
    print("%s: a valid %dx%d RGB PNG" % (path, w, h))


if __name__ == "__main__":
    main()
