"""INT8 post-training quantization of a package's generator into one Q/DQ ONNX graph.

`p2phd build --precision int8 --calibration DIR` calls `calibrate`: NNCF measures activation
ranges on the user's own label maps (or, with "synthetic", on the procedural street scenes the
default model was trained on) and writes `generator.int8.onnx` (int8 weights, QuantizeLinear /
DequantizeLinear pairs in front of each quantized convolution) into the package, with its
calibration record in the manifest. Every fourth map is held out of calibration: the quality gate
(`engine.core.quality.int8_gate`) is measured on those.

The recipe (issue 20): NNCF's default places quantizers on InstanceNorm inputs and on both
inputs of every residual add, which the issue's trial measured at 33.5-35.2 dB, for no speed.
Here only convolution inputs are quantized (every other op type is in NNCF's ignored scope),
weights per output channel, activations symmetric; the overflow fix is off (it halves the weight
range for pre-VNNI CPUs; the backends refuse int8 on CPUs without VNNI or AMX instead). The
transposed convolutions are rewritten as sub-pixel convolutions (export/subpixel.py) and
quantized as such: quantized as transposed convolutions they measured no faster than bf16, as
four phase convolutions the 512p generator's int8 graph ran 7% faster. A convolution over a
concatenation is split into one per input (export/split_concat.py), so each input gets its own
quantizer: the default model's last convolution reads the network's features beside the raw
instance features (tail_skip), and one quantizer over both missed the gate's margin (40.6 dB, 7
levels) where two pass it (48.1 dB, 5 levels). Every convolution is quantized, the last one (to
the 3 image channels) too (the default model's int8 engine 11% faster: 19.4 against 21.6
ms/image), unless that misses the gate on a few calibration maps: then a sensitivity search
(export/sensitivity.py) keeps the fewest convolutions in float that pass it.
Layers are found by op type and by what measurement says, never by a name written down beforehand.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

from p2phd.common.atomic import atomic_path
from p2phd.common.decode import decode_pair
from p2phd.common.errors import ConfigError, InputError
from p2phd.common.file_lock import locked
from p2phd.common.pairing import pair_files
from p2phd.engine.core import quality
from p2phd.engine.core.package import ModelPackage, sha256_file, write_manifest
from p2phd.engine.core.style import Style
from p2phd.export import sensitivity, split_concat, subpixel

log = logging.getLogger(__name__)

VARIANT = "int8"
GENERATOR_INT8 = "generator.int8.onnx"
SYNTHETIC = "synthetic"
SYNTHETIC_SCENES = 32
HOLD_OUT_EVERY = 4  # map i is held out of calibration when i % 4 == 3
MIN_MAPS = 2  # at least one to calibrate on and one to hold out
# A folder may hold thousands of maps (gtFine/train: 2975): calibration takes at most this many,
# spread evenly over them, and no more than fit MAX_SET_BYTES of dense inputs (held together).
MAX_MAPS = 64
MAX_SET_BYTES = 2 << 30
CALIBRATION_LOCK = ".int8.lock"  # in the package's engines/ (never hashed)
RECIPE = (
    "convolution inputs only, per-channel symmetric weights, symmetric activations, overflow "
    "fix off (VNNI/AMX), transposed convolutions as sub-pixel convolutions, convolutions over "
    "a concatenation split per input, a sensitivity search for the convolutions kept in float"
)
QUANTIZED_OPS = ("Conv",)


@dataclass
class Sample:
    """One calibration or gate input: its name and the generator's dense input [1, C, H, W]."""

    key: str
    dense: np.ndarray


@dataclass
class CalibrationSet:
    source: str
    calibrate: list[Sample]
    held_out: list[Sample]
    digest: str  # what the maps were: a changed set re-calibrates

    def held_out_batch(self) -> np.ndarray:
        return np.concatenate([s.dense for s in self.held_out])


def float_layers(model: onnx.ModelProto) -> dict[str, str]:
    """The nodes always kept in float, with why: every ConvTranspose left after the sub-pixel
    rewrite (found by op type, never by name)."""
    return {
        node.name: "transposed convolution of another shape: quantized, it measured no faster"
        for node in model.graph.node
        if node.op_type == "ConvTranspose"
    }


def _nncf():
    try:
        import nncf
    except ImportError as e:
        raise ConfigError(f"int8 calibration needs NNCF ({e}): pip install 'p2phd[train]'") from e
    # Its progress bars stay; its INFO lines (a line per node) do not. The logger's level only:
    # nncf.set_log_level also sets the level of every handler on that logger.
    logging.getLogger("nncf").setLevel(logging.ERROR)
    return nncf


def quantize(
    model: onnx.ModelProto, samples: list[np.ndarray], input_name: str, kept: dict[str, str]
) -> onnx.ModelProto:
    """The Q/DQ int8 model from NNCF with this module's recipe, calibrated on `samples`, the
    nodes `kept` in float."""
    nncf = _nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    others = sorted({n.op_type for n in model.graph.node} - set(QUANTIZED_OPS))
    return nncf.quantize(
        model,
        nncf.Dataset(samples, lambda x: {input_name: x}),
        preset=nncf.QuantizationPreset.PERFORMANCE,  # symmetric weights and activations
        subset_size=len(samples),
        ignored_scope=nncf.IgnoredScope(names=list(kept), types=others),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE),
    )


def _resized(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return np.asarray(Image.fromarray(a).resize((w, h), Image.Resampling.NEAREST))


def map_limit(channels: int, size: tuple[int, int]) -> int:
    """How many maps a calibration set holds at most: MAX_MAPS, fewer where their dense inputs
    would pass MAX_SET_BYTES, never fewer than MIN_MAPS."""
    per_map = channels * size[0] * size[1] * np.dtype(np.float32).itemsize
    return max(MIN_MAPS, min(MAX_MAPS, MAX_SET_BYTES // per_map))


def _evenly(items: list, k: int) -> list:
    """At most `k` of `items`, spread evenly over them, in their order."""
    return items if len(items) <= k else [items[i * len(items) // k] for i in range(k)]


def _read_maps(source: Path, label_nc: int, instance: bool, size: tuple[int, int], limit: int):
    """(where, [(key, labels [H,W] uint8, instances [H,W] int32 or None)]): at most `limit` of
    the paired maps in a folder or list file (pairing as `p2phd render` does), spread evenly
    over them, resized (nearest) to `size`; only those are decoded."""
    from p2phd.engine.batch.render import list_images

    labels = list_images(source, "label")
    instances = list_images(source, "instance") if instance else None
    for maps in (labels, instances or labels):
        if not maps:
            raise InputError(f"{source}: no label maps (PNG files) found for calibration")
    pairs = pair_files(labels, instances)
    chosen = _evenly(pairs, limit)
    where = str(source)
    if len(chosen) < len(pairs):
        where += f" ({len(chosen)} of its {len(pairs)} maps, evenly spaced)"
        log.info("int8: calibrating on %s", where)
    maps = []
    for pair in chosen:
        lab, ins = decode_pair(pair.label, pair.instance, label_nc)
        ins = None if ins is None else _resized(ins.astype(np.int32), size)
        maps.append((pair.key, _resized(lab, size), ins))
    return where, maps


def _check_synthetic_fits(label_nc: int) -> None:
    from p2phd.train.synth import MAX_LABEL

    if label_nc <= MAX_LABEL:
        raise ConfigError(
            f"--calibration {SYNTHETIC}: its street scenes use Cityscapes label ids up to "
            f"{MAX_LABEL}, and this model takes {label_nc} labels; calibrate on its own label "
            "maps (--calibration DIR)"
        )


def _synthetic_maps(size: tuple[int, int]):
    from p2phd.train.synth import render_scene

    for seed in range(SYNTHETIC_SCENES):
        scene = render_scene(np.random.default_rng(seed), *size)
        yield f"synth_{seed:03d}", scene.label, scene.instance.astype(np.int32)


def calibration_set(model_dir: str | Path, source: str, size: tuple[int, int]) -> CalibrationSet:
    """The calibration and held-out inputs from `source` (a folder or list file of label maps
    with their instance maps, or "synthetic"), each rendered at `size` with style seed i."""
    from p2phd.engine.core.renderer import Renderer

    with Renderer(model_dir, "onnxruntime", "fp32") as renderer:
        return _render_inputs(renderer, source, size)


def _render_inputs(renderer, source: str, size: tuple[int, int]) -> CalibrationSet:
    """`calibration_set` on an open fp32 renderer of the package."""
    m = renderer.manifest
    if m.image_input:
        raise ConfigError(
            f"{renderer.package.path}: int8 calibration takes label maps; this is an image-input "
            "model"
        )
    limit = map_limit(m.input_channels, size)
    if source == SYNTHETIC:
        _check_synthetic_fits(m.label_nc)
        maps = list(itertools.islice(_synthetic_maps(size), limit))
        where = f"{len(maps)} synthetic street scenes"
    else:
        where, maps = _read_maps(Path(source), m.label_nc, m.instance, size, limit)
    if len(maps) < MIN_MAPS:
        raise InputError(
            f"{source}: {len(maps)} label map(s); int8 calibration needs at least {MIN_MAPS} "
            f"(every {HOLD_OUT_EVERY}th is held out for the quality gate)"
        )
    held = {i for i in range(len(maps)) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1}
    held = held or {len(maps) - 1}
    digest = hashlib.sha256(f"{RECIPE} {size}".encode())  # a changed recipe re-calibrates
    sets: dict[bool, list[Sample]] = {False: [], True: []}
    for i, (key, labels, instances) in enumerate(maps):
        for part in (key.encode(), labels, instances):
            digest.update(b"" if part is None else bytes(part))
        dense = renderer.dense_input(
            labels[None], instances[None] if m.instance else None, [Style(seed=i)]
        ).copy()
        sets[i in held].append(Sample(key, dense))
    return CalibrationSet(where, sets[False], sets[True], digest.hexdigest())


def calibrate(model_dir: str | Path, source: str, size: tuple[int, int]) -> CalibrationSet:
    """Quantize the package's generator on `source` and write generator.int8.onnx and its
    record into the package; a package already calibrated on the same maps is left as it is,
    one whose int8 graph was deleted or changed since is calibrated anew. One calibration of a
    package at a time: a second waits, then finds the maps calibrated or replaces the first's."""
    package = ModelPackage(model_dir, verify=False)  # a package, before anything is written
    with locked(package.engines_dir / CALIBRATION_LOCK, f"{model_dir}'s int8 graph"):
        return _calibrate(model_dir, source, size)


def _calibrate(model_dir: str | Path, source: str, size: tuple[int, int]) -> CalibrationSet:
    _drop_damaged_variant(model_dir)
    cal = calibration_set(model_dir, source, size)
    package = ModelPackage(model_dir)
    record = package.manifest.calibration.get(VARIANT, {})
    if record.get("maps_digest") == cal.digest and package.variant_path(VARIANT) is not None:
        log.info("int8: %s is already calibrated on these maps", model_dir)
        return cal
    model = split_concat.rewrite(subpixel.rewrite(onnx.load(str(package.generator_path))))
    input_name = model.graph.input[0].name
    samples = [s.dense for s in cal.calibrate]
    kept = float_layers(model)
    quantized = quantize(model, samples, input_name, kept)
    check = sensitivity.Check(package.generator_path, samples)
    search = sensitivity.keep_in_float(quantized, model, check)
    if search.kept:
        kept |= search.kept
        quantized = quantize(model, samples, input_name, kept)
    # The manifest drops the old graph before it is replaced: a crash in between leaves a package
    # without int8, not one whose hashes no longer match (which ModelPackage refuses whole).
    m = package.manifest
    m.variants.pop(VARIANT, None)
    m.calibration.pop(VARIANT, None)
    _write(package, m)
    with atomic_path(package.path / GENERATOR_INT8) as tmp:
        onnx.save(quantized, str(tmp))
    _record(ModelPackage(model_dir), cal, kept, search.summary, quantized, size)
    return cal


def _drop_damaged_variant(model_dir: str | Path) -> None:
    """Take an int8 graph that is missing or changed since it was written, and its record, out of
    the manifest: the package would not load with it, and calibrating makes it anew. Everything
    else must verify first (rewriting the manifest re-hashes the files, which would otherwise
    bless a changed generator)."""
    package = ModelPackage(model_dir, verify=False)
    m = package.manifest
    name = m.variants.get(VARIANT)
    path = package.path / str(name)
    if name is None or (path.is_file() and sha256_file(path) == m.files.get(name)):
        return
    m.files.pop(name, None)
    m.variants.pop(VARIANT)
    m.calibration.pop(VARIANT, None)
    package.verify()
    log.warning("int8: %s is missing or changed since calibration; calibrating anew", path)
    _write(package, m)


def _record(
    package: ModelPackage, cal: CalibrationSet, kept: dict[str, str], search: str, model, size
):
    """Write the variant and its calibration record into the manifest; the quality entries of
    the unchanged fp32 generator stay valid, those of an earlier int8 graph do not."""
    ops = {n.name: n.op_type for n in model.graph.node}
    quantized = sum(1 for n in model.graph.node if n.op_type == "QuantizeLinear")
    m = package.manifest
    m.variants[VARIANT] = GENERATOR_INT8
    m.calibration[VARIANT] = {
        "tool": f"nncf {_nncf().__version__}",
        "recipe": RECIPE,
        "source": cal.source,
        "size": f"{size[0]}x{size[1]}",
        "calibration_maps": [s.key for s in cal.calibrate],
        "held_out_maps": [s.key for s in cal.held_out],
        "activation_quantizers": quantized,
        "kept_in_float": [
            {"node": k, "op": ops.get(k, "?"), "why": why} for k, why in kept.items()
        ],
        "sensitivity_search": search,
        "maps_digest": cal.digest,
    }
    _write(package, m)


def _write(package: ModelPackage, m) -> None:
    """Write manifest `m` into `package`; the quality entries of its fp32 generator carry over."""
    old_key = package.content_key
    write_manifest(package.path, m)
    quality.carry_over(package.engines_dir, old_key, ModelPackage(package.path).content_key)
