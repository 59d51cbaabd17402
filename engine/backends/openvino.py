"""OpenVINO on the CPU: bf16 where the CPU computes it natively (AMX, AVX512-BF16), else fp32.

One compiled model per input size (height and width static: static spatial shapes let the CPU
plugin pick its fastest convolutions), each with one reused infer request; batch 1, the latency
case, gets a fully static model (faster than a dynamic batch: `benchmarks/openvino_tuning.py
--batch-dim static,dynamic` measures it), and so does the profile's largest batch (the full
batches of `p2phd render` and of a loaded server; int8 on the 512p generator 4% faster) where
the memory budget holds a third model per size; the batches between share one with a dynamic
batch dimension, so a server's varying batch sizes compile nothing new after `p2phd build`.
The performance hint is LATENCY: each call is one synchronous request (the server batches
upstream), which THROUGHPUT's several CPU streams would each run with fewer cores.

A generator whose first layer is a convolution over the one-hot label map (pix2pixHD's 7x7) runs
it from the labels instead (openvino_first_layer): its weights are read off the compiled graph
once at load, each call computes it with p2phd.engine.kernels.one_hot_conv in float32, and
the compiled model starts after it (the largest int8 layer on Zen 4 and on AMX, with its input's
layout reorder: benchmarks/results/first-conv/). In an int8 graph whose next layer reads the
convolution's normalised output as uint8 levels, the kernel computes those levels too
(one_hot_conv_levels) and the compiled model starts at them. An input whose label channels are
not one-hot runs the whole graph. $P2PHD_OPENVINO_FIRST_CONV (to compare): `graph` keeps the
whole graph, `conv` computes the convolution alone, `labels` (the default) as much as it can.

Compiled models are exported to the engine cache (outside the package, each blob with its own
sha256: a changed blob is recompiled, never run), so a restart compiles nothing. In memory they
are bounded by estimated bytes ($P2PHD_ENGINE_MEMORY_MB, default 2048): whenever one is used
(by a call or by `build`) the least recently used others are released until the rest fit; the
one in use always stays.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p2phd.common.errors import ConfigError
from p2phd.engine.backends.base import Backend, EngineOptions
from p2phd.engine.backends.openvino_first_layer import (
    cut_first_conv,
    has_norm_chain,
    narrow_dense_input,
    probe_first_conv,
    probe_levels,
    probe_shape,
)
from p2phd.engine.backends.openvino_graph import CHANNEL_BLOCK, folded
from p2phd.engine.backends.openvino_rewrites import (
    drop_biases,
    droppable_biases,
    normalised_concats,
    space_to_depth_narrow_convs,
)
from p2phd.engine.core import compiled_cache
from p2phd.engine.core.cpu_features import (
    bf16_instructions,
    cpu_flags,
    int8_instructions,
    int8_unsupported,
)
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.kernels import (
    Levels,
    OneHotConv,
    one_hot_conv,
    one_hot_conv_levels,
    one_hot_labels,
)

log = logging.getLogger(__name__)

MEMORY_ENV = "P2PHD_ENGINE_MEMORY_MB"
DEFAULT_MEMORY_MB = 2048
FIRST_CONV_ENV = "P2PHD_OPENVINO_FIRST_CONV"
FIRST_CONV_MODES = ("labels", "conv", "graph")  # the default first
# The graph rewrites (openvino_rewrites, openvino_first_layer) in the engine cache key: blobs
# compiled before a change to them are not imported.
REWRITES = "s2d-v3-cut3-bias1"


def first_conv_mode() -> str:
    """$P2PHD_OPENVINO_FIRST_CONV, checked: `labels` (the default) computes the first layer from
    the labels as far as it can (in an int8 graph, to the levels its second layer reads),
    `conv` the convolution alone, `graph` nothing (to compare)."""
    mode = os.environ.get(FIRST_CONV_ENV, FIRST_CONV_MODES[0])
    if mode not in FIRST_CONV_MODES:
        expected = ", ".join(repr(m) for m in FIRST_CONV_MODES)
        raise ConfigError(f"${FIRST_CONV_ENV}: expected one of {expected}, got {mode!r}")
    return mode


@dataclass
class _Compiled:
    """One compiled shape, its infer request, and the largest batch it has run."""

    model: object
    request: object
    height: int
    width: int
    batch: int = 1


def memory_budget() -> int:
    """The bound on compiled models' estimated bytes, from $P2PHD_ENGINE_MEMORY_MB."""
    return compiled_cache.env_megabytes(MEMORY_ENV, DEFAULT_MEMORY_MB)


def _elements(shape) -> int:
    """Elements of a tensor as the CPU plugin lays it out: NCHW channels in blocks of 16."""
    dims = list(shape)
    if len(dims) == 4:
        dims[1] = -(-dims[1] // CHANNEL_BLOCK) * CHANNEL_BLOCK
    return int(np.prod(dims))


def _footprint(model, itemsize: int) -> tuple[int, int]:
    """(weight bytes, other bytes) a statically shaped model holds once compiled: the largest set
    of intermediate tensors alive at once in execution order (a memory-reusing runtime's peak),
    plus the infer request's inputs and output at their element types (float32; the uint8
    levels of a cut int8 graph; checked against measured resident memory in commit a7ae9e6).
    Ops computed from constants alone (an int8 weight's Convert and scale Multiply) are folded
    into their weights when compiled: not intermediate tensors."""
    ops = model.get_ordered_ops()
    weights, last_use, sizes, folded = 0, {}, {}, set()
    for i, op in enumerate(ops):
        name = op.get_friendly_name()
        sources = [inp.get_source_output() for inp in op.inputs()]
        if op.get_type_name() == "Constant":
            weights += op.get_byte_size()
        if op.get_type_name() == "Constant" or (
            sources and all(s.get_node().get_friendly_name() in folded for s in sources)
        ):
            folded.add(name)
            continue
        for out in op.outputs():
            sizes[(name, out.get_index())] = _elements(out.get_shape())
        for src in sources:
            if src.get_node().get_friendly_name() not in folded:
                last_use[(src.get_node().get_friendly_name(), src.get_index())] = i
    frees: dict[int, list] = {}
    for tensor, i in last_use.items():
        frees.setdefault(i, []).append(tensor)
    live = peak = 0
    for i, op in enumerate(ops):
        name = op.get_friendly_name()
        live += sum(sizes.get((name, k), 0) for k in range(op.get_output_size()))
        peak = max(peak, live)
        live -= sum(sizes[t] for t in frees.get(i, []))
    io_bytes = sum(
        int(np.prod(list(t.get_shape()))) * t.get_element_type().size
        for t in [*model.inputs, *model.outputs]
    )
    return weights, peak * itemsize + io_bytes


class OpenVINOBackend(Backend):
    name = "openvino"
    precisions = ("fp32", "bf16", "int8")
    reduced = "bf16"
    auto = True
    requires = {"openvino": "pip install openvino"}
    variant_precisions = ("int8",)  # bf16 is a compile hint on generator.onnx

    def __init__(
        self,
        package: ModelPackage,
        precision: str,
        options: EngineOptions | None = None,
        performance_hint: str = "LATENCY",
    ):
        self.performance_hint = performance_hint
        super().__init__(package, precision, options)

    def load_impl(self) -> None:
        import openvino as ov

        self._ov = ov
        self.core = ov.Core()
        self.model = self.core.read_model(str(self.source))
        self.input_name = self.model.inputs[0].get_any_name()
        self.config = {
            # int8: the layers kept in float run in bf16 where the CPU has it (faster, and
            # within the int8 gate, which measures this configuration)
            "INFERENCE_PRECISION_HINT": "bf16" if self._bf16_float(self.precision) else "f32",
            "PERFORMANCE_HINT": self.performance_hint,
        }
        mode = first_conv_mode()
        self.first_conv = self._first_conv(mode)
        self.levels, self._biases = self._constant_rewrites(levels=mode == "labels")
        log.debug("openvino: first layer %s", self._first_layer_text(self.first_conv, self.levels))
        self.memory_budget = memory_budget()
        self._folder = self.cache_folder()  # None: compile every shape, cache nothing
        # One small shape of the graph the label maps run on tells: which channels of the dense
        # input the layers after a cut first convolution read too (a tail reads the instance
        # features, a local enhancer's global generator the whole downsampled input), and the
        # compiled models' weight bytes and other bytes per image pixel.
        side = self.package.manifest.size_multiple * 8
        sample, self._dense = self._shaped(1, side, side, self.first_conv is not None)
        self.reads_one_hot = self.first_conv is None or (
            self._dense is not None and self._dense.start < self.package.manifest.label_nc
        )
        weights, held = _footprint(sample, 2 if self._bf16_float(self.precision) else 4)
        self._weight_bytes, self._bytes_per_pixel = weights, held / (side * side)
        self._compiled: OrderedDict[tuple[int, int, int, bool], _Compiled] = OrderedDict()

    def _first_conv(self, mode: str) -> OneHotConv | None:
        """The generator's first convolution to compute from the labels, or None (image input,
        another first layer, or $P2PHD_OPENVINO_FIRST_CONV=graph)."""
        m = self.package.manifest
        if mode == "graph" or m.image_input:
            return None
        return probe_first_conv(self.core, self.model, m.label_nc)

    def _constant_rewrites(self, levels: bool) -> tuple[Levels | None, set[str]]:
        """What the rewrites that read constant values find: the first layer's uint8 levels
        (`levels` asks for them; an int8 graph's first layer has them) and the phase biases to
        drop. They read them off a copy of the graph at a small size with its constants folded,
        int8 weights to float too (~700 MB on the 512p generator): made only where a pattern is
        in the graph's structure, and not kept."""
        levels = levels and self.first_conv is not None and has_norm_chain(self.model)
        concats = normalised_concats(self.model)
        if not (levels or concats):
            return None, set()
        m = self.package.manifest
        small = folded(self.model, probe_shape(m.input_channels, m.size_multiple))
        found = probe_levels(self.core, small, self.first_conv) if levels else None
        return found, droppable_biases(small) if concats else set()

    @staticmethod
    def _first_layer_text(conv: OneHotConv | None, levels: Levels | None) -> str:
        if conv is None:
            return "in the graph"
        return "from the labels" + (", normalised to uint8 levels" if levels else "")

    @classmethod
    def reduced_unsupported_impl(cls, precision: str) -> str | None:
        if precision == "bf16" and not bf16_instructions():
            return "this CPU has neither AMX nor AVX512-BF16 (flags amx_bf16, avx512_bf16)"
        return int8_unsupported() if precision == "int8" else None

    @staticmethod
    def _bf16_float(precision: str) -> bool:
        return precision == "bf16" or (precision == "int8" and bool(bf16_instructions()))

    def cache_key(self) -> str:
        """Blobs are specific to the OpenVINO version, the CPU's instruction sets and the graph
        rewrites they were compiled with."""
        flags = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:10]
        return f"openvino-{self._ov.__version__.split('-')[0]}-cpu-{flags}-{REWRITES}"

    # -- memory ---------------------------------------------------------------------------------

    def estimated_bytes(self) -> int:
        """What the compiled models held now take, estimated from their shapes and batches."""
        return sum(
            self._weight_bytes + int(self._bytes_per_pixel * c.batch * c.height * c.width)
            for c in self._compiled.values()
        )

    def _fit_memory(self) -> None:
        """Release least recently used compiled models until the rest fit the budget; the most
        recent one stays (it is what the next call most likely needs)."""
        while len(self._compiled) > 1 and self.estimated_bytes() > self.memory_budget:
            key, _ = self._compiled.popitem(last=False)
            log.debug("openvino: released %s to stay within %d MB", key, self.memory_budget >> 20)

    # -- compile, cache, run --------------------------------------------------------------------

    def _shaped(
        self, batch: int, height: int, width: int, cut: bool
    ) -> tuple[object, range | None]:
        """The model for one shape, and the channels of the dense input its second input takes
        (None: it has none); `cut`: starting after the first convolution."""
        model = self.model.clone()
        channels = self.package.manifest.input_channels
        model.reshape({self.input_name: self._ov.PartialShape([batch, channels, height, width])})
        dense = None
        if cut:
            model = cut_first_conv(model, levels=self.levels is not None)
            model, dense = narrow_dense_input(model)
        drop_biases(model, self._biases)
        space_to_depth_narrow_convs(model)
        return model, dense

    def _blob_path(self, key: tuple[int, int, int, bool]) -> Path | None:
        """Where this shape's compiled blob is cached, or None when there is no usable cache."""
        batch, height, width, cut = key
        if self._folder is None:
            return None
        hint = self.performance_hint.lower()
        shape = f"{'n' if batch == -1 else batch}x{height}x{width}"
        start = (".levels" if self.levels else ".cut") if cut else ""
        return self._folder / f"generator.{self.precision}.{hint}.{shape}{start}.blob"

    def _compile(self, key: tuple[int, int, int, bool]):
        """The compiled model for `key`: imported from its verified cached blob, else compiled
        and cached."""
        path = self._blob_path(key)
        blob = compiled_cache.read_entry(path) if path else None
        if blob is not None:
            try:
                return self.core.import_model(blob, "CPU", self.config)
            except RuntimeError as e:  # e.g. a blob from another build of the plugin
                log.warning("openvino: cannot import %s (%s); recompiling", path, e)
        compiled = self.core.compile_model(self._shaped(*key)[0], "CPU", self.config)
        log.debug("openvino: compiled %s at %s", key, self.precision)
        if path:
            stream = io.BytesIO()
            compiled.export_model(stream)
            compiled_cache.write_entry(path, stream.getvalue())
        return compiled

    def _shape_key(
        self, batch: int, height: int, width: int, cut: bool
    ) -> tuple[int, int, int, bool]:
        """The compiled model an input runs on: (batch, height, width, cut), batch -1 for the
        model with a dynamic batch dimension, cut for the one after the first convolution."""
        hi = self.options.batch[2]
        static = batch == 1 or (batch == hi and self._static_fits(height, width))
        return (batch if static else -1, height, width, cut)

    def _static_fits(self, height: int, width: int) -> bool:
        """Whether models for batch 1, the profile's largest batch and the dynamic one at this
        size fit the memory budget together (else the largest batch shares the dynamic one)."""
        hi = self.options.batch[2]
        pixels = (1 + 2 * hi) * height * width
        return 3 * self._weight_bytes + self._bytes_per_pixel * pixels <= self.memory_budget

    def _entry(self, batch: int, height: int, width: int, cut: bool) -> _Compiled:
        """The compiled shape for this input, compiling (or loading from the cache) on first use."""
        key = self._shape_key(batch, height, width, cut)
        entry = self._compiled.get(key)
        if entry is None:
            compiled = self._compile(key)
            entry = _Compiled(compiled, compiled.create_infer_request(), height, width)
            self._compiled[key] = entry
        self._compiled.move_to_end(key)
        entry.batch = max(entry.batch, batch)
        self._fit_memory()
        return entry

    def infer_impl(self, x: np.ndarray) -> np.ndarray:
        conv = self.first_conv
        x = np.ascontiguousarray(x, np.float32)
        return self._run(x, None if conv is None else one_hot_labels(x, conv.label_nc))

    def infer_labeled(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(self.check_input(x), np.float32)
        return self._run(x, None if self.first_conv is None else labels)

    def _run(self, x: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """The network on x; from after its first convolution where x's labels are given."""
        batch, _, height, width = x.shape
        conv = self.first_conv
        entry = self._entry(batch, height, width, labels is not None)
        request = entry.request
        if labels is None:  # not a label map's input (or no first convolution to cut)
            request.infer({0: x}, share_inputs=True)
        else:  # the first convolution written straight into the request's input tensor
            tensor = request.get_input_tensor(0)
            if self.levels is None:
                tensor.set_shape([batch, conv.channels_out, height, width])
                one_hot_conv(x, labels, conv, out=tensor.data)
            else:
                tensor.set_shape([batch, height, width, conv.channels_out])
                one_hot_conv_levels(x, labels, conv, self.levels, out=tensor.data)
            # layers past the first may read some of the input too (a tail reading the features)
            dense = self._dense
            read = (
                {} if dense is None else {1: np.ascontiguousarray(x[:, dense.start : dense.stop])}
            )
            request.infer(read, share_inputs=True)
        return request.get_output_tensor(0).data.copy()

    def build(self) -> list[Path]:
        lo, _, hi = self.options.batch
        batches = {lo, hi, min(lo + 1, hi)}  # lo + 1: the dynamic model, where lo < hi
        cut = self.first_conv is not None  # what label maps run on
        shapes = {(b, h, w, cut) for h, w in self.options.sizes for b in batches}
        for shape in shapes:
            self._entry(*shape)
        paths = {self._blob_path(self._shape_key(*shape)) for shape in shapes}
        return sorted(p for p in paths if p is not None and p.is_file())

    def describe(self) -> dict:
        isa, int8_isa, conv = bf16_instructions(), int8_instructions(), self.first_conv
        return {
            **super().describe(),
            "performance_hint": self.performance_hint,
            "cpu_bf16": ", ".join(isa) if isa else "none",
            "cpu_int8": ", ".join(int8_isa) if int8_isa else "none",
            "first_conv": self._first_layer_text(conv, self.levels),
            **({} if conv is None else {"first_conv_macs_per_pixel": conv.macs_per_pixel}),
            "openvino": self._ov.__version__,
        }

    def close(self) -> None:
        self._compiled.clear()
