"""Per-request style: which feature vector each instance gets (pix2pixHD's instance features).

A model trained with instance features (`feat_num` > 0) takes, per instance, a small vector that
sets its look (a car's colour, a road's texture). It comes from, in order of precedence per
instance: a raw vector given for its instance id, a cluster chosen for its instance id, a cluster
chosen for its class, a cluster drawn with the seed from the class's k-means centres
(features.npz), or, with `reference`, the encoder's output on a photo averaged over the instance
(the original "encode features" path). Instances of classes without clusters get zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from p2phd.common.errors import InputError
from p2phd.common.image_input import to_model_input

# Explicit choices per style map (class clusters, instance clusters, instance vectors): far more
# instances than any image holds, while a request cannot make the server build millions of
# entries for ids that are not even in its image.
MAX_STYLE_ENTRIES = 4096
SEED_RANGE = (0, 2**63 - 1)  # what every caller may ask for (the wire's uint64, JSON's int64)


def check_entries(what: str, count: int) -> None:
    """Refuse a style map of more than MAX_STYLE_ENTRIES entries (InputError naming it)."""
    if count > MAX_STYLE_ENTRIES:
        raise InputError(
            f"style: {what} has {count} entries, over the limit of {MAX_STYLE_ENTRIES} "
            "(only ids present in the image can matter)"
        )


@dataclass(frozen=True)
class Style:
    """One image's style choices; `Style()` draws clusters with seed 0, so rendering is repeatable.

    `reference` is a photo uint8 [H, W, 3] the size of the label map; its encoded features are
    used for every instance not chosen explicitly.
    """

    seed: int = 0
    by_class: Mapping[int, int] = field(default_factory=dict)
    by_instance: Mapping[int, int] = field(default_factory=dict)
    vectors: Mapping[int, Sequence[float]] = field(default_factory=dict)
    reference: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_entries("by_class", len(self.by_class))
        check_entries("by_instance", len(self.by_instance))
        check_entries("vectors", len(self.vectors))


def _cluster(centres: np.ndarray, index: int, what: str) -> np.ndarray:
    if not 0 <= index < len(centres):
        raise InputError(f"style: {what} chooses cluster {index}; it has {len(centres)} clusters")
    return centres[index]


def image_features(
    style: Style,
    original: np.ndarray,
    classes: np.ndarray,
    clusters: Mapping[int, np.ndarray],
    feat_num: int,
    encoded: np.ndarray | None = None,
) -> np.ndarray:
    """The feature rows [K, feat_num] for one image's instances.

    `original`/`classes` [K] are each compact instance's original id and class (pad -1 beyond
    the image's count); `encoded` [K, feat_num] are the reference photo's pooled features.
    The seed's generator draws once per clustered instance, in order of first appearance.
    """
    rows = np.zeros((len(original), feat_num), np.float32)
    rng = np.random.default_rng(style.seed)
    for k, (inst, cls) in enumerate(zip(original.tolist(), classes.tolist(), strict=True)):
        if inst < 0:
            continue
        centres = clusters.get(cls)
        if inst in style.vectors:
            vec = np.asarray(style.vectors[inst], np.float32)
            if vec.shape != (feat_num,):
                raise InputError(
                    f"style: vector for instance {inst} has shape {vec.shape}; "
                    f"expected ({feat_num},)"
                )
            rows[k] = vec
        elif centres is None or len(centres) == 0:
            if encoded is not None:
                rows[k] = encoded[k]
            elif inst in style.by_instance or cls in style.by_class:
                raise InputError(f"style: class {cls} (instance {inst}) has no feature clusters")
        elif inst in style.by_instance:
            rows[k] = _cluster(centres, style.by_instance[inst], f"instance {inst}")
        elif cls in style.by_class:
            rows[k] = _cluster(centres, style.by_class[cls], f"class {cls}")
        elif encoded is not None:
            rows[k] = encoded[k]
        else:
            rows[k] = centres[rng.integers(len(centres))]
    return rows


class ReferenceEncoder:
    """The package's encoder.onnx on ONNX Runtime: a photo in, per-instance mean features out."""

    def __init__(self, encoder_path: Path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(encoder_path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def pooled(self, photos: np.ndarray, compact) -> np.ndarray:
        """Mean encoder features per compact instance, [B, Kmax, feat_num], for uint8 photos."""
        from p2phd.engine.kernels import instance_pool

        if photos.shape[:3] != compact.ids.shape or photos.shape[-1] != 3:
            raise InputError(
                f"style reference: photo shape {photos.shape[1:]} does not match the label map "
                f"{compact.ids.shape[1:]} (expected [H, W, 3] uint8)"
            )
        x = to_model_input(photos)
        (features,) = self.session.run(None, {self.input_name: x})
        means, _ = instance_pool(np.ascontiguousarray(features, np.float32), compact)
        return means
