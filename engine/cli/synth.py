"""`p2phd synth`: write procedural street scenes (label, instance, photo) in the flat layout."""

from __future__ import annotations

import argparse

HELP = "write synthetic street scenes (labels, instances, photos) for training and demos"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", required=True, help="output directory")
    parser.add_argument("-n", "--num", type=int, default=16, help="number of scenes (16)")
    parser.add_argument("--size", default="128x256", help="HxW in pixels (128x256)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (0)")
    parser.add_argument(
        "--phase", default="train", help="folder prefix: <phase>_label/ ... (train)"
    )


def run(args: argparse.Namespace) -> int:
    from p2phd.train.synth import parse_size, write_dataset

    keys = write_dataset(args.out, args.num, parse_size(args.size), args.seed, args.phase)
    print(f"wrote {len(keys)} scenes to {args.out}/{args.phase}_{{label,inst,img}}/")
    return 0
