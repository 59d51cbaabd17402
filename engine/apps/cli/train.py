"""`p2phd train`: train a model of the family the config's `model.family` names (pix2pixHD when
it names none, or pix2pix) from a YAML config with command-line overrides."""

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

    from p2phd.train import families
    from p2phd.train.checkpoint import strip_checkpoint
    from p2phd.train.config_file import read_config_dict

    raw = read_config_dict(args.config, args.overrides)
    trainer = families.of_training_config(raw).make_trainer(raw, args.resume)
    trainer.run()
    latest = Path(trainer.cfg.output) / "latest.pt"
    print(f"trained {trainer.iteration} iterations; checkpoint {latest}")
    if args.weights_only:
        strip_checkpoint(latest, args.weights_only)
        print(f"weights-only checkpoint {args.weights_only}")
    return 0
