"""The OpenVINO backend's graph rewrites, each against the same Renderer with it turned off
(one variant of benchmarks/variants.py each: ms/image, PSNR against fp32, output difference).

    .venv/bin/python benchmarks/rewrites.py /tmp/z512/pkg --precision int8 --off drop-biases
    .venv/bin/python benchmarks/rewrites.py models/default --precision bf16,int8 \\
        --off narrow-input,tail-phases -o benchmarks/results/rewrites-default.json

Rewrites (--off): `drop-biases` (the upsamplings' phase bias adds an instance normalisation
cancels), `narrow-input` (after the first layer's cut, only the dense input's channels later
layers slice), `tail-phases` (the last convolution's bias and tanh before its space-to-depth
view's interleave).
"""

from __future__ import annotations

import argparse
import contextlib
from functools import partial
from pathlib import Path

from _shared import RESULTS
from variants import measure


def whole_input(model):
    """`narrow_dense_input` turned off: the model unchanged, taking all of the dense input
    where it has a second input."""
    params = model.get_parameters()
    return model, range(params[1].get_partial_shape()[1].get_length()) if len(params) > 1 else None


def _off():
    """--off name -> (module, function, its stand-in that leaves the graph as it is)."""
    from p2phd.engine.backends import openvino, openvino_rewrites

    return {
        "drop-biases": (openvino, "drop_biases", lambda model, names: 0),
        "narrow-input": (openvino, "narrow_dense_input", whole_input),
        "tail-phases": (openvino_rewrites, "_before_interleave", lambda phases, out: (phases, out)),
    }


@contextlib.contextmanager
def turned_off(module, function: str, stand_in):
    kept = getattr(module, function)
    setattr(module, function, stand_in)
    try:
        yield
    finally:
        setattr(module, function, kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--precision", default="bf16,int8")
    parser.add_argument("--off", required=True, help=f"comma-separated: {', '.join(_off())}")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("-o", "--output", type=Path, default=RESULTS / "rewrites.json")
    args = parser.parse_args()
    off = _off()
    names = args.off.split(",")
    for name in (n for n in names if n not in off):
        parser.error(f"--off {name}: choose from {', '.join(off)}")
    cases = [
        ({"rewrite": name}, args.model, precision,
         {"off": partial(turned_off, *off[name]), "on": contextlib.nullcontext})
        for name in names
        for precision in args.precision.split(",")
    ]  # fmt: skip
    measure(cases, args.rounds, args.output)


if __name__ == "__main__":
    main()
