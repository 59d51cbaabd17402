"""Measure a calibrated package's OpenVINO int8 gate again on its recorded held-out maps,
without calibrating again (after a change to how the engine computes the graph), and write it
into the package's engines/quality.json as `p2phd build` does.

    .venv/bin/python benchmarks/results/int8-trained512-zen4/regate.py /tmp/z512/pkg
"""

import sys

from p2phd.engine.backends.base import EngineOptions
from p2phd.engine.core.build import HeldOut, build_int8
from p2phd.engine.core.package import ModelPackage
from p2phd.export.int8 import calibration_set

package = sys.argv[1]
record = ModelPackage(package).manifest.calibration["int8"]
size = tuple(int(n) for n in record["size"].split("x"))
maps = calibration_set(package, record["source"], size)
held_out = HeldOut(
    maps.held_out_batch(), f"{len(maps.held_out)} held-out maps (gate measured again)"
)
result = build_int8(package, "openvino", EngineOptions((1, 4, 4), sizes=[size]), held_out)
print({k: result.quality[k] for k in ("gate_numbers", "psnr_db", "engine")})
