"""`p2phd render`: a pipelined, resumable batch renderer for directories of label maps (or, for
an image-to-image model, of input images).

Decoding runs in worker threads, same-size maps are grouped into batches for the engine, and PNG
encoding and writing run in worker threads, all overlapped with bounded queues so memory stays
flat however many files there are. Outputs are written atomically, so a killed run never leaves
a truncated file; a rerun skips every complete output and cleans up stale temporaries.
"""

from __future__ import annotations

import contextlib
import glob
import io
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from p2phd.common.atomic import atomic_path, remove_stale_temporaries
from p2phd.common.decode import DEFAULT_MAX_PIXELS, decode_pair, read_input_file, read_text_file
from p2phd.common.errors import InputError, P2PHDError
from p2phd.common.image_input import decode_image
from p2phd.common.pairing import IMAGE_EXTENSIONS, index_by_key, pair_key, select_role
from p2phd.common.png import encode_png
from p2phd.engine.core.style import Style

log = logging.getLogger(__name__)

BATCH = 4  # images per engine call, the batch renderers' default
MAX_LIST_BYTES = 64 << 20  # a list file of input paths: about a million of them
MAX_JOBS = 1_000_000  # images one run plans (maps x styles): ~460 MB and ~15 s of planning
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"

# A label map's partner roles: what messages call them, and the file suffix that names them.
PARTNERS = {
    "instance": ("instance map", "_instanceIds"),
    "photo": ("reference photo", "_leftImg8bit"),
}

# (labels [B,H,W] uint8, instances [B,H,W] int32 or None, styles) -> uint8 [B,H,W,3]; for an
# image model the first argument is the input images [B,H,W,C] uint8 and the others are unused.
RenderBatch = Callable[[np.ndarray, np.ndarray | None, list[Style]], np.ndarray]


@dataclass(frozen=True)
class Job:
    """One output image to make: a label map (or input image), its partners, a seed and where it
    goes."""

    key: str
    label: Path
    instance: Path | None
    reference: Path | None
    seed: int
    output: Path


@dataclass
class Summary:
    rendered: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        return self.rendered / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"rendered {self.rendered}, skipped {self.skipped} (already complete), "
            f"failed {len(self.failed)}; {self.throughput:.2f} images/s over {self.seconds:.1f} s"
        )


def list_images(
    source: str | Path, role: str | None = None, *, exclude: Path | None = None
) -> list[Path]:
    """The images named by a directory (searched recursively), a glob, or a list file.

    `role` ("label", "instance", "photo") picks that role's files from a directory or glob by
    the Cityscapes and pix2pixHD naming rules (`pairing.select_role`), so one Cityscapes folder
    can be both the label and the instance source. Files inside `exclude` (the output
    directory) are never inputs: a rerun must not read the previous run's outputs.
    """
    src = Path(source)
    if src.is_file() and src.suffix.lower() not in IMAGE_EXTENSIONS:
        base = src.parent
        text = read_text_file(
            src, "list file", MAX_LIST_BYTES, "a list of image paths (UTF-8 text, one per line)"
        )
        lines = (ln.strip() for ln in text.splitlines())
        found = [
            p if p.is_absolute() else base / p
            for p in (Path(ln) for ln in lines if ln and not ln.startswith("#"))
        ]
    else:
        if src.is_dir():
            found = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            found = sorted(Path(p) for p in glob.glob(str(source), recursive=True))
            if not found:
                raise InputError(
                    f"{source}: no such directory, list file, or files matching the glob"
                )
        if role is not None:
            found = select_role(found, role)
    if exclude is not None:
        found = _outside(found, exclude, source)
    return found


def _outside(paths: list[Path], directory: Path, source: str | Path) -> list[Path]:
    """`paths` without those inside `directory`; an error if that leaves none of many."""
    inside = Path(os.path.realpath(directory))
    kept = [p for p in paths if inside not in Path(os.path.realpath(p)).parents]
    if paths and not kept:
        raise InputError(
            f"{source}: all {len(paths)} input files lie in the output directory {directory}, "
            "and outputs are never read as inputs: choose an -o outside the inputs"
        )
    return kept


def plan_jobs(
    labels: Sequence[Path],
    out_dir: Path,
    *,
    instances: Sequence[Path] | None = None,
    references: Sequence[Path] | None = None,
    seeds: Sequence[int] = (0,),
    seed_suffix: bool = False,
    key_of: Callable[[Path], str] = pair_key,
) -> tuple[list[Job], list[tuple[str, str]]]:
    """Pair inputs by key into jobs; a file without its partner is returned as a failure.
    `key_of` names a label map's key, and so its output OUT/<key>.png (default: `pair_key`)."""
    by_label = index_by_key(labels, "input", key_of)
    partners = {
        role: index_by_key(paths, PARTNERS[role][0])
        for role, paths in (("instance", instances), ("photo", references))
        if paths is not None
    }
    for role, index in partners.items():
        shared = set(index.values()) & set(by_label.values())
        if shared:
            what, suffix = PARTNERS[role]
            raise InputError(
                f"{min(shared)}: picked as both label map and {what}; name them "
                f"*_labelIds.png and *{suffix}.png, or use separate directories"
            )
    if len(by_label) * len(seeds) > MAX_JOBS:
        raise InputError(
            f"{len(by_label)} input(s) x {len(seeds)} style(s) = {len(by_label) * len(seeds)} "
            f"images; one run renders at most {MAX_JOBS}: split it (fewer --styles or inputs)"
        )
    jobs, failures = [], []
    for key, label in sorted(by_label.items()):
        missing = [role for role, index in partners.items() if key not in index]
        if missing:
            failures.append((str(label), f"no {PARTNERS[missing[0]][0]} with key {key!r}"))
            continue
        inst, ref = (partners[r][key] if r in partners else None for r in ("instance", "photo"))
        for seed in seeds:
            name = f"{key}_s{seed}.png" if seed_suffix else f"{key}.png"
            jobs.append(Job(key, label, inst, ref, seed, out_dir / name))
    for role, index in partners.items():
        for key, path in sorted(index.items()):
            if key not in by_label:
                failures.append(
                    (str(path), f"no label map with key {key!r} for this {PARTNERS[role][0]}")
                )
    return jobs, failures


def is_complete_png(path: Path) -> bool:
    """True if `path` starts with the PNG signature and ends with the IEND chunk."""
    try:
        size = path.stat().st_size
        if size < len(PNG_SIGNATURE) + len(PNG_IEND):
            return False
        with open(path, "rb") as f:
            head = f.read(len(PNG_SIGNATURE))
            f.seek(size - len(PNG_IEND))
            return head == PNG_SIGNATURE and f.read() == PNG_IEND
    except OSError:
        return False


@dataclass
class _Decoded:
    jobs: list[Job]
    labels: np.ndarray
    instances: np.ndarray | None
    reference: np.ndarray | None


class BatchRenderer:
    """Runs jobs through decode -> batch -> render -> encode/write, overlapped."""

    def __init__(
        self,
        render_batch: RenderBatch,
        label_nc: int,
        *,
        batch: int = BATCH,
        workers: int = 2,
        queue: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        image_channels: int = 0,
    ):
        """`image_channels` > 0: jobs name input images of that many channels (an image
        model), decoded as such instead of as label maps."""
        self.image_channels = image_channels
        self.render_batch = render_batch
        self.label_nc = label_nc
        self.batch = max(1, batch)
        self.workers = max(1, workers)
        self.queue = queue or 2 * self.batch + 2 * self.workers
        self.max_pixels = max_pixels

    def run(self, jobs: Sequence[Job], progress=None) -> Summary:
        """Render every job not already complete; failures are collected, never raised."""
        summary = Summary()
        start = time.perf_counter()
        for directory in {j.output.parent for j in jobs}:
            if directory.is_dir():
                remove_stale_temporaries(directory)
        todo = []
        for job in jobs:
            if is_complete_png(job.output):
                summary.skipped += 1
                if progress is not None:
                    progress.update(1)
            else:
                todo.append(job)
        # One decode per input key; its seeds share the decoded maps.
        by_input: dict[tuple, list[Job]] = {}
        for job in todo:
            by_input.setdefault((job.label, job.instance, job.reference), []).append(job)

        groups: dict[tuple, list[tuple[Job, _Decoded]]] = {}
        writes: deque[Future] = deque()

        def finish_write(fut: Future) -> None:
            job, error = fut.result()
            if error is None:
                summary.rendered += 1
            else:
                summary.failed.append((str(job.label), error))
            if progress is not None:
                progress.update(1)

        def drain_writes(limit: int) -> None:
            while len(writes) > limit:
                finish_write(writes.popleft())

        def flush(key: tuple) -> None:
            items = groups.pop(key)
            try:
                images = self._infer(items)
            except P2PHDError as e:
                for job, _ in items:
                    summary.failed.append((str(job.label), str(e)))
                    if progress is not None:
                        progress.update(1)
                return
            for (job, _), image in zip(items, images, strict=True):
                writes.append(encoder.submit(_write_png, job, image))
            drain_writes(self.queue)

        with (
            ThreadPoolExecutor(
                self.workers, thread_name_prefix="decode", initializer=_yield_to_engine
            ) as decoder,
            ThreadPoolExecutor(
                self.workers, thread_name_prefix="encode", initializer=_yield_to_engine
            ) as encoder,
        ):
            pending: set[Future] = set()
            inputs = iter(by_input.values())
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < self.queue:
                    group = next(inputs, None)
                    if group is None:
                        exhausted = True
                        break
                    pending.add(decoder.submit(self._decode, group))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    decoded = fut.result()
                    if isinstance(decoded, tuple):
                        group_jobs, error = decoded
                        for job in group_jobs:
                            summary.failed.append((str(job.label), error))
                            if progress is not None:
                                progress.update(1)
                        continue
                    for job in decoded.jobs:
                        shape = (decoded.labels.shape, decoded.instances is None)
                        groups.setdefault(shape, []).append((job, decoded))
                        if len(groups[shape]) >= self.batch:
                            flush(shape)
            for key in list(groups):
                flush(key)
            drain_writes(0)
        summary.seconds = time.perf_counter() - start
        return summary

    def _decode(self, jobs: list[Job]) -> _Decoded | tuple[list[Job], str]:
        job = jobs[0]
        try:
            if self.image_channels:
                image = decode_image(job.label, self.image_channels, max_pixels=self.max_pixels)
                return _Decoded(jobs, image, None, None)
            labels, instances = decode_pair(
                job.label, job.instance, self.label_nc, max_pixels=self.max_pixels
            )
            reference = None
            if job.reference is not None:
                reference = _decode_photo(job.reference, labels.shape, self.max_pixels)
            return _Decoded(jobs, labels, instances, reference)
        except P2PHDError as e:
            return jobs, str(e)
        except OSError as e:
            return jobs, f"cannot read: {e}"

    def _infer(self, items: list[tuple[Job, _Decoded]]) -> np.ndarray:
        labels = np.stack([d.labels for _, d in items])
        insts = None
        if items[0][1].instances is not None:
            insts = np.stack([d.instances for _, d in items])
        styles = [Style(seed=job.seed, reference=d.reference) for job, d in items]
        return self.render_batch(labels, insts, styles)


def _yield_to_engine() -> None:
    """Run this decode/encode thread at a lower priority than the engine's threads. The engine
    fills every core, and a preempted inference thread stalls its whole team at the next
    barrier; at nice 10 the file work still gets its few percent of the CPU, in the gaps."""
    with contextlib.suppress(AttributeError, OSError):  # no per-thread priority: run as is
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: this thread


def _decode_photo(path: Path, shape: tuple[int, int], max_pixels: int) -> np.ndarray:
    """A reference photo as uint8 [H, W, 3], resized (bicubic) to the label map's size."""
    data = read_input_file(path, "reference photo", max_pixels)
    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > max_pixels:
            raise InputError(f"reference photo {path}: {img.width}x{img.height} exceeds the limit")
        rgb = img.convert("RGB")
        if rgb.size != (shape[1], shape[0]):
            rgb = rgb.resize((shape[1], shape[0]), Image.BICUBIC)
        return np.asarray(rgb, np.uint8)


def _write_png(job: Job, image: np.ndarray) -> tuple[Job, str | None]:
    try:
        png = encode_png(image)
        with atomic_path(job.output) as tmp:
            tmp.write_bytes(png)
        return job, None
    except OSError as e:
        return job, f"cannot write {job.output}: {e}"
