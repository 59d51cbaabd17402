"""`p2phd doctor`: what this machine can run (GPU, driver, CUDA, TensorRT, ONNX Runtime, OpenVINO,
CPU instructions, CUDA kernels) and, for anything broken, what to install or upgrade."""

from __future__ import annotations

import argparse

HELP = "check the GPU/CPU stack: versions, what runs, and what to install or upgrade"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--require-gpu",
        action="store_true",
        help="exit 1 unless the GPU path (driver, CUDA runtime, TensorRT, CUDA kernels) works",
    )


def run(args: argparse.Namespace) -> int:
    """Exit 0 when the CPU path works (and, with --require-gpu, the GPU path too), else 1."""
    from p2phd.engine.apps import doctor

    facts = doctor.collect()
    print(doctor.report(facts))
    cpu = doctor.cpu_path_works(facts)
    gpu_problems = [f.name for f in facts if f.gpu and f.problem]
    print(f"CPU path: {'works' if cpu else 'BROKEN'}")
    print(f"GPU path: {'works' if not gpu_problems else 'not usable: ' + ', '.join(gpu_problems)}")
    return 0 if cpu and not (args.require_gpu and gpu_problems) else 1
