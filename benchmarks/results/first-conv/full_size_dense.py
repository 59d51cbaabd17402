"""full_size.py with the compiled model taking the whole dense input (`whole`, as before
`narrow_dense_input`) or only the channels its layers slice (`narrow`), each with its own engine
cache; one process per run:

    for m in whole narrow whole narrow; do .venv/bin/python \\
        benchmarks/results/first-conv/full_size_dense.py $m /tmp/def bf16 2; done
"""

import os
import runpy
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from rewrites import whole_input  # noqa: E402

from p2phd.engine.backends import openvino  # noqa: E402
from p2phd.engine.core.compiled_cache import CACHE_ENV  # noqa: E402

mode = sys.argv.pop(1)
if mode == "whole":
    openvino.narrow_dense_input = whole_input
with tempfile.TemporaryDirectory() as cache:
    os.environ[CACHE_ENV] = cache
    print(mode, end=": ")
    runpy.run_path(str(HERE / "full_size.py"), run_name="__main__")
