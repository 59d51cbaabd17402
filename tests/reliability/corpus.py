"""The bad-input corpus, generated in code: PNGs and raw arrays a user's bad day may send.

Each `Case` is a label (and optional instance) map as PNG bytes or a raw array, with the phrase
the error must contain. Crafted files (a header claiming 100000x100000, a zTXt bomb, a chunk
claiming 2 GiB) are assembled chunk by chunk with valid CRCs so that the decoder, not the file
signature check, is what has to refuse them. Nothing binary is committed.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

Map = bytes | np.ndarray | None


def png(array: np.ndarray, mode: str | None = None, **save) -> bytes:
    """PNG bytes of `array` (PIL infers the mode unless one is given)."""
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG", **save)
    return buf.getvalue()


def chunk(kind: bytes, data: bytes, length: int | None = None) -> bytes:
    """One PNG chunk with a valid CRC; `length` overrides the declared length."""
    n = len(data) if length is None else length
    return struct.pack(">I", n) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


SIGNATURE = b"\x89PNG\r\n\x1a\n"


def crafted_png(width: int, height: int, *, bit_depth: int = 8, colour: int = 0,
                extra: bytes = b"", idat: bytes | None = None) -> bytes:  # fmt: skip
    """A structurally valid PNG whose header declares `width` x `height`, whatever its data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64) if idat is None else idat
    return SIGNATURE + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def ztxt_bomb(megabytes: int = 8) -> bytes:
    """A zTXt chunk that inflates to `megabytes` MiB of text (compressed: a few dozen KiB)."""
    text = zlib.compress(b"A" * (megabytes << 20), 9)
    return chunk(b"zTXt", b"bomb\x00\x00" + text)


def grey(h: int, w: int, value: int = 1, dtype=np.uint8) -> np.ndarray:
    return np.full((h, w), value, dtype)


def palette_png(ids: np.ndarray) -> bytes:
    img = Image.fromarray(ids, mode="L").convert("P")
    img.putpalette([v for i in range(256) for v in (i, i, i)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def text_png(payload: str) -> bytes:
    """A valid 8x8 label PNG carrying `payload` in a tEXt chunk (metadata, never a path to open)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("source", payload)
    return png(grey(8, 8), pnginfo=info)


@dataclass(frozen=True)
class Case:
    """One bad request: maps (PNG bytes or raw arrays) and a phrase its error must contain."""

    name: str
    label: Map
    instance: Map
    reason: str


def bad_cases(label_nc: int, max_pixels: int) -> list[Case]:
    """Every bad input class the engine must refuse with an InputError naming the reason."""
    good = png(grey(16, 32))
    side = int(max_pixels**0.5) + 1
    rgb = np.zeros((16, 32, 3), np.uint8)
    out_of_range = grey(16, 32)
    out_of_range[3, 4] = label_nc
    negative = np.ones((16, 32), np.int32)
    negative[2, 2] = -5
    return [
        Case("empty-bytes", b"", None, "not a PNG"),
        Case("random-bytes", bytes(range(256)) * 4, None, "not a PNG"),
        Case("signature-only", SIGNATURE, None, "PNG"),
        Case("truncated-half", good[: len(good) // 2], None, "truncated"),
        Case("truncated-after-header", good[:33], None, "truncated"),
        Case("bad-crc", good[:29] + bytes([good[29] ^ 0xFF]) + good[30:], None, "PNG"),
        Case("rgb-label", png(rgb), None, "mode 'RGB'"),
        Case("rgba-label", png(np.zeros((16, 32, 4), np.uint8)), None, "mode 'RGBA'"),
        Case("grey-alpha-label", png(np.zeros((16, 32, 2), np.uint8), mode="LA"), None, "'LA'"),
        Case("16-bit-label", png(grey(16, 32, 3, np.uint16)), None, "mode 'I;16'"),
        Case("1-bit-label", png(grey(16, 32, 1, np.bool_)), None, "mode '1'"),
        Case("label-at-label-nc", png(out_of_range), None, f"class id {label_nc}"),
        Case("label-255", png(grey(16, 32, 255)), None, "class id 255"),
        Case("palette-label-out-of-range", palette_png(grey(16, 32, 200)), None, "class id 200"),
        Case("rgb-instance", good, png(rgb), "mode 'RGB'"),
        Case("instance-size-mismatch", good, png(grey(16, 31, 1, np.uint16)), "differs"),
        Case("instance-transposed", good, png(grey(32, 16, 1, np.uint16)), "differs"),
        Case("raw-negative-instance", grey(16, 32), negative, "negative"),
        Case("raw-label-out-of-range", out_of_range, None, f"class id {label_nc}"),
        Case("over-pixel-limit", png(grey(side, side)), None, "exceeds"),
        Case("bomb-header-100000x100000", crafted_png(100_000, 100_000), None, "exceeds the limit"),
        Case("bomb-header-1x2^31", crafted_png(1, 2**31 - 1), None, "exceeds the limit"),
        Case(
            "bomb-16-bit-instance",
            good,
            crafted_png(100_000, 100_000, bit_depth=16),
            "exceeds the limit",
        ),  # fmt: skip
        Case("ztxt-bomb", crafted_png(16, 32, extra=ztxt_bomb()), None, "PNG"),
        Case(
            "chunk-claims-2GiB",
            crafted_png(16, 32, extra=chunk(b"tEXt", b"a\x00b", 2**31 - 1)),
            None,
            "PNG",
        ),  # fmt: skip
        Case("zero-width-header", crafted_png(0, 16), None, "PNG"),
        Case("idat-garbage", crafted_png(16, 32, idat=b"\x78\x9c garbage"), None, "PNG"),
    ]
