"""One-off A/B of `openvino_first_layer.narrow_dense_input` (after the first convolution's cut,
the compiled model takes only the dense input's channels its layers read, where they read them
through channel slices: the default model's tail, the 3 instance-feature channels of 39): two
OpenVINO Renderers of a package per precision, one with the compiled model taking the whole
dense input as before, each with its own engine cache, over the sample's real maps at 256x512
in batches of 4 (benchmarks/int8.py's), rounds alternating; median ms/image, and the largest
difference between the two renderers' images.

    .venv/bin/python benchmarks/results/first-conv/dense_channels.py models/default bf16,int8

(full_size_dense.py runs full_size.py with either input.)
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from first_conv import render_all  # noqa: E402
from int8 import decoded, real_maps  # noqa: E402

from p2phd.engine.backends import openvino  # noqa: E402
from p2phd.engine.backends.base import EngineOptions  # noqa: E402
from p2phd.engine.core.renderer import Renderer  # noqa: E402


def whole_input(model):
    """The model unchanged, taking all of the dense input where it has a second input."""
    params = model.get_parameters()
    return model, range(params[1].get_partial_shape()[1].get_length()) if len(params) > 1 else None


def main() -> None:
    package, precisions = sys.argv[1], sys.argv[2].split(",")
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    narrow = openvino.narrow_dense_input
    with tempfile.TemporaryDirectory() as tmp:
        labels, instances = decoded(real_maps(Path(tmp)), label_nc=35)
        renderers, images = {}, {}
        for precision in precisions:
            for mode in (
                "whole",
                "narrow",
            ):  # each compiles (on its first render) with its own input
                openvino.narrow_dense_input = narrow if mode == "narrow" else whole_input
                os.environ["P2PHD_CACHE"] = f"{tmp}/cache-{precision}-{mode}"
                options = EngineOptions((1, 4, 4), sizes=[(256, 512)])
                key = f"{precision} {mode}"
                renderers[key] = Renderer(package, "openvino", precision, options=options)
                images[key] = render_all(renderers[key], labels, instances)
                print(f"{key}: one-hot channels written: {renderers[key].backend.reads_one_hot}")
        openvino.narrow_dense_input = narrow
        times: dict[str, list[float]] = {key: [] for key in renderers}
        for _ in range(rounds):
            for key, r in renderers.items():
                start = time.perf_counter()
                render_all(r, labels, instances)
                times[key].append((time.perf_counter() - start) * 1e3 / len(labels))
    for key in renderers:
        print(f"{key}: {np.median(times[key]):.1f} ms/image {[round(t, 1) for t in times[key]]}")
    for precision in precisions:
        diff = np.abs(images[f"{precision} whole"].astype(int) - images[f"{precision} narrow"])
        print(f"{precision} whole vs narrow: max {diff.max()} levels, mean {diff.mean():.4f}")


if __name__ == "__main__":
    main()
