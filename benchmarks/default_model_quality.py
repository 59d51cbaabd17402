"""PSNR of the default model package against the synthetic ground truth on held-out scenes, next
to an untrained model of the same architecture (so the number says what training bought).

Held-out scenes come from a seed the training data never used. Both models render through the
engine (the fp32 torch reference backend, so the numbers are the network's, not a precision's).
Instance features come two ways: encoded from the true photo (the encoder's upper bound), and
sampled per instance from the package's k-means centres (what the demo does without a photo).

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
from _shared import write_result
from PIL import Image

from p2phd.common.decode import decode_pair
from p2phd.common.pairing import find_pairs
from p2phd.engine.core.quality import psnr_db
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style
from p2phd.export.package_writer import export_package
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.networks import build_encoder, build_generator
from p2phd.train.pix2pixhd.trainer import init_weights
from p2phd.train.synth import write_dataset

HELD_OUT_SEED = 2000


def untrained_package(cfg: ModelConfig, out: Path) -> Path:
    """A package of the same architecture with pix2pixHD's initial weights (seed 0)."""
    torch.manual_seed(0)
    generator, encoder = build_generator(cfg), build_encoder(cfg)
    generator.apply(init_weights)
    encoder.apply(init_weights)
    return export_package(out, generator.eval(), cfg, encoder.eval(), fp16=False)


def scores(model: Path, scenes: list[tuple], sampled: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"encoded": [], "sampled": []}
    with Renderer(model, backend="torch", precision="fp32") as r:
        for i, (labels, instances, photo) in enumerate(scenes):
            encoded = r.render(labels, instances, Style(reference=photo))[0]
            out["encoded"].append(psnr_db(photo, encoded))
            if sampled:
                drawn = r.render(labels, instances, Style(seed=i))[0]
                out["sampled"].append(psnr_db(photo, drawn))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("models/default"), help="model package")
    p.add_argument("-n", type=int, default=32, help="held-out scenes (32)")
    p.add_argument("-o", "--output", default="benchmarks/results/default_model_quality.json")
    args = p.parse_args(argv)

    manifest = json.loads((args.model / "manifest.json").read_text())
    cfg = ModelConfig.from_json(manifest["architecture"])
    with tempfile.TemporaryDirectory() as tmp:
        size = (128, 256)
        write_dataset(tmp, args.n, size, seed=HELD_OUT_SEED)
        scenes = []
        for pair in find_pairs(tmp):
            labels, instances = decode_pair(pair.label, pair.instance, cfg.label_nc)
            scenes.append((labels, instances, np.asarray(Image.open(pair.image).convert("RGB"))))
        trained = scores(args.model, scenes, sampled=True)
        untrained = scores(untrained_package(cfg, Path(tmp) / "untrained"), scenes, sampled=False)

    rows = {
        "trained, features encoded from the true photo": trained["encoded"],
        "trained, features sampled from features.npz": trained["sampled"],
        "untrained, features encoded from the true photo": untrained["encoded"],
    }
    result = {
        "what": "mean PSNR (dB, 8-bit) against the synthetic ground-truth photo",
        "model": str(args.model),
        "renderer": "p2phd Renderer, torch backend, fp32",
        "held_out": {"scenes": args.n, "size": list(size), "synth_seed": HELD_OUT_SEED},
        "psnr_db": {k: round(float(np.mean(v)), 2) for k, v in rows.items()},
        "psnr_db_std": {k: round(float(np.std(v)), 2) for k, v in rows.items()},
    }
    write_result(args.output, result, echo=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
