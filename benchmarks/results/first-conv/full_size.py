"""One process per run: render N real Cityscapes frames at 2048x1024 through Renderer.render
(batch N, OpenVINO), the second of two renders timed, and print the process's peak resident
memory. Run it once per $P2PHD_OPENVINO_FIRST_CONV mode:

    for m in graph conv labels; do P2PHD_OPENVINO_FIRST_CONV=$m .venv/bin/python \\
        benchmarks/results/first-conv/full_size.py /tmp/z512/pkg int8 2; done
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from _shared import cityscapes_frames  # noqa: E402

from p2phd.engine.backends.base import EngineOptions  # noqa: E402
from p2phd.engine.core.renderer import Renderer  # noqa: E402

package, precision, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
source, frames = cityscapes_frames(n)
instances = np.concatenate([i for i, _ in frames]).astype(np.int32)
labels = np.concatenate([lab for _, lab in frames])
renderer = Renderer(package, "openvino", precision,
                    options=EngineOptions((1, n, n), sizes=[labels.shape[1:]]))  # fmt: skip
renderer.render(labels, instances)
start = time.perf_counter()
renderer.render(labels, instances)
seconds = (time.perf_counter() - start) / n
status = Path("/proc/self/status").read_text().splitlines()
peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024
first = renderer.describe()["first_conv"]
print(f"{precision}, {n} frames: {seconds:.2f} s/image, peak RSS {peak} MiB, first conv {first}")
