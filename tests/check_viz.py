"""Checks a view written by `attn viz` or `attn plot`: a PNG that decodes
(attn writes 8-bit RGB, filter 0), at least MIN_W x MIN_H pixels, and not
blank: at least 2% of its pixels are not white and it has at least 3
colours. Usage: check_viz.py FILE [MIN_W MIN_H]"""
import struct
import sys
import zlib


def main():
    path = sys.argv[1]
    min_w, min_h = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (100, 60)
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "%s: not a PNG" % path
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h = ihdr[0], ihdr[1]
    assert ihdr[2:4] == (8, 2), "%s: not 8-bit RGB" % path
    assert w >= min_w and h >= min_h, "%s: %dx%d, smaller than %dx%d" % (path, w, h, min_w, min_h)
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + 3 * w), "%s: inflated size" % path
    colours, inked = set(), 0
    for y in range(h):
        row = raw[y * (1 + 3 * w) + 1:(y + 1) * (1 + 3 * w)]
        for x in range(0, 3 * w, 3):
            px = row[x:x + 3]
            colours.add(px)
            inked += px != b"\xff\xff\xff"
    assert inked >= 0.02 * w * h, "%s: blank (%d of %d pixels drawn)" % (path, inked, w * h)
    assert len(colours) >= 3, "%s: only %d colours" % (path, len(colours))
    print("%s: %dx%d, %d colours, %.0f%% drawn" % (path, w, h, len(colours), 100.0 * inked / (w * h)))


if __name__ == "__main__":
    main()
