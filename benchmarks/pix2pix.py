"""pix2pix/CycleGAN generators at full size through the engine: export time, parity, and
per-image latency of each CPU backend at 256x256 (the size they are trained at).

Random weights in the original layout (BatchNorm statistics randomised), so export and inference
cost what they cost for a trained `latest_net_G.pth`. Packages go to a temporary directory.
Writes benchmarks/results/pix2pix.json with the share of the CPUs other processes took while it
ran (a run where they took over 10% is flagged provisional; the load average would count this
benchmark's own threads).

    .venv/bin/python benchmarks/pix2pix.py [--iters 20] [--size 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _shared import write_result

MODELS = (("unet_256", "batch", "image-stats"), ("resnet_9blocks", "instance", "image-stats"))
ENGINES = (("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("torch", "fp32"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=20, help="timed images per engine (20)")
    p.add_argument("--size", type=int, default=256, help="square image side (256)")
    p.add_argument("-o", "--output", default=str(Path(__file__).parent / "results/pix2pix.json"))
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from torch import nn

    from p2phd.common.errors import P2PHDError
    from p2phd.engine.apps.bench.harness import OtherLoad
    from p2phd.engine.backends.base import EngineOptions
    from p2phd.engine.core.build import build_engine
    from p2phd.engine.core.package import ModelPackage
    from p2phd.engine.core.quality import synthetic_images
    from p2phd.engine.core.renderer import Renderer
    from p2phd.export.checkpoint_export import export_checkpoint
    from p2phd.train.pix2pix.config import Pix2PixConfig
    from p2phd.train.pix2pix.networks import build_generator
    from p2phd.train.pix2pix.original_checkpoint import load_pix2pix

    others = OtherLoad()
    results: dict = {"size": args.size, "iters": args.iters, "cpus": os.cpu_count(), "models": {}}
    tmp = Path(tempfile.mkdtemp(prefix="p2phd-pix2pix-bench-"))
    image = synthetic_images(1, args.size, args.size)
    try:
        for net_g, norm, bn_mode in MODELS:
            torch.manual_seed(0)
            cfg = Pix2PixConfig(netG=net_g, norm=norm, bn_mode=bn_mode)
            net = build_generator(cfg, "eval")
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.3, 0.3)
                    m.running_var.uniform_(0.5, 2.0)
            torch.save(net.state_dict(), tmp / f"{net_g}.pth")
            start = time.perf_counter()
            package = export_checkpoint(load_pix2pix(cfg, tmp / f"{net_g}.pth"), tmp / net_g)
            entry = {
                "norm": norm,
                "bn_mode": bn_mode,
                "params_m": round(sum(t.numel() for t in net.parameters()) / 1e6, 3),
                "export_s": round(time.perf_counter() - start, 1),
                "parity": ModelPackage(package).manifest.parity,
                "latency_ms": {},
                "quality": {},
            }
            for backend, precision in ENGINES:
                key = f"{backend}:{precision}"
                try:
                    if backend != "torch":
                        options = EngineOptions(sizes=[(args.size, args.size)])
                        q = build_engine(package, backend, precision, options).quality
                        entry["quality"][key] = q["psnr_db"]
                    with Renderer(package, backend, precision) as renderer:
                        for _ in range(3):
                            renderer.render_images(image)
                        times = []
                        for _ in range(args.iters):
                            t = time.perf_counter()
                            renderer.render_images(image)
                            times.append((time.perf_counter() - t) * 1e3)
                    entry["latency_ms"][key] = round(statistics.median(times), 2)
                except P2PHDError as e:
                    entry["latency_ms"][key] = f"unavailable: {e}"
                print(f"{net_g} {key}: {entry['latency_ms'][key]} ms", flush=True)
            results["models"][net_g] = entry
            del net
            np.random.seed(0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["other_load"] = others.measure()
    results["provisional"] = (results["other_load"]["other_cpu_share"] or 0) > 0.1
    write_result(args.output, results, echo=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
