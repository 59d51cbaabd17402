"""The generator's first layer computed from the labels (the OpenVINO backend's default) against
the same layer left in the compiled graph, one Renderer per $P2PHD_OPENVINO_FIRST_CONV mode:
`graph` (the whole graph), `conv` (the convolution from the labels) and `labels` (in an int8
graph, its normalisation to uint8 levels too; otherwise what `conv` does).

Compared as benchmarks/variants.py does (the sample's maps at 256x512, batch 4, alternating
rounds, PSNR against ONNX Runtime fp32): int8 rounds differently either way, so two modes differ
by more than their distance to fp32 does.

    .venv/bin/python benchmarks/first_conv.py models/default /tmp/z512/pkg \
        --precision bf16,int8 --modes graph,labels -o benchmarks/results/first-conv/zen4.json
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from _shared import RESULTS
from variants import environment, measure


def main() -> None:
    from p2phd.engine.backends.openvino import FIRST_CONV_ENV

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--precision", default="bf16,int8")
    parser.add_argument("--modes", default="graph,conv,labels", help="the first is the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-o", "--output", type=Path, default=RESULTS / "first_conv.json")
    args = parser.parse_args()
    modes = {mode: partial(environment, FIRST_CONV_ENV, mode) for mode in args.modes.split(",")}
    cases = [
        ({}, model, precision, modes)
        for model in args.models
        for precision in args.precision.split(",")
    ]  # fmt: skip
    measure(cases, args.rounds, args.output)


if __name__ == "__main__":
    main()
