"""int8 against bf16 through `p2phd render`'s pipeline (benchmarks/int8.py's `speed`) on a given
package and folder of maps, with the threads each runtime was given; JSON on stdout."""

import contextlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/

import int8  # noqa: E402  (benchmarks/int8.py)
import torch  # noqa: E402

with contextlib.redirect_stdout(sys.stderr):  # its per-round lines
    result = int8.speed(Path(sys.argv[1]), Path(sys.argv[2]), rounds=2, batch=4, workers=2)
result["cpus"] = sorted(os.sched_getaffinity(0))
result["torch_threads"] = torch.get_num_threads()
print(json.dumps(result, indent=1))
