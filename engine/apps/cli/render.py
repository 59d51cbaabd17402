"""`p2phd render`: render directories of label maps (or, for an image-to-image model such as
pix2pix, input images) into photos, pipelined and resumable."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from p2phd.common.options import POSITIVE
from p2phd.engine.apps.cli.config_flags import bounded
from p2phd.engine.backends import backend_choices, precision_choices
from p2phd.engine.backends.base import MAX_BATCH
from p2phd.engine.batch.render import BATCH
from p2phd.engine.core.style import SEED_RANGE

HELP = "render a directory, glob or list of label maps or images into photos (resumable)"

log = logging.getLogger("p2phd.render")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="the model package")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--labels",
        help="label maps: a directory (recursive), a glob or a list file; in a Cityscapes "
        "folder the *_labelIds.png files",
    )
    source.add_argument(
        "--images",
        help="input images (PNG/JPEG) of an image-to-image model (pix2pix/CycleGAN): a "
        "directory, glob or list file; each renders to OUT/<stem>.png",
    )
    parser.add_argument(
        "--instances",
        help="instance maps (directory, glob or list), paired by key; in a Cityscapes folder "
        "the *_instanceIds.png files (--labels and --instances may name the same folder)",
    )
    parser.add_argument("--no-instance", action="store_true", help="render without instance maps")
    parser.add_argument("--reference", help="reference photos for style, paired by key")
    parser.add_argument(
        "-o", "--output", required=True, help="output directory (never read as input)"
    )
    parser.add_argument("--backend", default="auto", choices=backend_choices())
    parser.add_argument("--precision", default="auto", choices=precision_choices())
    parser.add_argument(
        "--batch",
        type=bounded(int, (1, MAX_BATCH)),
        default=BATCH,
        help=f"images per engine call (default {BATCH})",
    )
    parser.add_argument(
        "--workers",
        type=bounded(int, (1, 256)),
        default=min(4, os.cpu_count() or 1),
        help="decode/encode threads",
    )
    style = parser.add_mutually_exclusive_group()
    style.add_argument(
        "--seed", type=bounded(int, SEED_RANGE), default=0, help="style seed (default 0)"
    )
    style.add_argument(
        "--styles",
        type=bounded(int, POSITIVE),
        metavar="N",
        help="N styles per map: OUT/<key>_s<seed>.png",
    )
    remote = parser.add_mutually_exclusive_group()
    remote.add_argument("--server", metavar="HOST:PORT", help="render through a running server")
    remote.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="render on Ray Data, one engine per actor (a local Ray instance without ADDRESS)",
    )
    parser.add_argument(
        "--ray-actors", type=bounded(int, POSITIVE), help="actors (default: one per GPU, else 1)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from p2phd.common.errors import ConfigError
    from p2phd.engine.batch.render import BatchRenderer, list_images, plan_jobs

    if args.instances and args.no_instance:
        raise ConfigError("--instances and --no-instance exclude each other")
    if args.images:
        return _run_images(args)
    out = Path(args.output)
    labels = list_images(args.labels, "label", exclude=out)
    instances = list_images(args.instances, "instance", exclude=out) if args.instances else None
    references = list_images(args.reference, "photo", exclude=out) if args.reference else None
    seeds = range(args.seed, args.seed + args.styles) if args.styles else (args.seed,)
    if args.ray:
        renderer, uses_instances = _ray(args)
    else:
        render_batch, label_nc, uses_instances = _label_renderer(args)
        renderer = BatchRenderer(render_batch, label_nc, batch=args.batch, workers=args.workers)
    if instances is None and not args.no_instance and uses_instances:
        raise ConfigError("this model uses instance maps: pass --instances DIR or --no-instance")
    jobs, failures = plan_jobs(
        labels,
        out,
        instances=instances,
        references=references,
        seeds=seeds,
        seed_suffix=args.styles is not None,
    )
    return _finish(args, renderer, jobs, failures, out)


def _finish(args: argparse.Namespace, renderer, jobs, failures, out) -> int:
    """Run the jobs with a progress bar, report failures; exit status 1 if any failed."""
    from tqdm import tqdm

    with tqdm(
        total=len(jobs), unit="img", disable=args.quiet, dynamic_ncols=True, file=sys.stderr
    ) as bar:
        summary = renderer.run(jobs, progress=bar)
    summary.failed[:0] = failures
    for path, reason in summary.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(f"{summary} -> {out}")
    return 1 if summary.failed else 0


def _run_images(args: argparse.Namespace) -> int:
    """`--images`: translate each input image with an image-to-image package."""
    from pathlib import Path

    from p2phd.common.errors import ConfigError
    from p2phd.engine.batch.render import BatchRenderer, list_images, plan_jobs

    for flag, given in (("--instances", args.instances), ("--reference", args.reference),
                        ("--styles", args.styles)):  # fmt: skip
        if given:
            raise ConfigError(f"{flag} does not apply to --images")
    where = args.server or args.model_dir
    if args.server:
        from p2phd.engine.serving.client import remote_batch_renderer

        render_batch, info = remote_batch_renderer(args.server)
        image_model, input_nc, label_nc = info.input_kind == "image", info.input_nc, info.label_nc
    else:
        from p2phd.engine.core.renderer import Renderer

        local = Renderer(args.model_dir, backend=args.backend, precision=args.precision)
        m = local.manifest
        image_model, input_nc, label_nc = m.image_input, m.input_nc, m.label_nc
        render_batch = lambda images, _instances, _styles: local.render_images(images)  # noqa: E731
    if not image_model:
        raise ConfigError(
            f"{where} takes label maps (label_nc {label_nc}): use --labels, not --images"
        )
    out = Path(args.output)
    images = list_images(args.images, exclude=out)
    jobs, failures = plan_jobs(images, out, key_of=lambda p: Path(p).stem)
    renderer = BatchRenderer(
        render_batch, 0, batch=args.batch, workers=args.workers, image_channels=input_nc
    )
    return _finish(args, renderer, jobs, failures, out)


def _ray(args: argparse.Namespace):
    """A RayRenderer for `--ray [ADDRESS]`, and whether the model uses instance maps."""
    from p2phd.engine.batch.ray_render import RayRenderer
    from p2phd.engine.core.package import ModelPackage

    manifest = ModelPackage(args.model_dir).manifest
    renderer = RayRenderer(
        args.model_dir,
        address=None if args.ray == "local" else args.ray,
        backend=args.backend,
        precision=args.precision,
        batch=args.batch,
        actors=args.ray_actors,
    )
    return renderer, manifest.instance


def _label_renderer(args: argparse.Namespace):
    """(render function, label_nc, uses instance maps) of a local Renderer or a running server."""
    if args.server:
        from p2phd.common.errors import ConfigError
        from p2phd.engine.serving.client import remote_batch_renderer

        render_batch, info = remote_batch_renderer(args.server)
        if info.input_kind == "image":
            raise ConfigError(f"{args.server} serves an image-to-image model: use --images")
        return render_batch, info.label_nc, info.instance
    from p2phd.engine.core.renderer import Renderer

    renderer = Renderer(args.model_dir, backend=args.backend, precision=args.precision)
    if renderer.manifest.image_input:
        from p2phd.common.errors import ConfigError

        raise ConfigError(
            f"{args.model_dir} is an image-to-image model: use --images, not --labels"
        )
    d = renderer.describe()
    log.info("backend %s (%s), precision %s", d["backend"], d["backend_reason"], d["precision"])
    return renderer.render, renderer.manifest.label_nc, renderer.manifest.instance
