"""PSNR of the default model against the synthetic ground truth on held-out scenes, next to an
untrained model of the same architecture (so the number says what training bought).

Held-out scenes come from a seed the training data never used. The generator gets instance
features two ways: encoded from the true photo (the encoder's upper bound), and sampled per
instance from the k-means centres in features.npz (what the demo does without a photo).

    .venv/bin/python benchmarks/default_model_quality.py \
        [--model models/default] [-n 32] [-o benchmarks/results/default_model_quality.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from p2phd.engine.atomic import atomic_write_bytes
from p2phd.train.checkpoint import load_checkpoint
from p2phd.train.data import PairedDataset, collate
from p2phd.train.input_encoding import encode_input, sample_features
from p2phd.train.networks import build_encoder, build_generator
from p2phd.train.synth import write_dataset
from p2phd.train.trainer import init_weights

HELD_OUT_SEED = 2000


def psnr(fake: torch.Tensor, real: torch.Tensor) -> list[float]:
    """Per-image PSNR in dB of [-1,1] images, measured on their 8-bit versions."""
    to8 = lambda t: ((t.float().clamp(-1, 1) + 1) * 127.5).round()  # noqa: E731
    mse = ((to8(fake) - to8(real)) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))).tolist()


@torch.no_grad()
def evaluate(generator, encoder, cfg, batch, clusters=None, seed: int = 0) -> list[float]:
    if clusters is None:
        features = encoder(batch["image"], batch["instance"])
    else:
        gen = torch.Generator().manual_seed(seed)
        features = sample_features(batch["instance"], clusters, cfg.feat_num, gen)
    fake = generator(encode_input(cfg, batch["label"], batch["instance"], features))
    return psnr(fake, batch["image"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/default", help="checkpoint.pt + features.npz dir")
    p.add_argument("-n", type=int, default=32, help="held-out scenes (32)")
    p.add_argument("-o", "--output", default="benchmarks/results/default_model_quality.json")
    args = p.parse_args(argv)

    ckpt = load_checkpoint(Path(args.model) / "checkpoint.pt")
    cfg = ckpt.model_config
    size = tuple(ckpt.train_config["size"])
    with np.load(Path(args.model) / "features.npz", allow_pickle=False) as npz:
        clusters = {int(k.removeprefix("class_")): npz[k] for k in npz.files}

    trained_g, trained_e = build_generator(cfg), build_encoder(cfg)
    trained_g.load_state_dict(ckpt.generator_state)
    trained_e.load_state_dict(ckpt.encoder_state)
    torch.manual_seed(0)
    untrained_g, untrained_e = build_generator(cfg), build_encoder(cfg)
    untrained_g.apply(init_weights)
    untrained_e.apply(init_weights)
    for net in (trained_g, trained_e, untrained_g, untrained_e):
        net.eval()

    scores: dict[str, list[float]] = {
        "trained, features encoded from the true photo": [],
        "trained, features sampled from features.npz": [],
        "untrained, features encoded from the true photo": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(tmp, args.n, size, seed=HELD_OUT_SEED)
        data = PairedDataset(tmp, cfg.size_multiple, size, label_nc=cfg.label_nc)
        for start in range(0, len(data), 8):
            batch = collate([data[i] for i in range(start, min(len(data), start + 8))])
            keys = list(scores)
            scores[keys[0]] += evaluate(trained_g, trained_e, cfg, batch)
            scores[keys[1]] += evaluate(trained_g, trained_e, cfg, batch, clusters, seed=start)
            scores[keys[2]] += evaluate(untrained_g, untrained_e, cfg, batch)

    result = {
        "what": "mean PSNR (dB, 8-bit) against the synthetic ground-truth photo",
        "model": str(Path(args.model) / "checkpoint.pt"),
        "trained_iterations": ckpt.iteration,
        "held_out": {"scenes": args.n, "size": list(size), "synth_seed": HELD_OUT_SEED},
        "psnr_db": {k: round(float(np.mean(v)), 2) for k, v in scores.items()},
        "psnr_db_std": {k: round(float(np.std(v)), 2) for k, v in scores.items()},
    }
    text = json.dumps(result, indent=2) + "\n"
    atomic_write_bytes(args.output, text.encode())
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
