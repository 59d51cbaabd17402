"""`p2phd cluster`: k-means over a trained encoder's per-instance features -> features.npz."""

from __future__ import annotations

import argparse

HELP = "cluster a trained encoder's instance features per class into features.npz"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a p2phd checkpoint with an encoder")
    parser.add_argument("--data", required=True, help="dataset root (Cityscapes or flat layout)")
    parser.add_argument("-k", type=int, default=10, help="centres per class (10)")
    parser.add_argument("-o", "--out", default="features.npz", help="output (features.npz)")
    parser.add_argument("--phase", default="train", help="dataset phase (train)")
    parser.add_argument(
        "--min-area",
        type=float,
        default=None,
        help="skip instances covering at most this fraction of the image (original: 1/64)",
    )


def run(args: argparse.Namespace) -> int:
    from p2phd.train.cluster import ORIGINAL_MIN_AREA, cluster

    min_area = ORIGINAL_MIN_AREA if args.min_area is None else args.min_area
    centres = cluster(
        args.checkpoint, args.data, args.k, args.out, phase=args.phase, min_area=min_area
    )
    sizes = ", ".join(f"{c}:{len(v)}" for c, v in centres.items())
    print(f"wrote {args.out}: centres per class {sizes}")
    return 0
