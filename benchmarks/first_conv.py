"""The generator's first layer computed from the labels (the OpenVINO backend's default) against
the same layer left in the compiled graph, one Renderer per $P2PHD_OPENVINO_FIRST_CONV mode:
`graph` (the whole graph), `conv` (the convolution from the labels) and `labels` (in an int8
graph, its normalisation to uint8 levels too; otherwise what `conv` does).

The warm Renderers render the same real Cityscapes maps (the sample resized to 256x512, as
benchmarks/int8.py writes them) through Renderer.render at batch 4, rounds alternating between
them so a slow spell on the shared machine hits all; the ratios of the median ms/image to the
first mode's are the result, with the largest and mean difference of their 8-bit outputs from
the first mode's and each one's PSNR against ONNX Runtime fp32 (mean and worst image): int8
rounds differently either way, so two modes differ by more than their distance to fp32 does.

    .venv/bin/python benchmarks/first_conv.py models/default /tmp/z512/pkg \
        --precision bf16,int8 --modes graph,labels -o benchmarks/results/first-conv/zen4.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _shared import RESULTS, machine, write_result
from int8 import decoded, real_maps

BATCH = 4


def renderers(model: Path, precision: str, modes: list[str]) -> dict:
    """A Renderer per mode, each warmed by one render."""
    from p2phd.engine.backends.base import EngineOptions
    from p2phd.engine.backends.openvino import FIRST_CONV_ENV
    from p2phd.engine.core.renderer import Renderer

    out = {}
    for mode in modes:
        os.environ[FIRST_CONV_ENV] = mode
        options = EngineOptions((1, BATCH, BATCH), sizes=[(256, 512)])
        out[mode] = Renderer(model, "openvino", precision, options=options)
    return out


def render_all(renderer, labels, instances) -> np.ndarray:
    return np.concatenate([
        renderer.render(labels[i : i + BATCH], instances[i : i + BATCH])
        for i in range(0, len(labels), BATCH)
    ])  # fmt: skip


def psnr(images: np.ndarray, reference: np.ndarray) -> dict:
    """Mean and worst per-image PSNR (dB) of uint8 images against the reference's."""
    from p2phd.engine.core.quality import psnr_db

    db = [psnr_db(ref, image) for ref, image in zip(reference, images, strict=True)]
    return {"mean": round(float(np.mean(db)), 2), "worst": round(min(db), 2)}


def compare(model: Path, precision: str, modes: list[str], labels, instances, rounds: int) -> dict:
    from p2phd.engine.core.renderer import Renderer

    with Renderer(model, "onnxruntime", "fp32") as fp32:
        reference = render_all(fp32, labels, instances)
    pair = renderers(model, precision, modes)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    images = {}
    for mode, r in pair.items():
        images[mode] = render_all(r, labels, instances)  # warm-up
    for _ in range(rounds):
        for mode, r in pair.items():
            t = time.perf_counter()
            render_all(r, labels, instances)
            times[mode].append((time.perf_counter() - t) * 1e3 / len(labels))
    median = {mode: float(np.median(t)) for mode, t in times.items()}
    first, others = modes[0], modes[1:]
    diff = {m: np.abs(images[first].astype(int) - images[m].astype(int)) for m in others}
    return {
        "model": str(model),
        "precision": precision,
        "first_conv": {mode: r.backend.describe()["first_conv"] for mode, r in pair.items()},
        "ms_per_image": {mode: [round(t, 1) for t in ts] for mode, ts in times.items()},
        "median_ms_per_image": {mode: round(m, 1) for mode, m in median.items()},
        "speedup": {m: round(median[first] / median[m], 3) for m in others},
        "output_difference_levels": {
            m: {"max": int(d.max()), "mean": round(float(d.mean()), 3)} for m, d in diff.items()
        },
        "psnr_vs_fp32_db": {mode: psnr(images[mode], reference) for mode in modes},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--precision", default="bf16,int8")
    parser.add_argument("--modes", default="graph,conv,labels", help="the first is the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-o", "--output", type=Path, default=RESULTS / "first_conv.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        labels, instances = decoded(real_maps(Path(tmp)), label_nc=35)
    rows = []
    for model in args.models:
        for precision in args.precision.split(","):
            modes = args.modes.split(",")
            rows.append(compare(model, precision, modes, labels, instances, args.rounds))
            print(rows[-1], flush=True)
    write_result(args.output, {
        "machine": machine(),
        "maps": f"{len(labels)} Cityscapes sample maps at 256x512, batch {BATCH}",
        "rows": rows,
    })  # fmt: skip


if __name__ == "__main__":
    main()
