"""`p2phd train`: train a pix2pixHD model (or, with `model.family: pix2pix` in the config, a
pix2pix model) from a YAML config with command-line overrides."""

from __future__ import annotations

import argparse

HELP = "train a pix2pixHD or pix2pix model (YAML config, --set overrides, --resume)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML training config (see configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, dotted for the model (e.g. --set model.ngf=8); repeatable",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue exactly from <output>/latest.pt"
    )
    parser.add_argument(
        "--weights-only",
        metavar="PATH",
        help="afterwards also write a slim copy of latest.pt (configs + G/E weights) to PATH",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from p2phd.train.checkpoint import strip_checkpoint
    from p2phd.train.train_config import load_train_config, read_config_dict

    raw = read_config_dict(args.config, args.overrides)
    if isinstance(raw.get("model"), dict) and raw["model"].get("family") == "pix2pix":
        from p2phd.common.errors import ConfigError
        from p2phd.train.pix2pix.trainer import Pix2PixTrainConfig, Pix2PixTrainer

        if args.resume:
            raise ConfigError("--resume is not supported for pix2pix runs; start a new run")
        cfg = Pix2PixTrainConfig.from_json(raw)
        trainer = Pix2PixTrainer(cfg)
    else:
        from p2phd.train.pix2pixhd.trainer import Trainer

        cfg = load_train_config(args.config, args.overrides)
        trainer = Trainer(cfg, resume=args.resume)
    trainer.run()
    latest = Path(cfg.output) / "latest.pt"
    print(f"trained {trainer.iteration} iterations; checkpoint {latest}")
    if args.weights_only:
        strip_checkpoint(latest, args.weights_only)
        print(f"weights-only checkpoint {args.weights_only}")
    return 0
