"""Paired image-to-image data for pix2pix training: the original's layouts, read and written.

Layouts (as in pytorch-CycleGAN-and-pix2pix): "aligned", one image per pair holding A | B side by
side in `<root>/<phase>/` (its `--dataset_mode aligned`), or "split", `<root>/<phase>A/` and
`<root>/<phase>B/` with files paired by stem. Images are resized (bicubic) to the training size
and scaled to [-1, 1]; `direction` "BtoA" swaps input and target. Decoded pairs are cached.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from p2phd.common.atomic import atomic_path
from p2phd.common.classes import default_classes
from p2phd.common.errors import ConfigError, InputError
from p2phd.common.image_input import to_model_input
from p2phd.common.pairing import IMAGE_EXTENSIONS
from p2phd.train.pix2pixhd.data import read_photo
from p2phd.train.synth import render_scene

LAYOUTS = ("aligned", "split")
DIRECTIONS = ("AtoB", "BtoA")


def _images(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            if p.stem in found:
                raise InputError(f"{p}: stem {p.stem!r} also used by {found[p.stem]}")
            found[p.stem] = p
    return found


class Pix2PixDataset:
    """Pairs (A, B) from an aligned or split dataset root, as float tensors [3, H, W] in [-1, 1]."""

    def __init__(self, root: str | Path, phase: str, size: tuple[int, int], direction: str):
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction must be AtoB or BtoA, got {direction!r}")
        root = Path(root)
        self.size, self.swap = size, direction == "BtoA"
        aligned, split_a, split_b = root / phase, root / f"{phase}A", root / f"{phase}B"
        if aligned.is_dir():
            self.pairs = [(p, None) for p in _images(aligned).values()]
        elif split_a.is_dir() and split_b.is_dir():
            a, b = _images(split_a), _images(split_b)
            unpaired = sorted(set(a) ^ set(b))
            if unpaired:
                raise InputError(
                    f"{root}: {unpaired[0]!r} is in only one of {phase}A/ and {phase}B/"
                )
            self.pairs = [(a[k], b[k]) for k in sorted(a)]
        else:
            raise InputError(
                f"{root}: expected {phase}/ (aligned A|B images) or {phase}A/ and {phase}B/"
            )
        if not self.pairs:
            raise InputError(f"{root}: no images for phase {phase!r}")
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        a_path, b_path = self.pairs[index]
        if b_path is None:
            ab = read_photo(a_path)
            if ab.width % 2:
                raise InputError(f"{a_path}: an aligned A|B image needs an even width")
            half = ab.width // 2
            a, b = ab.crop((0, 0, half, ab.height)), ab.crop((half, 0, ab.width, ab.height))
        else:
            a, b = read_photo(a_path), read_photo(b_path)
        h, w = self.size
        a, b = (np.asarray(x.resize((w, h), Image.BICUBIC), np.uint8) for x in (a, b))
        return (b, a) if self.swap else (a, b)

    def load(self, index: int, flip: bool = False) -> dict[str, torch.Tensor]:
        """{"A": input, "B": target}, each float [3, H, W] in [-1, 1], mirrored when `flip`."""
        if index not in self._cache:
            self._cache[index] = self._decode(index)
        out = {}
        for name, image in zip("AB", self._cache[index], strict=True):
            x = torch.from_numpy(to_model_input(image[None])[0])
            out[name] = x.flip(-1) if flip else x
        return out


def write_pix2pix_dataset(
    out: str | Path,
    n: int,
    size: tuple[int, int],
    seed: int,
    phase: str = "train",
    layout: str = "aligned",
) -> list[str]:
    """Write `n` synthetic pairs, A = the scene's colourised label map, B = its photo, in the
    `layout` ("aligned": out/<phase>/<key>.png holding A|B; "split": out/<phase>A|B/<key>.png)."""
    if n < 1:
        raise ConfigError(f"-n must be >= 1, got {n}")
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    palette = np.array([c.color for c in default_classes(35)], np.uint8)
    out = Path(out)
    keys = []
    for i in range(n):
        scene = render_scene(np.random.default_rng([seed, i]), *size)
        a, b = palette[scene.label], scene.photo
        key = f"synth_{seed}_{i:05d}"
        files = (
            {out / phase / f"{key}.png": np.concatenate([a, b], axis=1)}
            if layout == "aligned"
            else {out / f"{phase}A" / f"{key}.png": a, out / f"{phase}B" / f"{key}.png": b}
        )
        for path, array in files.items():
            with atomic_path(path) as tmp:
                Image.fromarray(array).save(tmp, format="PNG")
        keys.append(key)
    return keys
