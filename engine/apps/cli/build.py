"""`p2phd build`: build and cache an engine for a model package, and write its quality report."""

from __future__ import annotations

import argparse

HELP = "build and cache an engine (TensorRT, OpenVINO, ONNX Runtime) and measure its quality"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="the model package")
    parser.add_argument("--backend", required=True, choices=("tensorrt", "openvino", "onnxruntime"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument(
        "--batch", default="1:1:4", metavar="MIN:OPT:MAX", help="batch sizes (default 1:1:4)"
    )
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="HxW",
        help="an input size to build for (repeatable; the first is the optimum)",
    )


def run(args: argparse.Namespace) -> int:
    from p2phd.engine.backends.base import EngineOptions
    from p2phd.engine.core.build import build_engine, parse_batch, parse_size

    options = EngineOptions(parse_batch(args.batch), [parse_size(s) for s in args.size])
    result = build_engine(args.model_dir, args.backend, args.precision, options)
    q = result.quality
    psnr = "identical" if q["identical_uint8"] else f"{q['psnr_db']} dB"
    print(f"{result.key}: built {len(result.files)} engine file(s)")
    for f in result.files:
        print(f"  {f}")
    print(f"quality vs {q['reference']}: PSNR {psnr}, max abs err {q['max_abs_err']:.3g}")
    print(f"report: {result.report}")
    return 0
