"""`p2phd render` throughput against the engine alone: same model, backend, precision and batch.

Writes N synthetic street scenes (`p2phd synth`) as PNG files, then, with one warm Renderer:
- engine alone: `Renderer.render` over the already-decoded maps in batches of B (no file I/O);
- the batch renderer: the pipeline `p2phd render` runs (decode threads, same-size batching,
  inference, PNG encode and atomic writes in threads) over the files, into a fresh directory.
Rounds alternate between the two, so a slow spell on the machine hits both; the medians and their
ratio (target: render >= 90% of the engine alone) go to benchmarks/results/render_throughput.json.

    .venv/bin/python benchmarks/render_throughput.py --model models/default --size 256x512 --batch 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _shared import RESULTS, write_result

DEFAULT_OUT = RESULTS / "render_throughput.json"


def engine_alone(renderer, labels: np.ndarray, instances: np.ndarray, batch: int) -> float:
    """images/s of Renderer.render over decoded maps, batch by batch, seeds as `render` uses."""
    from p2phd.engine.core.style import Style

    t = time.perf_counter()
    for i in range(0, len(labels), batch):
        styles = [Style(seed=0)] * len(labels[i : i + batch])
        renderer.render(labels[i : i + batch], instances[i : i + batch], styles)
    return len(labels) / (time.perf_counter() - t)


def batch_render(renderer, data: Path, out: Path, batch: int, workers: int) -> float:
    """images/s of the `p2phd render` pipeline over the PNG files (its own summary's figure)."""
    from p2phd.engine.batch.render import BatchRenderer, list_images, plan_jobs

    jobs, failures = plan_jobs(
        list_images(data / "train_label"), out, instances=list_images(data / "train_inst")
    )
    summary = BatchRenderer(
        renderer.render, renderer.manifest.label_nc, batch=batch, workers=workers
    ).run(jobs)
    if failures or summary.failed or summary.rendered != len(jobs):
        raise SystemExit(f"render failed: {failures + summary.failed}")
    return summary.throughput


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/default")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--size", default="256x512", help="HxW of the scenes")
    p.add_argument("-n", "--num", type=int, default=64, help="scenes per round")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("-o", "--output", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)

    from p2phd.common.decode import decode_pair
    from p2phd.engine.apps.bench.harness import OtherLoad
    from p2phd.engine.apps.bench.machine import describe_machine
    from p2phd.engine.core.renderer import Renderer

    with tempfile.TemporaryDirectory(prefix="p2phd-render-bench-") as tmp:
        data = Path(tmp) / "data"
        p2phd = Path(sys.executable).with_name("p2phd")
        subprocess.run(
            [str(p2phd), "synth", "-o", str(data), "-n", str(args.num), "--size", args.size,
             "--seed", "7"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        others = OtherLoad()  # from here on: the synth child would count as another process
        with Renderer(args.model, backend=args.backend, precision=args.precision) as r:
            pairs = [
                decode_pair(lab, inst, r.manifest.label_nc)
                for lab, inst in zip(
                    sorted((data / "train_label").iterdir()),
                    sorted((data / "train_inst").iterdir()),
                    strict=True,
                )
            ]
            labels = np.stack([lab for lab, _ in pairs])
            instances = np.stack([inst for _, inst in pairs])
            engine_alone(r, labels[: args.batch], instances[: args.batch], args.batch)  # warm
            engine, render = [], []
            for k in range(args.rounds):
                engine.append(engine_alone(r, labels, instances, args.batch))
                out = Path(tmp) / f"out{k}"
                render.append(batch_render(r, data, out, args.batch, args.workers))
                print(f"round {k + 1}: engine {engine[-1]:.2f} images/s, "
                      f"p2phd render {render[-1]:.2f} images/s", flush=True)  # fmt: skip
            describe = r.describe()

    result = {
        "command": "benchmarks/render_throughput.py " + " ".join(argv or sys.argv[1:]),
        "model": args.model,
        "backend": describe["backend"],
        "precision": describe["precision"],
        "size": args.size,
        "images_per_round": args.num,
        "batch": args.batch,
        "workers": args.workers,
        "engine_alone_images_per_s": round(float(np.median(engine)), 2),
        "render_images_per_s": round(float(np.median(render)), 2),
        "render_vs_engine": round(float(np.median(render) / np.median(engine)), 3),
        "rounds": {
            "engine_alone": [round(x, 2) for x in engine],
            "render": [round(x, 2) for x in render],
        },
        "other_load": others.measure(),
        "machine": {"cpu": describe_machine()["cpu_model"], "cpus": os.cpu_count()},
    }
    write_result(args.output, result)
    print(
        f"engine alone {result['engine_alone_images_per_s']} images/s, p2phd render "
        f"{result['render_images_per_s']} images/s: {100 * result['render_vs_engine']:.1f}% "
        f"(target >= 90%) -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
