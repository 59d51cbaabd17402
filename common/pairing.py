"""Pair label, instance and photo files by key, for the Cityscapes and flat pix2pixHD layouts.

Torch-free: the trainer's dataset, the batch renderer and the editor use it. A file's key is its
stem with a known Cityscapes suffix removed, so `aachen_000000_000019_gtFine_labelIds.png` and
`aachen_000000_000019_leftImg8bit.png` pair. The suffix also names the file's role, so one
Cityscapes folder (`gtFine/val/<city>/`: labelIds, instanceIds, color, polygons side by side)
serves as the label source and the instance source at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from p2phd.common.errors import InputError

# The role a Cityscapes file name states, longest suffix first.
ROLE_SUFFIXES = (
    ("_gtFine_labelIds", "label"),
    ("_gtFine_instanceIds", "instance"),
    ("_gtFine_labelTrainIds", "other"),  # train ids (0..18, 255), not the label ids models take
    ("_gtFine_color", "other"),  # a colour visualisation
    ("_leftImg8bit", "photo"),
    ("_labelIds", "label"),
    ("_instanceIds", "instance"),
    ("_labelTrainIds", "other"),
    ("_color", "other"),
)
KEY_SUFFIXES = tuple(suffix for suffix, role in ROLE_SUFFIXES if role != "other")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Pair:
    """One sample: a label map, and its instance map and photo when the layout has them."""

    key: str
    label: Path
    instance: Path | None = None
    image: Path | None = None


def pair_key(path: str | Path) -> str:
    """The key files pair by: the stem without a trailing Cityscapes suffix."""
    stem = Path(path).stem
    for suffix in KEY_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def role_of(path: str | Path) -> str | None:
    """The role a file's name states ("label", "instance", "photo" or "other"); None if none."""
    stem = Path(path).stem
    for suffix, role in ROLE_SUFFIXES:
        if stem.endswith(suffix):
            return role
    return None


def select_role(paths: Iterable[Path], role: str) -> list[Path]:
    """The files of `role` ("label", "instance" or "photo") among `paths`: those named for it
    (`*_labelIds.png`, ...) and those named for no role (the flat pix2pixHD layout, one folder
    per role). So a Cityscapes folder, which holds every role side by side, gives each role its
    own files, and colour visualisations and train-id maps are never picked."""
    return [p for p in paths if role_of(p) in (role, None)]


def pair_files(
    labels: Iterable[Path],
    instances: Iterable[Path] | None = None,
    images: Iterable[Path] | None = None,
) -> list[Pair]:
    """Pair files by key, sorted by key; any file without its partner is an InputError."""
    by_label = index_by_key(labels, "label")
    by_inst = index_by_key(instances, "instance") if instances is not None else None
    by_image = index_by_key(images, "photo") if images is not None else None
    for name, other in (("instance map", by_inst), ("photo", by_image)):
        if other is None:
            continue
        for key, path in sorted(by_label.items()):
            if key not in other:
                raise InputError(f"{path}: no {name} with key {key!r} to pair with")
        for key, path in sorted(other.items()):
            if key not in by_label:
                raise InputError(f"{path}: no label map with key {key!r} to pair with")
    return [
        Pair(
            key,
            label,
            by_inst[key] if by_inst is not None else None,
            by_image[key] if by_image is not None else None,
        )
        for key, label in sorted(by_label.items())
    ]


def find_pairs(
    root: str | Path, phase: str = "train", *, instance: bool = True, image: bool = True
) -> list[Pair]:
    """The samples of `phase` under `root`, in the Cityscapes or the flat pix2pixHD layout.

    `instance` / `image` say whether instance maps / photos are required; when not required they
    are still paired if their folder exists.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: data directory not found")
    if (root / "gtFine").is_dir():
        gt = root / "gtFine" / phase
        labels = sorted(gt.glob("*/*_gtFine_labelIds.png"))
        insts = sorted(gt.glob("*/*_gtFine_instanceIds.png"))
        photo_dir = root / "leftImg8bit" / phase
        photos = sorted(photo_dir.glob("*/*_leftImg8bit.png"))
        inst_dir: Path = gt
        if not labels:
            raise InputError(f"{gt}: no *_gtFine_labelIds.png files (Cityscapes layout)")
    else:
        label_dir = root / f"{phase}_label"
        if not label_dir.is_dir():
            raise InputError(
                f"{root}: neither a Cityscapes layout (gtFine/{phase}/...) nor a flat layout "
                f"({phase}_label/, {phase}_inst/, {phase}_img/)"
            )
        inst_dir, photo_dir = root / f"{phase}_inst", root / f"{phase}_img"
        labels, insts, photos = (_images_in(d) for d in (label_dir, inst_dir, photo_dir))
        if not labels:
            raise InputError(f"{label_dir}: no label images")
    if instance and not insts:
        raise InputError(f"{inst_dir}: no instance maps, but the model uses instances")
    if image and not photos:
        raise InputError(f"{photo_dir}: no photos to train on")
    return pair_files(labels, insts or None, photos or None)


def _images_in(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def index_by_key(
    paths: Iterable[Path], what: str, key_of: Callable[[Path], str] = pair_key
) -> dict[str, Path]:
    """`paths` by their key (`key_of`, default `pair_key`); two files with one key are an
    InputError naming both and `what` they are."""
    index: dict[str, Path] = {}
    for path in paths:
        key = key_of(path)
        if key in index:
            raise InputError(f"{path}: {what} key {key!r} also used by {index[key]}")
        index[key] = Path(path)
    return index


def choose_maps(names: Sequence[str]) -> tuple[str, str | None]:
    """The label map and its instance map among files a user chose together, by their names:
    a Cityscapes frame's labelIds, instanceIds, color and polygons.json, or one label map alone.
    Colour pictures, photos and non-PNG files are ignored; an ambiguous choice is an InputError
    naming the files."""
    pngs = [n for n in names if Path(n).suffix.lower() == ".png"]
    labels = [n for n in pngs if role_of(n) in ("label", None)]
    instances = [n for n in pngs if role_of(n) == "instance"]
    if len(labels) != 1:
        raise InputError(
            f"choose one label map (*_labelIds.png, or a plain .png) and optionally its "
            f"*_instanceIds.png; {len(labels)} label maps among {', '.join(names) or 'no files'}"
        )
    if len(instances) > 1:
        raise InputError(f"choose one instance map; got {', '.join(instances)}")
    if instances and pair_key(instances[0]) != pair_key(labels[0]):
        raise InputError(
            f"{instances[0]}: no label map with key {pair_key(instances[0])!r} to pair with "
            f"(the label map is {labels[0]})"
        )
    return labels[0], instances[0] if instances else None
