"""int8 against bf16 through `p2phd render`'s pipeline (benchmarks/int8.py's `speed`) on a given
package and folder of maps, with the CPUs and threads it ran on; JSON on stdout.

    render_speed.py PACKAGE MAPS [--rounds 2] [--batch 4]
"""

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/

import int8  # noqa: E402  (benchmarks/int8.py)
import torch  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("package", type=Path)
p.add_argument("maps", type=Path)
p.add_argument("--rounds", type=int, default=2)
p.add_argument("--batch", type=int, default=4)
args = p.parse_args()
with contextlib.redirect_stdout(sys.stderr):  # its per-round lines
    result = int8.speed(args.package, args.maps, args.rounds, args.batch, workers=2)
result["cpus"] = sorted(os.sched_getaffinity(0))
result["torch_threads"] = torch.get_num_threads()
print(json.dumps(result, indent=1))
