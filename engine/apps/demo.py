"""`p2phd demo`: render the default model's bundled examples and time each CPU backend.

Nothing here is staged: the images come from the committed model package through the same
batch renderer users run, and the latency table is measured on this machine, now. Each example
is also written side by side with its label map in the palette's colours and, where known, its
ground truth, so the demo shows what the model makes of a scene.
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from p2phd.common.decode import decode_label, decode_pair
from p2phd.common.errors import BackendUnavailable, PackageError
from p2phd.common.pairing import pair_key
from p2phd.engine.backends import backend_class, backend_names
from p2phd.engine.batch.render import BatchRenderer, Job, Summary, plan_jobs
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.quality import measured_on, read_report
from p2phd.engine.core.renderer import Renderer

log = logging.getLogger(__name__)

SYNTH_KEY = re.compile(r"synth_(\d+)_(\d+)")  # `p2phd synth` names scene i of seed s synth_s_i
CAPTION_PX, GAP_PX = 14, 4


@dataclass
class LatencyRow:
    backend: str
    precision: str
    median_ms: float | None
    images_per_s: float | None
    note: str = ""


def example_inputs(model_dir: Path) -> tuple[list[Path], list[Path]]:
    """The package's bundled examples: `examples/*_labelIds.png` and `*_instanceIds.png`."""
    examples = sorted((model_dir / "examples").glob("*.png"))
    labels = [p for p in examples if p.stem.endswith("_labelIds")]
    if not labels:
        raise PackageError(f"{model_dir}: no bundled examples (examples/*_labelIds.png)")
    return labels, [p for p in examples if p.stem.endswith("_instanceIds")]


def ensure_quality_report(model_dir: Path, backend: str) -> None:
    """Measure the backend's reduced precision once, so `precision="auto"` may choose it."""
    from p2phd.engine.backends.base import EngineOptions
    from p2phd.engine.core.build import build_engine

    cls = backend_class(backend)
    reduced = cls.reduced
    if reduced is None or cls.reduced_unsupported(reduced):
        return
    package = ModelPackage(model_dir)
    entry = read_report(package.engines_dir).get(f"{backend}:{reduced}")
    if entry is not None and measured_on(entry, package.content_key):
        return
    print(f"measuring {backend} {reduced} quality against the fp32 reference (once)...")
    build_engine(model_dir, backend, reduced, EngineOptions())


def render_examples(
    renderer: Renderer, model_dir: Path, out_dir: Path
) -> tuple[Summary, list[Job]]:
    labels, insts = example_inputs(model_dir)
    jobs, failures = plan_jobs(labels, out_dir, instances=insts or None)
    summary = BatchRenderer(renderer.render, renderer.manifest.label_nc, batch=4).run(jobs)
    summary.failed[:0] = failures
    return summary, jobs


def label_palette(model_dir: Path) -> np.ndarray:
    """The package's class colours as uint8 [256, 3], for `palette[labels]` (unknown ids black)."""
    palette = np.zeros((256, 3), np.uint8)
    for c in ModelPackage(model_dir, verify=False).manifest.semantic_classes():
        if 0 <= c.id < 256:
            palette[c.id] = c.color
    return palette


def ground_truth(label_path: Path, labels: np.ndarray) -> np.ndarray | None:
    """The photo a label map was made from, where known: a `<key>_leftImg8bit.png` beside it
    (Cityscapes), or for a `p2phd synth` scene its photo regenerated from the seed in its name,
    used only if the regenerated label map equals this one exactly."""
    key = pair_key(label_path)
    photo = label_path.with_name(f"{key}_leftImg8bit.png")
    if photo.is_file():
        with Image.open(photo) as img:
            return np.asarray(img.convert("RGB"))
    match = SYNTH_KEY.fullmatch(key)
    if match is None:
        return None
    from p2phd.train.synth import render_scene  # numpy only

    seed, index = (int(g) for g in match.groups())
    scene = render_scene(np.random.default_rng([seed, index]), *labels.shape)
    return scene.photo if np.array_equal(scene.label, labels) else None


def side_by_side(panels: list[tuple[str, np.ndarray]]) -> Image.Image:
    """Same-size RGB panels left to right on white, each captioned above."""
    h, w = panels[0][1].shape[:2]
    sheet = Image.new("RGB", (len(panels) * (w + GAP_PX) - GAP_PX, h + CAPTION_PX), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (caption, image) in enumerate(panels):
        x = i * (w + GAP_PX)
        draw.text((x + 2, 1), caption, fill="black")
        sheet.paste(Image.fromarray(image), (x, CAPTION_PX))
    return sheet


def write_side_by_side(model_dir: Path, jobs: list[Job], out_dir: Path) -> list[Path]:
    """One sheet per rendered example: label colours | rendered | ground truth (where known)."""
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    palette = label_palette(model_dir)
    for job in jobs:
        if not job.output.is_file():
            continue
        labels = decode_label(job.label)
        with Image.open(job.output) as img:
            rendered = np.asarray(img.convert("RGB"))
        panels = [("label map", palette[labels]), ("rendered", rendered)]
        truth = ground_truth(job.label, labels)
        if truth is not None and truth.shape == rendered.shape:
            panels.append(("ground truth", truth))
        path = out_dir / f"{job.key}.png"
        side_by_side(panels).save(path)
        written.append(path)
    return written


def time_backend(
    model_dir: Path, backend: str, precision: str, maps: tuple, repeats: int = 10
) -> LatencyRow:
    """Median single-image latency and batch-4 throughput of one backend and precision."""
    try:
        r = Renderer(model_dir, backend=backend, precision=precision)
    except BackendUnavailable as e:
        return LatencyRow(backend, precision, None, None, f"unavailable: {e}")
    with r:
        labels, instances = maps
        r.render(labels, instances)  # warm-up: engine compile, caches
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            r.render(labels, instances)
            times.append(time.perf_counter() - t)
        batch = (np.repeat(labels, 4, 0), np.repeat(instances, 4, 0))
        r.render(*batch)
        t = time.perf_counter()
        r.render(*batch)
        per_s = 4 / (time.perf_counter() - t)
        return LatencyRow(backend, r.choice.precision, statistics.median(times) * 1e3, per_s)


def latency_table(model_dir: Path, maps: tuple) -> list[LatencyRow]:
    rows = []
    for backend in backend_names("cpu"):
        cls = backend_class(backend)
        reason = cls.availability()
        if reason:
            rows.append(LatencyRow(backend, "-", None, None, f"unavailable: {reason}"))
            continue
        precisions = ["fp32"]
        reduced = cls.reduced
        if reduced and not cls.reduced_unsupported(reduced):
            precisions.append(reduced)
        rows += [time_backend(model_dir, backend, p, maps) for p in precisions]
    return rows


def format_table(rows: list[LatencyRow], size: tuple[int, int]) -> str:
    lines = [
        f"| backend | precision | latency, 1 image {size[0]}x{size[1]} (ms) | images/s, batch 4 |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if r.median_ms is None:
            lines.append(f"| {r.backend} | {r.precision} | {r.note} | |")
        else:
            lines.append(
                f"| {r.backend} | {r.precision} | {r.median_ms:.1f} | {r.images_per_s:.1f} |"
            )
    return "\n".join(lines)


def run_demo(model_dir: Path, out_dir: Path) -> int:
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    ensure_quality_report(model_dir, "openvino")
    with Renderer(model_dir) as renderer:
        d = renderer.describe()
        print(f"model {model_dir}: {d['backend']} {d['precision']} ({d['backend_reason']})")
        summary, jobs = render_examples(renderer, model_dir, out_dir / "images")
    for path, reason in summary.failed:
        print(f"failed: {path}: {reason}")
    print(f"{summary} -> {out_dir / 'images'}")
    sheets = write_side_by_side(model_dir, jobs, out_dir / "side_by_side")

    labels, insts = example_inputs(model_dir)
    label_nc = ModelPackage(model_dir, verify=False).manifest.label_nc
    lab, inst = decode_pair(labels[0], insts[0] if insts else None, label_nc)
    maps = (lab[None], None if inst is None else inst[None])
    table = format_table(latency_table(model_dir, maps), lab.shape)
    report = out_dir / "latency.md"
    report.write_text(f"# p2phd demo latency on this machine\n\n{table}\n")
    print(table)
    print(f"\nimages: {out_dir / 'images'}")
    print("side by side (label map | rendered | ground truth where known):")
    for sheet in sheets:
        print(f"  {sheet}")
    print(f"latency table: {report}")
    return 1 if summary.failed else 0
