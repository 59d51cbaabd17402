"""The Renderer: label maps (and instance maps, style) in, uint8 RGB photos out, on any backend;
for an image-to-image package (pix2pix family), images in (`render_images`).

One request, as data: decode/validate -> fit to the generator's size multiple -> kernels (compact
instance ids, edges, per-instance features, one-hot) -> backend.infer -> tanh to uint8 -> crop or
resize back. Everything but `backend.infer` is the same for every backend, so backends can be
compared on the very same dense input (`dense_input`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

import numpy as np

from p2phd.common.decode import DEFAULT_MAX_PIXELS, Source, decode_pair, validate_maps
from p2phd.common.errors import InputError
from p2phd.common.image_input import decode_image, to_model_input, validate_images
from p2phd.engine.backends import open_backend
from p2phd.engine.backends.base import EngineOptions
from p2phd.engine.core.buffer_pool import BufferPool
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.size_policy import DEFAULT_MAX_SIDE, SizePolicy, fit, fitted_shape
from p2phd.engine.core.style import ReferenceEncoder, Style, image_features

log = logging.getLogger(__name__)

StyleArg = Style | Sequence[Style] | None
MAX_CALL_INPUT_BYTES = 1 << 30  # dense input of one engine call; a larger batch is split


class Renderer:
    """A model package loaded on one backend at one precision, ready to render."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        backend: str = "auto",
        precision: str = "auto",
        size_policy: str | SizePolicy = "pad",
        *,
        options: EngineOptions | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_side: int = DEFAULT_MAX_SIDE,
    ):
        self.package = ModelPackage(model_dir)
        self.manifest = self.package.manifest
        self.size_policy = SizePolicy.parse(size_policy)
        self.max_pixels = max_pixels
        self.max_side = max_side
        self.clusters = self.package.feature_clusters()
        self._encoder: ReferenceEncoder | None = None
        self.backend, self.choice = open_backend(self.package, backend, precision, options)
        # TensorRT with the CUDA kernels built runs preprocessing and output conversion on the GPU.
        self._on_device = self.backend.renders_maps
        # Backends reuse infer requests, bindings and device buffers: one batch at a time runs
        # in them, while other threads decode and preprocess the next batches.
        self._infer_lock = threading.Lock()
        self._inputs = BufferPool()

    @property
    def min_side(self) -> int:
        """The least height and width the generator takes: residual blocks reflection-pad the
        bottleneck (size / size_multiple), which needs 2 pixels; a U-Net's may be 1."""
        unet = str(self.manifest.architecture.get("netG", "")).startswith("unet")
        return self.manifest.size_multiple * (1 if unet else 2)

    def fitted_size(self, h: int, w: int, what: str = "label map") -> tuple[int, int]:
        """The (H, W) the generator computes for an h x w input after the size policy, refused
        (InputError) beyond the work one image may cost: `max_pixels` pixels and `max_side`
        pixels a side, counted after padding or resizing (a 1 x N strip padded to the size
        multiple costs 32 x N pixels, not N). Every render path checks here before allocating."""
        fh, fw = fitted_shape(h, w, self.manifest.size_multiple, self.size_policy,
                              min_side=self.min_side, what=what)  # fmt: skip
        if fh * fw > self.max_pixels or max(fh, fw) > self.max_side:
            raise InputError(
                f"{what}: {w}x{h} is computed as {fw}x{fh} = {fw * fh} pixels after the "
                f"'{self.size_policy.value}' size policy (size multiple "
                f"{self.manifest.size_multiple}), over the per-image limit of {self.max_pixels} "
                f"pixels and {self.max_side} pixels a side"
            )
        return fh, fw

    def describe(self) -> dict:
        """Backend, precision, device, and why they were chosen."""
        m = self.manifest
        return {
            **self.backend.describe(),
            "backend_reason": self.choice.backend_reason,
            "precision_reason": self.choice.precision_reason,
            "size_policy": self.size_policy.value,
            "size_multiple": m.size_multiple,
            "input_kind": m.input_kind,
            "label_nc": m.label_nc,
            "feature_clusters": len(self.clusters),
            "model_dir": str(self.package.path),
        }

    # -- the pipeline ---------------------------------------------------------------------------

    def _styles(self, style: StyleArg, batch: int) -> list[Style]:
        if style is None:
            return [Style()] * batch
        if isinstance(style, Style):
            return [style] * batch
        styles = list(style)
        if len(styles) != batch:
            raise InputError(f"style: {len(styles)} styles given for a batch of {batch}")
        return styles

    def _encoder_for(self) -> ReferenceEncoder:
        if self._encoder is None:
            path = self.package.encoder_path
            if path is None:
                raise InputError(
                    f"style reference: {self.package.path} has no encoder.onnx, so a reference "
                    "photo cannot be encoded; use a seed or explicit clusters"
                )
            self._encoder = ReferenceEncoder(path)
        return self._encoder

    def _instance_inputs(
        self,
        labels: np.ndarray,
        instances: np.ndarray | None,
        styles: Sequence[Style],
        photos: np.ndarray | None,
    ):
        """Compact instance ids and the feature table [B, Kmax, F] (each None when unused)."""
        from p2phd.engine import kernels

        m = self.manifest
        if not (m.instance or m.feat_num):
            return None, None
        if instances is None:
            # Without an instance map every class region is one instance (its outline an edge).
            instances = labels.astype(np.int32)
        compact = kernels.compact_instances(
            np.ascontiguousarray(instances, np.int32), np.ascontiguousarray(labels)
        )
        if not m.feat_num:
            return compact, None
        encoded = None
        if photos is not None:
            encoded = self._encoder_for().pooled(photos, compact)
        table = np.zeros((len(labels), compact.kmax, m.feat_num), np.float32)
        for b, style in enumerate(styles):
            table[b] = image_features(
                style,
                compact.original[b],
                compact.classes[b],
                self.clusters,
                m.feat_num,
                None if encoded is None or style.reference is None else encoded[b],
            )
        return compact, table

    def dense_input(
        self,
        labels: np.ndarray,
        instances: np.ndarray | None,
        styles: Sequence[Style],
        photos: np.ndarray | None = None,
        *,
        one_hot: bool = True,
    ) -> np.ndarray:
        """The generator's input [B, C, H, W] for maps already fitted to the size multiple, in
        an array of the renderer's pool: `release` it once the backend has read it. Without
        `one_hot` its one-hot channels are left unwritten (for `Backend.infer_labeled` where the
        backend does not read them)."""
        from p2phd.engine import kernels

        m = self.manifest
        compact, table = self._instance_inputs(labels, instances, styles, photos)
        dtype = self.backend.input_dtype
        return kernels.assemble_input(
            np.ascontiguousarray(labels),
            compact,
            m.label_nc,
            m.instance,
            table,
            dtype=dtype.name,
            out=self._inputs.take((len(labels), m.input_channels, *labels.shape[1:]), dtype),
            feat_channels=m.feat_num,
            one_hot=one_hot,
        )

    def release(self, dense: np.ndarray) -> None:
        """Hand a `dense_input` array back for the next batch of its shape."""
        self._inputs.give(dense)

    def _chunks(self, n: int, h: int, w: int, what: str) -> list[slice]:
        """A batch of `n` h x w inputs (refused past the per-image limits, `fitted_size`) as the
        calls the backend takes: at most its max_batch images each, and no more than
        MAX_CALL_INPUT_BYTES of dense input (a call's working memory grows with it: 8 Cityscapes
        frames of the 512p generator are 2.4 GB of input)."""
        fh, fw = self.fitted_size(h, w, what)
        per_image = self.manifest.input_channels * fh * fw * self.backend.input_dtype.itemsize
        step = max(1, min(self.backend.max_batch or n, MAX_CALL_INPUT_BYTES // per_image))
        return [slice(i, i + step) for i in range(0, n, step)]

    def _render_batch(
        self, labels: np.ndarray, instances: np.ndarray | None, styles: list[Style]
    ) -> np.ndarray:
        from p2phd.engine.kernels import to_uint8_rgb

        chunks = self._chunks(len(labels), *labels.shape[1:3], "label map")
        if len(chunks) > 1:
            return np.concatenate(
                [
                    self._render_batch(
                        labels[c], None if instances is None else instances[c], styles[c]
                    )
                    for c in chunks
                ]
            )
        photos = None
        if any(s.reference is not None for s in styles):
            photos = np.stack(
                [
                    np.zeros((*labels.shape[1:], 3), np.uint8)
                    if s.reference is None
                    else np.asarray(s.reference, np.uint8)
                    for s in styles
                ]
            )
            if photos.shape[1:3] != labels.shape[1:]:
                raise InputError(
                    f"style reference: photo {photos.shape[1:3]} differs from the label map "
                    f"{labels.shape[1:]} (HxW)"
                )
        m = self.manifest
        fitted = fit(labels, instances, m.size_multiple, self.size_policy, photos,
                     min_side=self.min_side)  # fmt: skip
        if self._on_device:
            compact, table = self._instance_inputs(
                fitted.labels, fitted.instances, styles, fitted.images
            )
            lab = np.ascontiguousarray(fitted.labels)
            with self._infer_lock:
                images = self.backend.render_maps(lab, compact, table, m.instance, m.feat_num)
            return fitted.restore(images)
        one_hot = self.backend.reads_one_hot
        x = self.dense_input(
            fitted.labels, fitted.instances, styles, fitted.images, one_hot=one_hot
        )
        try:
            with self._infer_lock:
                out = self.backend.infer_labeled(x, fitted.labels)
        finally:
            self.release(x)
        return fitted.restore(to_uint8_rgb(np.ascontiguousarray(out, np.float32)))

    def render(
        self,
        labels: np.ndarray | Sequence[np.ndarray],
        instances: np.ndarray | Sequence[np.ndarray] | None = None,
        style: StyleArg = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Render label maps into uint8 RGB images.

        `labels` uint8 [B, H, W] or [H, W] (returns [B, H, W, 3]), or a list of [H, W] maps of
        any sizes (returns a list of [H, W, 3]; maps of equal size are batched together).
        `instances` int32/uint16 of the same shape(s); `style` one Style or one per image.
        """
        self._require_labels()
        if isinstance(labels, np.ndarray):
            single = labels.ndim == 2
            lab = labels[None] if single else labels
            inst = None
            if instances is not None:
                inst = np.asarray(instances)
                inst = inst[None] if single else inst
            validate_maps(lab, inst, self.manifest.label_nc)
            return self._render_batch(lab, inst, self._styles(style, len(lab)))
        return self._render_list(list(labels), instances, style)

    def _require_labels(self) -> None:
        if self.manifest.image_input:
            raise InputError(
                f"{self.package.path} is an image-to-image model: it takes input images "
                "(render_images, p2phd render --images), not label maps"
            )

    def _render_list(self, labels: list, instances, style: StyleArg) -> list[np.ndarray]:
        n = len(labels)
        insts = [None] * n if instances is None else list(instances)
        if len(insts) != n:
            raise InputError(f"{len(insts)} instance maps given for {n} label maps")
        styles = self._styles(style, n)
        groups: dict[tuple, list[int]] = {}
        for i, lab in enumerate(labels):
            if lab.ndim != 2:
                raise InputError(f"label map {i}: shape {lab.shape}; expected [H, W] in a list")
            key = (lab.shape, insts[i] is None)
            groups.setdefault(key, []).append(i)
        out: list[np.ndarray | None] = [None] * n
        for (_, no_inst), idx in groups.items():
            lab = np.stack([labels[i] for i in idx])
            inst = None if no_inst else np.stack([np.asarray(insts[i]) for i in idx])
            validate_maps(lab, inst, self.manifest.label_nc)
            images = self._render_batch(lab, inst, [styles[i] for i in idx])
            for j, i in enumerate(idx):
                out[i] = images[j]
        return out

    def render_files(
        self, label_png: Source, instance_png: Source | None = None, style: Style | None = None
    ) -> np.ndarray:
        """Decode a label PNG (and instance PNG) from paths or bytes and render: uint8 [H, W, 3]."""
        self._require_labels()
        labels, instances = decode_pair(
            label_png, instance_png, self.manifest.label_nc, max_pixels=self.max_pixels
        )
        return self.render(labels, instances, style)[0]

    # -- image-to-image models ------------------------------------------------------------------

    def render_images(
        self, images: np.ndarray | Sequence[np.ndarray]
    ) -> np.ndarray | list[np.ndarray]:
        """Translate uint8 images of an image-input package into uint8 RGB images.

        `images` [B, H, W, C] or [H, W, C] (returns [B, H, W, 3]), or a list of [H, W, C] images
        of any sizes (returns a list; images of equal size are batched together). C is the
        package's input_nc (3: RGB, 1: grey, also accepted as [H, W]).
        """
        m = self.manifest
        if not m.image_input:
            raise InputError(
                f"{self.package.path} takes label maps (label_nc {m.label_nc}), not images; "
                "use render / p2phd render --labels"
            )
        if isinstance(images, np.ndarray):
            single = images.ndim == 3 or (images.ndim == 2 and m.input_nc == 1)
            batch = self._as_batch(images[None] if single else images)
            return self._render_image_batch(batch)
        items = [self._as_batch(np.asarray(im)[None])[0] for im in images]
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(items):
            groups.setdefault(im.shape, []).append(i)
        out: list[np.ndarray | None] = [None] * len(items)
        for idx in groups.values():
            rendered = self._render_image_batch(np.stack([items[i] for i in idx]))
            for j, i in enumerate(idx):
                out[i] = rendered[j]
        return out

    def _as_batch(self, images: np.ndarray) -> np.ndarray:
        if images.ndim == 3 and self.manifest.input_nc == 1:
            images = images[..., None]
        validate_images(images, self.manifest.input_nc)
        return images

    def _render_image_batch(self, images: np.ndarray) -> np.ndarray:
        from p2phd.engine.kernels import to_uint8_rgb

        chunks = self._chunks(len(images), *images.shape[1:3], "input image")
        if len(chunks) > 1:
            return np.concatenate([self._render_image_batch(images[c]) for c in chunks])
        fitted = fit(None, None, self.manifest.size_multiple, self.size_policy, images,
                     min_side=self.min_side)  # fmt: skip
        x = to_model_input(fitted.images, self.backend.input_dtype)
        with self._infer_lock:
            out = self.backend.infer(x)
        return fitted.restore(to_uint8_rgb(np.ascontiguousarray(out, np.float32)))

    def render_image_file(self, src) -> np.ndarray:
        """Decode an input image (PNG/JPEG path or bytes) and translate it: uint8 [H, W, 3]."""
        image = decode_image(src, self.manifest.input_nc, max_pixels=self.max_pixels)
        return self.render_images(image[None])[0]

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
