"""One-off A/B of `openvino_rewrites.drop_biases` (the sub-pixel phases' bias adds that the
instance normalisation cancels): two OpenVINO Renderers of a package, one compiled with the
rewrite disabled, each with its own engine cache, over the real maps at 256x512 in batches of 4
(benchmarks/int8.py's), rounds alternating; median ms/image and PSNR against ONNX Runtime fp32.

    .venv/bin/python benchmarks/results/int8-trained512-zen4/bias_drop.py /tmp/z512/pkg int8
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from first_conv import psnr, render_all  # noqa: E402
from int8 import decoded, real_maps  # noqa: E402

from p2phd.engine.backends import openvino  # noqa: E402
from p2phd.engine.backends.base import EngineOptions  # noqa: E402
from p2phd.engine.core.renderer import Renderer  # noqa: E402

package, precision = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
with tempfile.TemporaryDirectory() as tmp:
    labels, instances = decoded(real_maps(Path(tmp)), label_nc=35)
    with Renderer(package, "onnxruntime", "fp32") as fp32:
        reference = render_all(fp32, labels, instances)
    drop = openvino.drop_biases
    renderers, images = {}, {}
    for mode in ("kept", "dropped"):  # each compiles (on its first render) with its own rewrite
        openvino.drop_biases = drop if mode == "dropped" else (lambda model, names: 0)
        os.environ["P2PHD_CACHE"] = f"{tmp}/cache-{mode}"
        options = EngineOptions((1, 4, 4), sizes=[(256, 512)])
        renderers[mode] = Renderer(package, "openvino", precision, options=options)
        images[mode] = render_all(renderers[mode], labels, instances)
    openvino.drop_biases = drop
    times: dict[str, list[float]] = {mode: [] for mode in renderers}
    for _ in range(rounds):
        for mode, r in renderers.items():
            start = time.perf_counter()
            render_all(r, labels, instances)
            times[mode].append((time.perf_counter() - start) * 1e3 / len(labels))
for mode in renderers:
    median = float(np.median(times[mode]))
    print(f"{mode}: {median:.1f} ms/image {[round(t, 1) for t in times[mode]]}, "
          f"PSNR vs fp32 {psnr(images[mode], reference)}")  # fmt: skip
diff = np.abs(images["kept"].astype(int) - images["dropped"].astype(int))
print(f"kept vs dropped: max {diff.max()} levels, mean {diff.mean():.3f}")
