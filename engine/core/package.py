"""The model package: the directory every backend loads, and the seam between export and engine.

Layout::

    MODEL_DIR/
      manifest.json    what the model is and how to feed it (see `Manifest`)
      generator.onnx   dense NCHW float input: one-hot ⊕ edges ⊕ features (or, for an image
                       model such as pix2pix, an RGB image in [-1, 1]) -> tanh image
      encoder.onnx     optional: photo -> per-pixel features (before instance pooling)
      features.npz     optional: k-means centres per class, arrays "class_<id>" of [k, feat_num]
      generator.fp16.onnx  optional precision variant (manifest.variants), same input and output
      generator.int8.onnx  optional Q/DQ int8 variant made by `p2phd build --precision int8
                       --calibration DIR`, its calibration record in manifest.calibration
      engines/quality.json  written by `p2phd build` (never hashed; beside it the lock files
                       that make concurrent builds take turns); compiled engines live in the
                       engine cache outside the package (`p2phd.engine.core.compiled_cache`)

Every file named in `manifest.files` is verified against its sha256 at load, and must resolve to
a regular file inside the package (a symlink out of it is refused). Loading never writes into
the package. Nothing in a package is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from p2phd.common.atomic import atomic_write_bytes
from p2phd.common.classes import SemanticClass, default_classes
from p2phd.common.errors import PackageError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GENERATOR = "generator.onnx"
ENCODER = "encoder.onnx"
FEATURES = "features.npz"
ENGINES = "engines"
MAX_MANIFEST_BYTES = 4 << 20  # a 256-class manifest is ~30 KB
MAX_MANIFEST_DEPTH = 32  # objects/arrays nested in manifest.json


@dataclass
class Manifest:
    """What `manifest.json` holds.

    `architecture` is the network's constructor config (e.g. ``{"family": "pix2pixhd",
    "netG": "global", "ngf": 64, ...}``); `input_order` names the generator's input channel
    blocks in order, e.g. ``["onehot:35", "edges:1", "features:3"]``.

    `input_kind` is "labels" (label/instance maps, the pix2pixHD family) or "image" (an image of
    `input_nc` channels normalised to [-1, 1], the pix2pix family: label_nc is then 0).
    """

    architecture: dict
    label_nc: int
    instance: bool
    feat_num: int
    size_multiple: int
    classes: list[dict] = field(default_factory=list)
    encoder: bool = False
    features: bool = False
    files: dict[str, str] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)  # e.g. {"fp16": "generator.fp16.onnx"}
    # Measured at export, ONNX Runtime vs PyTorch: e.g. {"generator": 2e-7, "fp16": 1e-3}
    parity: dict[str, float] = field(default_factory=dict)
    # How a quantized variant was made: e.g. {"int8": {"source": ..., "kept_in_float": ...}}
    calibration: dict[str, dict] = field(default_factory=dict)
    exporter_version: str = ""
    input_kind: str = "labels"
    input_nc: int = 0
    format_version: int = FORMAT_VERSION

    @property
    def image_input(self) -> bool:
        return self.input_kind == "image"

    @property
    def input_channels(self) -> int:
        if self.image_input:
            return self.input_nc
        return self.label_nc + int(self.instance) + self.feat_num

    @property
    def input_order(self) -> list[str]:
        if self.image_input:
            return [f"image:{self.input_nc}"]
        order = [f"onehot:{self.label_nc}"]
        if self.instance:
            order.append("edges:1")
        if self.feat_num:
            order.append(f"features:{self.feat_num}")
        return order

    def semantic_classes(self) -> list[SemanticClass]:
        if not self.classes:
            return list(default_classes(self.label_nc))
        return [
            SemanticClass(c["id"], c["name"], tuple(c["color"]), c.get("is_thing", False))
            for c in self.classes
        ]

    def to_json(self) -> dict:
        d = asdict(self)
        d["input"] = {"layout": "NCHW", "channels": self.input_channels, "order": self.input_order}
        return d

    @classmethod
    def from_json(cls, d: dict, source: Path) -> Manifest:
        if not isinstance(d, dict):
            raise PackageError(f"{source}: expected a JSON object, got {type(d).__name__}")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise PackageError(
                f"{source}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        names = {f for f in cls.__dataclass_fields__}
        missing = {"architecture", "label_nc", "instance", "feat_num", "size_multiple"} - set(d)
        if missing:
            raise PackageError(f"{source}: missing field(s) {', '.join(sorted(missing))}")
        _check_fields(d, source)
        manifest = cls(**{k: v for k, v in d.items() if k in names})
        if manifest.input_kind not in ("labels", "image"):
            raise PackageError(
                f"{source}: input_kind {manifest.input_kind!r} is not 'labels' or 'image'"
            )
        return manifest


# What manifest fields must hold before anything trusts them (buffers are sized from these
# numbers): integers within a range, or a JSON type.
_INTEGERS = {"label_nc": (0, 256), "feat_num": (0, 4096), "size_multiple": (1, 1 << 16),
             "input_nc": (0, 4096)}  # fmt: skip
_TYPES = {"architecture": dict, "instance": bool, "encoder": bool, "features": bool,
          "classes": list, "files": dict, "variants": dict, "parity": dict, "calibration": dict,
          "exporter_version": str, "input_kind": str}  # fmt: skip
_JSON_NAMES = {dict: "object", bool: "true or false", list: "array", str: "string"}


def _check_fields(d: dict, source: Path) -> None:
    """Raise PackageError naming the first manifest field of the wrong type or out of range."""
    for name, (low, high) in _INTEGERS.items():
        v = d.get(name, low)
        if not _is_int(v, low, high):
            raise PackageError(f"{source}: {name} {_clip(v)}; expected an integer in {low}..{high}")
    for name, kind in _TYPES.items():
        if name in d and not isinstance(d[name], kind):
            raise PackageError(f"{source}: {name} {_clip(d[name])}; expected {_JSON_NAMES[kind]}")
    for name in ("files", "variants"):
        if not all(isinstance(v, str) for v in d.get(name, {}).values()):
            raise PackageError(f"{source}: {name}: expected file names mapped to strings")
    if not all(_is_number(v) for v in d.get("parity", {}).values()):
        raise PackageError(f"{source}: parity: expected names mapped to numbers")
    seen = set()
    for c in d.get("classes", []):
        if not _valid_class(c, d.get("label_nc", 0)) or c["id"] in seen:
            raise PackageError(
                f"{source}: classes entry {_clip(c)}; expected unique "
                f'{{"id": 0..label_nc-1, "name": str, "color": [r, g, b] in 0..255, '
                '"is_thing": true/false}'
            )
        seen.add(c["id"])


def _is_int(v, low: int, high: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _valid_class(c, label_nc: int) -> bool:
    """Whether a `classes` entry holds values every consumer (renderer, GetModelInfo) can take."""
    return (
        isinstance(c, dict)
        and _is_int(c.get("id"), 0, label_nc - 1)
        and isinstance(c.get("name"), str)
        and isinstance(c.get("color"), list)
        and len(c["color"]) == 3
        and all(_is_int(v, 0, 255) for v in c["color"])
        and isinstance(c.get("is_thing", False), bool)
    )


def _clip(value, limit: int = 120) -> str:
    """repr(value), cut to `limit` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _nesting_depth(value) -> int:
    """How deeply JSON arrays and objects nest in `value` (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (v.values() if isinstance(v, dict) else v))
    return deepest


def read_manifest_json(path: Path) -> dict:
    """manifest.json parsed, bounded in size and nesting; PackageError in one line otherwise."""
    with open(path, "rb") as f:
        raw = f.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise PackageError(f"{path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; not a manifest")
    too_deep = PackageError(
        f"{path}: nested deeper than {MAX_MANIFEST_DEPTH} levels; not a manifest"
    )
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(f"{path}: not valid JSON ({e})") from e
    except RecursionError as e:  # the parser recurses per level
        raise too_deep from e
    if _nesting_depth(data) > MAX_MANIFEST_DEPTH:
        raise too_deep
    return data


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(model_dir: str | Path, manifest: Manifest) -> Path:
    """Hash every package file present, record them, and write manifest.json atomically."""
    model_dir = Path(model_dir)
    manifest.files = {}
    for name in (GENERATOR, ENCODER, FEATURES, *manifest.variants.values()):
        p = model_dir / name
        if p.exists():
            manifest.files[name] = sha256_file(p)
    # External-data tensors of large ONNX models sit beside them and are hashed as well.
    for p in sorted(model_dir.glob("*.onnx.data")):
        manifest.files[p.name] = sha256_file(p)
    manifest.encoder = ENCODER in manifest.files
    manifest.features = FEATURES in manifest.files
    if not manifest.classes and not manifest.image_input:
        manifest.classes = [c.to_json() for c in default_classes(manifest.label_nc)]
    path = model_dir / MANIFEST
    atomic_write_bytes(path, json.dumps(manifest.to_json(), indent=2).encode() + b"\n")
    return path


class ModelPackage:
    """A loaded, verified model package."""

    def __init__(self, path: str | Path, verify: bool = True):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise PackageError(f"{self.path}: not a model package (no {MANIFEST})")
        self.inside(manifest_path)
        data = read_manifest_json(manifest_path)
        self.manifest = Manifest.from_json(data, manifest_path)
        # The package's content hash: the manifest holds every file's sha256 and all it says.
        self.content_key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        if GENERATOR not in self.manifest.files:
            raise PackageError(f"{manifest_path}: lists no {GENERATOR}")
        if verify:
            self.verify()

    def verify(self) -> None:
        """Raise PackageError if any listed file is outside the package, missing or changed."""
        for name in (*self.manifest.files, *self.manifest.variants.values()):
            if Path(name).name != name or name in ("", ".", ".."):
                raise PackageError(
                    f"{self.path / MANIFEST}: file name {name!r} is not a plain file name inside "
                    "the package"
                )
        for name, expected in self.manifest.files.items():
            p = self.path / name
            if not p.is_file():
                raise PackageError(
                    f"{p}: listed in {MANIFEST} but missing (or not a regular file); "
                    f"{self._remake(name)}"
                )
            self.inside(p)
            found = sha256_file(p)
            if found != expected:
                raise PackageError(
                    f"{p}: sha256 {found[:12]}… does not match the manifest's {expected[:12]}…; "
                    f"the file was changed after it was written, {self._remake(name)}"
                )

    def _remake(self, name: str) -> str:
        """How to make file `name` again: a calibrated variant by `p2phd build` (which replaces
        a missing or changed one), anything else by exporting the package again."""
        for precision, file in self.manifest.variants.items():
            record = self.manifest.calibration.get(precision)
            if file == name and isinstance(record, dict):
                return (
                    f"calibrate it again: p2phd build {self.path} --precision {precision} "
                    f"--calibration SRC (it was calibrated on {record.get('source', '?')})"
                )
        return "re-export the package"

    def inside(self, path: Path) -> Path:
        """`path`, checked to resolve to a place inside the package (no symlink out of it)."""
        if not path.resolve().is_relative_to(self.path.resolve()):
            raise PackageError(
                f"{path}: is a link to {path.resolve()}, outside the package; copy the file in"
            )
        return path

    @property
    def generator_path(self) -> Path:
        return self.path / GENERATOR

    @property
    def encoder_path(self) -> Path | None:
        return self.path / ENCODER if self.manifest.encoder else None

    def variant_path(self, name: str) -> Path | None:
        """The generator variant `name` (e.g. "fp16") if the package has one."""
        file = self.manifest.variants.get(name)
        return self.path / file if file else None

    @property
    def engines_dir(self) -> Path:
        """MODEL_DIR/engines/, where `p2phd build` writes quality.json (it may not exist)."""
        return self.path / ENGINES

    def feature_clusters(self) -> dict[int, np.ndarray]:
        """K-means centres per class id, each [k, feat_num] float32 (empty without clusters)."""
        if not self.manifest.features:
            return {}
        path = self.path / FEATURES
        try:
            with np.load(path, allow_pickle=False) as z:
                return {int(k.removeprefix("class_")): z[k].astype(np.float32) for k in z.files}
        except (ValueError, zipfile.BadZipFile) as e:  # object arrays need pickle: never loaded
            raise PackageError(
                f"{path}: {e}; expected numeric arrays named class_<id>, each [k, feat_num]"
            ) from e
