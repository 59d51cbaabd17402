"""`p2phd export`: turn a checkpoint (ours, or the original pix2pixHD's) into a model package."""

from __future__ import annotations

import argparse

HELP = "export a checkpoint (ours or original pix2pixHD) to a model package, checked for parity"


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT", help="a checkpoint written by p2phd train")
    src.add_argument(
        "--pix2pixhd-g", metavar="NET_G", help="original pix2pixHD generator (latest_net_G.pth)"
    )
    parser.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="package dir")
    parser.add_argument(
        "--features",
        metavar="FILE",
        help="feature clusters: features.npz with --checkpoint; the original's "
        "features_clustered_010.npy (a pickle, loaded only because you name it) with --pix2pixhd-g",
    )
    parser.add_argument("--no-fp16", action="store_true", help="skip the fp16 generator variant")
    orig = parser.add_argument_group("original pix2pixHD options (with --pix2pixhd-g)")
    orig.add_argument("--pix2pixhd-e", metavar="NET_E", help="original encoder (latest_net_E.pth)")
    orig.add_argument("--netG", choices=("global", "local"), default="global")
    orig.add_argument("--ngf", type=int, default=64)
    orig.add_argument("--label-nc", type=int, default=35)
    orig.add_argument("--no-instance", action="store_true", help="trained without instance maps")
    orig.add_argument(
        "--feat-num",
        type=int,
        default=None,
        help="feature channels (default: from the encoder or cluster file if given, else 0)",
    )
    orig.add_argument("--n-downsample-global", type=int, default=4)
    orig.add_argument("--n-blocks-global", type=int, default=9)
    orig.add_argument("--n-local-enhancers", type=int, default=1)
    orig.add_argument("--n-blocks-local", type=int, default=3)
    orig.add_argument("--nef", type=int, default=16)
    orig.add_argument("--n-downsample-E", type=int, default=4)


def run(args: argparse.Namespace) -> int:
    from p2phd.engine.errors import ConfigError
    from p2phd.export.checkpoint_export import export_checkpoint, read_features_npz

    if args.checkpoint:
        if args.pix2pixhd_e:
            raise ConfigError("--pix2pixhd-e goes with --pix2pixhd-g, not --checkpoint")
        from p2phd.train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.checkpoint)
        features = read_features_npz(args.features) if args.features else None
        source = args.checkpoint
    else:
        from p2phd.train.model_config import ModelConfig
        from p2phd.train.pix2pixhd_checkpoint import infer_feat_num, load_pix2pixhd

        feat_num = args.feat_num
        if feat_num is None:
            feat_num = infer_feat_num(args.pix2pixhd_e, args.features)
        cfg = ModelConfig(
            label_nc=args.label_nc,
            instance=not args.no_instance,
            feat_num=feat_num,
            netG=args.netG,
            ngf=args.ngf,
            n_downsample_global=args.n_downsample_global,
            n_blocks_global=args.n_blocks_global,
            n_local_enhancers=args.n_local_enhancers,
            n_blocks_local=args.n_blocks_local,
            nef=args.nef,
            n_downsample_E=args.n_downsample_E,
        )
        ckpt = load_pix2pixhd(cfg, args.pix2pixhd_g, args.pix2pixhd_e, args.features)
        features = None
        source = args.pix2pixhd_g
    from p2phd.engine.package import ModelPackage

    out = export_checkpoint(ckpt, args.output, features, source=source, fp16=not args.no_fp16)
    parity = ModelPackage(out).manifest.parity
    errors = ", ".join(f"{k} {v:.2g}" for k, v in parity.items())
    print(f"wrote {out} (relative error vs PyTorch: {errors}); see: p2phd info {out}")
    return 0
