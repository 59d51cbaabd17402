"""`p2phd synth`: write procedural street scenes (label, instance, photo) in the flat layout, or
with --pix2pix, (colour label map, photo) pairs in pix2pix's aligned or split layout."""

from __future__ import annotations

import argparse

from p2phd.common.options import POSITIVE
from p2phd.engine.apps.cli.config_flags import bounded
from p2phd.engine.core.style import SEED_RANGE

HELP = "write synthetic street scenes (labels, instances, photos) for training and demos"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", required=True, help="output directory")
    parser.add_argument(
        "-n", "--num", type=bounded(int, POSITIVE), default=16, help="number of scenes (16)"
    )
    parser.add_argument("--size", default="128x256", help="HxW in pixels (128x256)")
    parser.add_argument(
        "--seed", type=bounded(int, SEED_RANGE), default=0, help="same seed, same bytes (0)"
    )
    parser.add_argument(
        "--phase", default="train", help="folder prefix: <phase>_label/ ... (train)"
    )
    parser.add_argument(
        "--pix2pix",
        choices=("aligned", "split"),
        nargs="?",
        const="aligned",
        help="write pix2pix pairs (A: colour label map, B: photo): aligned, one A|B image per "
        "pair in <phase>/ (default), or split, <phase>A/ and <phase>B/",
    )


def run(args: argparse.Namespace) -> int:
    from p2phd.engine.core.size_policy import parse_size
    from p2phd.train.synth import MIN_SIDE, write_dataset

    if args.pix2pix:
        from p2phd.train.pix2pix.data import write_pix2pix_dataset

        size = parse_size(args.size, MIN_SIDE)
        keys = write_pix2pix_dataset(args.out, args.num, size, args.seed, args.phase, args.pix2pix)
        where = args.phase if args.pix2pix == "aligned" else f"{args.phase}{{A,B}}"
        print(f"wrote {len(keys)} pix2pix pairs to {args.out}/{where}/")
        return 0
    keys = write_dataset(args.out, args.num, parse_size(args.size, MIN_SIDE), args.seed, args.phase)
    print(f"wrote {len(keys)} scenes to {args.out}/{args.phase}_{{label,inst,img}}/")
    return 0
