"""`p2phd render --ray`: the same render job on Ray Data, one engine per actor.

The driver plans the jobs and skips complete outputs; Ray Data hands chunks of the rest to an
actor pool (`map_batches` with a callable class), each actor loads one Renderer (one GPU per
actor when the cluster has GPUs) and runs the local pipeline of `batch_render` on its chunk, so
decoding, batching, atomic writes and per-file errors behave exactly as on one machine.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from p2phd.common.errors import BackendUnavailable
from p2phd.engine.batch.render import BATCH, BatchRenderer, Job, Summary, is_complete_png

log = logging.getLogger(__name__)


def _rows(jobs: list[Job]) -> list[dict]:
    """Jobs as plain rows; paths absolute, since actors need not share the driver's cwd."""

    def path(p: Path | None) -> str:
        return "" if p is None else str(p.resolve())

    return [
        {
            "key": j.key,
            "label": path(j.label),
            "instance": path(j.instance),
            "reference": path(j.reference),
            "seed": j.seed,
            "output": path(j.output),
        }  # fmt: skip
        for j in jobs
    ]


def _jobs(rows: dict[str, np.ndarray]) -> list[Job]:
    def path(value: str) -> Path | None:
        return Path(value) if value else None

    return [
        Job(
            str(rows["key"][i]),
            Path(str(rows["label"][i])),
            path(str(rows["instance"][i])),
            path(str(rows["reference"][i])),
            int(rows["seed"][i]),
            Path(str(rows["output"][i])),
        )
        for i in range(len(rows["key"]))
    ]


class RenderActor:
    """One Renderer per Ray actor; each call renders a chunk of jobs through the local pipeline."""

    def __init__(self, model_dir: str, backend: str, precision: str, batch: int):
        from p2phd.engine.core.renderer import Renderer

        self.renderer = Renderer(model_dir, backend=backend, precision=precision)
        label_nc = self.renderer.manifest.label_nc
        self.pipeline = BatchRenderer(self.renderer.render, label_nc, batch=batch)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jobs = _jobs(rows)
        failed = dict(self.pipeline.run(jobs).failed)
        errors = [failed.get(str(j.label), "") for j in jobs]
        return {"label": rows["label"], "error": np.array(errors)}


class RayRenderer:
    """Runs jobs on a Ray cluster (`address`), or a local Ray instance when None, with the same
    `run(jobs, progress) -> Summary` as the local BatchRenderer."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        address: str | None = None,
        backend: str = "auto",
        precision: str = "auto",
        batch: int = BATCH,
        actors: int | None = None,
    ):
        self.model_dir = str(Path(model_dir).resolve())
        self.address = address
        self.backend, self.precision = backend, precision
        self.batch, self.actors = max(1, batch), actors

    def run(self, jobs: list[Job], progress=None) -> Summary:
        try:
            import ray
        except ImportError as e:
            raise BackendUnavailable("--ray needs Ray: pip install 'p2phd[ray]'") from e

        summary = Summary()
        start = time.perf_counter()
        todo = [j for j in jobs if not is_complete_png(j.output)]
        summary.skipped = len(jobs) - len(todo)
        if progress is not None:
            progress.update(summary.skipped)
        if todo:
            ray.init(address=self.address, ignore_reinit_error=True, include_dashboard=False)
            gpus = int(ray.cluster_resources().get("GPU", 0))
            pool = self.actors or max(1, gpus)
            log.info("ray: %d actor(s) on %s", pool, "a GPU each" if gpus else "CPUs")
            dataset = ray.data.from_items(_rows(todo)).map_batches(
                RenderActor,
                fn_constructor_kwargs={
                    "model_dir": self.model_dir,
                    "backend": self.backend,
                    "precision": self.precision,
                    "batch": self.batch,
                },
                batch_size=self.batch * 4,
                concurrency=pool,
                num_gpus=1 if gpus else 0,
                batch_format="numpy",
            )
            for row in dataset.iter_rows():
                if row["error"]:
                    summary.failed.append((str(row["label"]), str(row["error"])))
                else:
                    summary.rendered += 1
                if progress is not None:
                    progress.update(1)
        summary.seconds = time.perf_counter() - start
        return summary
