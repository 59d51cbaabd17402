"""Export a model package of any pix2pixHD size from random weights, for speed benchmarks.

Random weights time exactly like trained ones (the same graph and shapes), so the full-size 512p
generator can be benchmarked without training it; its images are noise, so quality claims come
from a trained package instead. Example (the full-size 512p global generator):

    .venv/bin/python benchmarks/make_package.py -o /tmp/p2phd-512p --ngf 64 \
        --n-downsample 4 --n-blocks 9 --label-nc 35
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", required=True, help="the package directory to write")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--n-downsample", type=int, default=4)
    p.add_argument("--n-blocks", type=int, default=9)
    p.add_argument("--label-nc", type=int, default=35)
    p.add_argument("--no-instance", action="store_true", help="no instance edge channel")
    p.add_argument("--feat-num", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp16", action="store_true", help="also write the fp16 generator variant")
    args = p.parse_args(argv)

    import torch

    from p2phd.export.package_writer import export_package
    from p2phd.train.pix2pixhd.config import ModelConfig
    from p2phd.train.pix2pixhd.networks import build_generator

    torch.manual_seed(args.seed)
    cfg = ModelConfig(
        label_nc=args.label_nc,
        instance=not args.no_instance,
        feat_num=args.feat_num,
        ngf=args.ngf,
        n_downsample_global=args.n_downsample,
        n_blocks_global=args.n_blocks,
    )
    generator = build_generator(cfg)
    params = sum(t.numel() for t in generator.parameters())
    out = export_package(args.output, generator, cfg, fp16=args.fp16)
    print(f"wrote {out}: random weights, {params / 1e6:.1f} M generator parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
