"""PNG encoding of rendered images: Pillow's writer (its adaptive row filters) with zlib's
default strategy and with Huffman coding only, against p2phd.common.png's (the Sub filter on
every row, Huffman coding only), all at level 1, on the default model's renders of real
Cityscapes maps at 256x512; ms per image on one thread and KiB per image.

    .venv/bin/python benchmarks/png_encode.py [--model models/default] [-n 8]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from _shared import RESULTS, machine, write_result
from int8 import decoded, real_maps
from PIL import Image


def pillow(strategy: int):
    def encode(image: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG", compress_level=1, compress_type=strategy)
        return buf.getvalue()

    return encode


def main() -> None:
    from p2phd.engine.core.renderer import Renderer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/default")
    p.add_argument("-n", type=int, default=8, help="maps to render")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("-o", "--output", type=Path, default=RESULTS / "png_encode.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        labels, instances = decoded(real_maps(Path(tmp)), label_nc=35)
    with Renderer(args.model, "onnxruntime", "fp32") as r:
        images = [r.render(labels[i : i + 1], instances[i : i + 1])[0] for i in range(args.n)]
    from p2phd.common.png import encode_png

    encoders = {
        "pillow_default": pillow(zlib.Z_DEFAULT_STRATEGY),
        "pillow_huffman_only": pillow(zlib.Z_HUFFMAN_ONLY),
        "p2phd_sub_huffman_only": encode_png,
    }
    rows = {}
    for name, encode in encoders.items():
        times, sizes = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            sizes += [len(encode(image)) for image in images]
            times.append((time.perf_counter() - start) * 1e3 / len(images))
        rows[name] = {"ms_per_image": round(float(np.median(times)), 2),
                      "kib_per_image": round(float(np.mean(sizes)) / 1024, 1)}  # fmt: skip
    write_result(args.output, {
        "machine": machine(),
        "images": f"{len(images)} renders of {args.model} from real maps at 256x512",
        "encoders": rows,
    }, echo=True)  # fmt: skip


if __name__ == "__main__":
    main()
