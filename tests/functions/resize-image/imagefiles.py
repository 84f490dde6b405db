"""Images for the resize-image tests, made here: photos with EXIF and ICC data, a PNG bomb, broken files."""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image, ImageCms


def jpeg(width: int, height: int, orientation: int = 1, quality: int = 90) -> bytes:
    """A JPEG with an EXIF Orientation tag, a camera model and an sRGB ICC profile (all to be stripped)."""
    img = Image.new("RGB", (width, height))
    # a gradient, so the encoder has real work (a flat image compresses to nothing)
    img.putdata(
        [((x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256) for y in range(height) for x in range(width)]
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x0110] = "kfaas test camera"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, exif=exif.tobytes(), icc_profile=icc)
    return buf.getvalue()


def png_rgba(width: int, height: int) -> bytes:
    img = Image.new("RGBA", (width, height), (200, 30, 30, 128))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 8-bit grey PNG of width x height black pixels: ~0.4 MB of file, 400 MB once decoded."""
    comp = zlib.compressobj(9)
    rows = (b"\x00" * (width + 1)) * 1000  # filter byte 0 + the row, a thousand rows at a time
    data = b"".join(comp.compress(rows) for _ in range(height // 1000))
    data += comp.compress((b"\x00" * (width + 1)) * (height % 1000)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    whole = jpeg(800, 600)
    return whole[: len(whole) // 2]
