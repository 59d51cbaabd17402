"""Export the full-size 512p pix2pixHD generator (ngf 64, 4 downsamplings, 9 residual blocks,
label_nc 35 + 1 edge channel: ~730 MB of fp32 weights) and print the time and peak memory.

Random weights: the export path (ONNX, parity in ONNX Runtime, fp16 variant, hashing) costs the
same as for trained ones. The package goes to a temporary directory that is deleted afterwards
unless -o is given; never write it into the repository.

    .venv/bin/python benchmarks/export_full_size.py [--no-fp16] [-o /tmp/p2phd-512p]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", help="keep the package here (default: a deleted temp dir)")
    p.add_argument("--no-fp16", action="store_true", help="skip the fp16 generator variant")
    args = p.parse_args(argv)

    import torch

    from p2phd.engine.core.package import ModelPackage
    from p2phd.export.package_writer import export_package
    from p2phd.train.pix2pixhd.config import ModelConfig
    from p2phd.train.pix2pixhd.networks import build_generator

    torch.manual_seed(0)
    cfg = ModelConfig(label_nc=35, instance=True, ngf=64, n_downsample_global=4, n_blocks_global=9)
    generator = build_generator(cfg)
    params = sum(t.numel() for t in generator.parameters())
    before = peak_rss_mb()
    out = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="p2phd-512p-"))
    try:
        start = time.perf_counter()
        export_package(out / "model", generator, cfg, fp16=not args.no_fp16)
        seconds = time.perf_counter() - start
        pkg = ModelPackage(out / "model")
        sizes = {n: (out / "model" / n).stat().st_size / 2**20 for n in pkg.manifest.files}
    finally:
        if not args.output:
            shutil.rmtree(out, ignore_errors=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"generator: {params / 1e6:.1f} M parameters ({params * 4 / 2**20:.0f} MiB fp32)")
    print(f"export (ONNX + parity at 2 sizes x batch 2 + fp16 variant + hashes): {seconds:.1f} s")
    print(f"peak RSS: {peak_rss_mb():.0f} MiB (after building the network: {before:.0f} MiB)")
    for name, mib in sizes.items():
        print(f"  {name}: {mib:.1f} MiB")
    errors = ", ".join(f"{k} {v:.2g}" for k, v in pkg.manifest.parity.items())
    print(f"relative error vs PyTorch: {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
