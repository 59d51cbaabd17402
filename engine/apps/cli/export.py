"""`p2phd export`: turn a checkpoint (ours, the original pix2pixHD's, or a pix2pix/CycleGAN
generator) into a model package."""

from __future__ import annotations

import argparse

# The pix2pix generators (kept here, not imported, so `p2phd --help` stays light).
NET_GS = ("unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks")

HELP = "export a checkpoint (ours, pix2pixHD or pix2pix/CycleGAN) to a model package, checked"


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT", help="a checkpoint written by p2phd train")
    src.add_argument(
        "--pix2pixhd-g", metavar="NET_G", help="original pix2pixHD generator (latest_net_G.pth)"
    )
    src.add_argument(
        "--pix2pix-g",
        metavar="NET_G",
        help="pix2pix/CycleGAN generator (latest_net_G.pth, latest_net_G_A.pth)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="package dir")
    parser.add_argument(
        "--features",
        metavar="FILE",
        help="feature clusters: features.npz with --checkpoint; the original's "
        "features_clustered_010.npy (a pickle, loaded only because you name it) with --pix2pixhd-g",
    )
    parser.add_argument("--no-fp16", action="store_true", help="skip the fp16 generator variant")
    parser.add_argument(
        "--thing-classes",
        metavar="IDS",
        help="the class ids the model was trained with as instances, comma-separated (e.g. "
        "11,24,26); the manifest marks exactly these as things, which the editor and "
        "GetModelInfo read (default: the class table's own, Cityscapes' for label_nc 35)",
    )
    orig = parser.add_argument_group("original pix2pixHD options (with --pix2pixhd-g)")
    orig.add_argument("--pix2pixhd-e", metavar="NET_E", help="original encoder (latest_net_E.pth)")
    orig.add_argument(
        "--netG",
        choices=("global", "local", *NET_GS),
        help="pix2pixHD: global (default) or local; pix2pix: " + ", ".join(NET_GS),
    )
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
    p2p = parser.add_argument_group("pix2pix/CycleGAN options (with --pix2pix-g and --netG)")
    p2p.add_argument(
        "--norm", choices=("batch", "instance"), help="pix2pix: batch, CycleGAN: instance"
    )
    p2p.add_argument(
        "--bn-mode",
        choices=("image-stats", "eval"),
        default="image-stats",
        help="BatchNorm at inference: each image's own statistics (default, as the original "
        "test script) or the running statistics (its --eval); dropout is always off",
    )
    p2p.add_argument("--input-nc", type=int, default=3)
    p2p.add_argument("--output-nc", type=int, default=3)


def run(args: argparse.Namespace) -> int:
    from p2phd.common.errors import ConfigError
    from p2phd.export.checkpoint_export import export_checkpoint, read_features_npz
    from p2phd.train import families

    features = None
    if args.pix2pix_g:
        cfg, source = _pix2pix_config(args), args.pix2pix_g
    elif args.netG in NET_GS:
        raise ConfigError(f"--netG {args.netG} is a pix2pix generator: use it with --pix2pix-g")
    elif args.checkpoint:
        if args.pix2pixhd_e:
            raise ConfigError("--pix2pixhd-e goes with --pix2pixhd-g, not --checkpoint")
        from p2phd.train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.checkpoint)
        features = read_features_npz(args.features) if args.features else None
        source = args.checkpoint
    else:
        cfg, source = _pix2pixhd_config(args), args.pix2pixhd_g
    if not args.checkpoint:  # the original code's files, read by the family's loader
        ckpt = families.of(cfg).load_original(cfg, source, args.pix2pixhd_e, args.features)
    classes = _classes(ckpt.model_config, args.thing_classes)
    out = export_checkpoint(
        ckpt, args.output, features, source=source, fp16=not args.no_fp16, classes=classes
    )
    return _report(out)


def _classes(cfg, thing_classes: str | None):
    """The class table with --thing-classes applied; None (the default table) without it."""
    from p2phd.common.classes import default_classes, parse_class_ids, with_things
    from p2phd.common.errors import ConfigError

    if thing_classes is None:
        return None
    label_nc = getattr(cfg, "label_nc", None)
    if label_nc is None:
        raise ConfigError("--thing-classes applies to label-map models, not an image-input one")
    return with_things(default_classes(label_nc), parse_class_ids(thing_classes, label_nc))


def _pix2pixhd_config(args: argparse.Namespace):
    from p2phd.train.pix2pixhd.config import ModelConfig
    from p2phd.train.pix2pixhd.original_checkpoint import infer_feat_num

    feat_num = args.feat_num
    if feat_num is None:
        feat_num = infer_feat_num(args.pix2pixhd_e, args.features)
    return ModelConfig(
        label_nc=args.label_nc,
        instance=not args.no_instance,
        feat_num=feat_num,
        netG=args.netG or "global",
        ngf=args.ngf,
        n_downsample_global=args.n_downsample_global,
        n_blocks_global=args.n_blocks_global,
        n_local_enhancers=args.n_local_enhancers,
        n_blocks_local=args.n_blocks_local,
        nef=args.nef,
        n_downsample_E=args.n_downsample_E,
    )


def _pix2pix_config(args: argparse.Namespace):
    from p2phd.common.errors import ConfigError
    from p2phd.train.pix2pix.config import Pix2PixConfig

    if args.netG not in NET_GS or args.norm is None:
        raise ConfigError(
            f"--pix2pix-g needs --netG ({', '.join(NET_GS)}) and --norm (batch or instance)"
        )
    if args.features or args.pix2pixhd_e:
        raise ConfigError("--features and --pix2pixhd-e do not apply to a pix2pix generator")
    return Pix2PixConfig(
        netG=args.netG,
        norm=args.norm,
        ngf=args.ngf,
        input_nc=args.input_nc,
        output_nc=args.output_nc,
        bn_mode=args.bn_mode,
    )


def _report(out) -> int:
    from p2phd.engine.core.package import ModelPackage

    parity = ModelPackage(out).manifest.parity
    errors = ", ".join(f"{k} {v:.2g}" for k, v in parity.items())
    print(f"wrote {out} (relative error vs PyTorch: {errors}); see: p2phd info {out}")
    return 0
