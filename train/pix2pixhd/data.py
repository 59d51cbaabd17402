"""The training dataset: paired label / instance / photo files as tensors at a trainable size.

Labels and instances resize with nearest (ids must stay ids), photos with bicubic; sizes round to
the generator's size multiple. Decoded samples are cached, so epochs after the first only pay for
the network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from p2phd.common.errors import InputError
from p2phd.common.pairing import Pair, find_pairs


def round_to_multiple(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """(H, W) rounded to the nearest multiple of `multiple` (halves up), at least one each."""
    return tuple(max(multiple, int(s / multiple + 0.5) * multiple) for s in size)  # type: ignore[return-value]


def read_label(path: Path) -> np.ndarray:
    """A label PNG as uint8 class ids [H, W]."""
    img = _open(path)
    if img.mode not in ("L", "P"):
        raise InputError(f"{path}: a label map must be a single-channel 8-bit PNG, got {img.mode}")
    return np.asarray(img, dtype=np.uint8)


def read_instance(path: Path) -> np.ndarray:
    """An instance PNG (8/16/32-bit ids) as int32 [H, W]."""
    img = _open(path)
    if img.mode not in ("L", "P", "I", "I;16", "I;16B"):
        raise InputError(f"{path}: an instance map must be a single-channel PNG, got {img.mode}")
    return np.asarray(img).astype(np.int32)


def read_photo(path: Path) -> Image.Image:
    return _open(path).convert("RGB")


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot decode image ({e})") from None
    return img


def resize_nearest(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an id map, sampling pixel centres (as PIL's NEAREST)."""
    h, w = ids.shape
    rows = ((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64)
    cols = ((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64)
    return ids[rows[:, None], cols[None, :]]


class PairedDataset(Dataset):
    """Samples of `root` (Cityscapes or flat layout) as dicts with "label" and "instance" int64
    [1,H,W], "image" float [3,H,W] in [-1,1] (when photos are used) and "key"."""

    def __init__(
        self,
        root: str | Path,
        size_multiple: int,
        size: tuple[int, int] | None = None,
        *,
        phase: str = "train",
        instance: bool = True,
        image: bool = True,
        label_nc: int | None = None,
    ) -> None:
        self.pairs: list[Pair] = find_pairs(root, phase, instance=instance, image=image)
        self.size_multiple = size_multiple
        self.size = round_to_multiple(size, size_multiple) if size else None
        self.use_instance, self.use_image = instance, image
        self.label_nc = label_nc
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        return self.load(index)

    def load(self, index: int, flip: bool = False) -> dict:
        """Sample `index`, mirrored left-right when `flip` (the trainer's augmentation)."""
        if index not in self._cache:
            self._cache[index] = self._decode(self.pairs[index])
        arrays = self._cache[index]
        out: dict = {"key": self.pairs[index].key}
        for name, array in arrays.items():
            tensor = torch.from_numpy(array)
            if flip:
                tensor = tensor.flip(-1)
            if name == "image":
                out[name] = tensor.float() / 127.5 - 1.0
            else:
                out[name] = tensor.long()
        return out

    def _decode(self, pair: Pair) -> dict[str, np.ndarray]:
        label = read_label(pair.label)
        if self.label_nc is not None and int(label.max()) >= self.label_nc:
            raise InputError(
                f"{pair.label}: label value {int(label.max())} is out of range for label_nc "
                f"{self.label_nc} (valid ids 0..{self.label_nc - 1})"
            )
        size = self.size or round_to_multiple(label.shape, self.size_multiple)
        arrays = {"label": resize_nearest(label, size)[None]}
        if self.use_instance and pair.instance is not None:
            inst = read_instance(pair.instance)
            if inst.shape != label.shape:
                raise InputError(
                    f"{pair.instance}: size {inst.shape[1]}x{inst.shape[0]} differs from its "
                    f"label map {pair.label} ({label.shape[1]}x{label.shape[0]})"
                )
            arrays["instance"] = resize_nearest(inst, size)[None]
        if self.use_image and pair.image is not None:
            photo = read_photo(pair.image).resize((size[1], size[0]), Image.BICUBIC)
            arrays["image"] = np.ascontiguousarray(np.asarray(photo).transpose(2, 0, 1))
        return arrays


def collate(samples: list[dict]) -> dict:
    """Stack a list of samples into a batch (keys as a list)."""
    batch: dict = {"key": [s["key"] for s in samples]}
    for name in samples[0]:
        if name != "key":
            batch[name] = torch.stack([s[name] for s in samples])
    return batch
