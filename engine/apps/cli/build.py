"""`p2phd build`: build and cache an engine for a model package, and write its quality report."""

from __future__ import annotations

import argparse

from p2phd.common.errors import BackendUnavailable, ConfigError
from p2phd.engine.backends import built_names, precisions

HELP = "build and cache a backend's engine and measure its quality against fp32"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="the model package")
    parser.add_argument("--backend", required=True, choices=built_names())
    parser.add_argument("--precision", default="fp32", choices=precisions())
    parser.add_argument(
        "--calibration",
        metavar="DIR",
        help="int8: label maps to calibrate on (a folder or list file of *_labelIds.png with "
        "their *_instanceIds.png, paired as p2phd render pairs them; at most 64, spread evenly "
        "over a larger folder, fewer where their inputs would pass 2 GiB; every 4th is held "
        "out for the quality gate), or 'synthetic' for a model trained on p2phd synth scenes",
    )
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
    from p2phd.engine.core.build import build_engine, check_sizes, parse_batch
    from p2phd.engine.core.package import ModelPackage
    from p2phd.engine.core.size_policy import parse_size

    options = EngineOptions(parse_batch(args.batch), [parse_size(s) for s in args.size])
    if args.precision == "int8":  # what would refuse the build, before calibrating for it
        _check_int8_runs(args.backend)
        check_sizes(options, ModelPackage(args.model_dir, verify=False).manifest.size_multiple)
    held_out = _calibrate(args, options) if args.precision == "int8" else None
    if args.calibration and held_out is None:
        raise ConfigError("--calibration is for --precision int8")
    result = build_engine(args.model_dir, args.backend, args.precision, options, held_out)
    q = result.quality
    psnr = "identical" if q["identical_uint8"] else f"{q['psnr_db']} dB"
    print(f"{result.key}: built {len(result.files)} engine file(s)")
    for f in result.files:
        print(f"  {f}")
    print(f"quality vs {q['reference']}: PSNR {psnr}, max abs err {q['max_abs_err']:.3g}")
    print(f"report: {result.report}")
    if "gate" not in q:
        return 0
    print(f"int8 gate {q['gate']}: {q['gate_numbers']}")
    return 0 if q["gate"] == "passed" else 1


def _check_int8_runs(backend: str) -> None:
    """BackendUnavailable when `backend` cannot run int8 here, before calibration rewrites the
    package's int8 graph and manifest for nothing."""
    from p2phd.engine.backends import backend_class

    cls = backend_class(backend)
    reason = cls.availability() or cls.reduced_unsupported("int8")
    if reason:
        raise BackendUnavailable(f"backend {backend}: {reason}")


def _calibrate(args: argparse.Namespace, options):
    """Quantize the package's generator on --calibration's maps (at the first --size, default
    the quality report's), and return the held-out maps the gate is measured on."""
    from p2phd.engine.core.build import QUALITY_SIZE, HeldOut
    from p2phd.export.int8 import calibrate

    if not args.calibration:
        raise ConfigError(
            "--precision int8 needs --calibration DIR: label maps like those it will render "
            "(*_labelIds.png with their *_instanceIds.png; 'synthetic' for a model trained on "
            "p2phd synth scenes)"
        )
    if not options.sizes:
        options.sizes = [QUALITY_SIZE]
    h, w = options.sizes[0]
    cal = calibrate(args.model_dir, args.calibration, (h, w))
    print(
        f"int8: calibrated on {len(cal.calibrate)} maps of {cal.source}; "
        f"gate on {len(cal.held_out)} held out"
    )
    keys = ", ".join(s.key for s in cal.held_out)
    return HeldOut(cal.held_out_batch(), f"{len(cal.held_out)} held-out maps at {h}x{w}: {keys}")
