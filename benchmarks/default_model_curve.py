"""The default model's learning curve: held-out PSNR at every kept checkpoint of a training run.

Each `iter_*.pt` that `keep_checkpoints` left in the run directory is scored on the held-out
synthetic scenes of default_model_quality.py (same seed, size and count), with the instance
features encoded from the true photo, through the training code's own input path (encoder,
instance-wise pooling, one-hot + edges + features, generator; fp32). Writes the curve as JSON
and as a plot, so the ceiling of a recipe is visible before anyone trains it longer.

    .venv/bin/python benchmarks/default_model_curve.py [--run runs/default] [-n 32] \
        [-o benchmarks/results/default_model_curve.json] [--plot models/default/learning_curve.png]
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
import torch
from _shared import write_result
from default_model_quality import HELD_OUT_SEED
from tqdm import tqdm

from p2phd.common.atomic import atomic_write_bytes
from p2phd.engine.core.quality import psnr_db
from p2phd.train.checkpoint import Checkpoint, load_checkpoint
from p2phd.train.pix2pixhd.data import PairedDataset, collate
from p2phd.train.pix2pixhd.input_encoding import encode_input
from p2phd.train.pix2pixhd.networks import build_encoder, build_generator
from p2phd.train.pix2pixhd.trainer import to_uint8
from p2phd.train.synth import write_dataset

SIZE = (128, 256)


@torch.no_grad()
def checkpoint_psnr(ckpt: Checkpoint, batch: dict) -> float:
    """Mean PSNR of one checkpoint's generator on `batch`, features encoded from the photos."""
    cfg = ckpt.model_config
    generator = build_generator(cfg).eval()
    generator.load_state_dict(ckpt.generator_state)
    features = None
    if cfg.feat_num > 0:
        encoder = build_encoder(cfg).eval()
        encoder.load_state_dict(ckpt.encoder_state)
        features = encoder(batch["image"], batch["instance"])
    fake = generator(encode_input(cfg, batch["label"], batch["instance"], features))
    rendered, truth = to_uint8(fake).numpy(), to_uint8(batch["image"]).numpy()
    return float(np.mean([psnr_db(t, r) for t, r in zip(truth, rendered, strict=True)]))


def instance_mean_psnr(batch: dict) -> float:
    """The PSNR of painting every instance in its true mean colour: what per-instance features
    alone could explain, the context for a curve (the rest is layout-driven structure)."""
    truth = to_uint8(batch["image"]).numpy().astype(np.float32)
    scores = []
    for photo, ids in zip(truth, batch["instance"][:, 0].numpy(), strict=True):
        flat, out = ids.ravel(), np.empty_like(photo).reshape(-1, 3)
        _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        for c in range(3):
            means = np.bincount(inverse, photo[..., c].ravel()) / counts
            out[:, c] = means[inverse]
        scores.append(psnr_db(photo.astype(np.uint8), np.rint(out).reshape(photo.shape)))
    return float(np.mean(scores))


def plot(curve: list[dict], oracle_db: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([p["iteration"] for p in curve], [p["psnr_db"] for p in curve], marker="o")
    ax.axhline(oracle_db, color="grey", linestyle="--", label="each instance in its mean colour")
    ax.legend(loc="lower right")
    ax.set_xlabel("training iteration")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.set_title("models/default: PSNR vs the synthetic photo, features encoded")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=Path("runs/default"), help="training run dir")
    p.add_argument("-n", type=int, default=32, help="held-out scenes (32)")
    p.add_argument("-o", "--output", default="benchmarks/results/default_model_curve.json")
    p.add_argument("--plot", type=Path, default=Path("models/default/learning_curve.png"))
    args = p.parse_args(argv)

    checkpoints = sorted(args.run.glob("iter_*.pt"))
    if not checkpoints:
        p.error(f"{args.run}: no iter_*.pt checkpoints (train with keep_checkpoints: true)")
    cfg = load_checkpoint(checkpoints[0]).model_config
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(tmp, args.n, SIZE, seed=HELD_OUT_SEED)
        data = PairedDataset(tmp, cfg.size_multiple, SIZE, instance=True, label_nc=cfg.label_nc)
        batch = collate([data.load(i) for i in range(len(data))])
    oracle_db = instance_mean_psnr(batch)
    curve = []
    for path in tqdm(checkpoints, desc="checkpoints", unit="ckpt"):
        ckpt = load_checkpoint(path)
        psnr = checkpoint_psnr(ckpt, batch)
        curve.append({"iteration": int(path.stem.split("_")[1]), "psnr_db": round(psnr, 2)})
    result = {
        "what": "held-out PSNR (dB, 8-bit) against the synthetic photo per training checkpoint",
        "run": str(args.run),
        "train_config": ckpt.train_config,  # the last checkpoint's
        "held_out": {"scenes": args.n, "size": list(SIZE), "synth_seed": HELD_OUT_SEED},
        "features": "encoded from the true photo; torch fp32, the training code's input path",
        "instance_mean_colour_psnr_db": round(oracle_db, 2),
        "curve": curve,
    }
    write_result(args.output, result)
    plot(curve, oracle_db, args.plot)
    print("\n".join(f"{p['iteration']:>7} {p['psnr_db']:6.2f} dB" for p in curve))
    print(f"instance mean colours: {oracle_db:.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
