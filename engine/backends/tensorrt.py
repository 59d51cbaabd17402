"""TensorRT on an NVIDIA GPU (TensorRT 10.1+ Python API, cuda-python for streams and memory).

Build: a strongly typed network parsed from generator.onnx (fp32), generator.fp16.onnx (fp16) or
generator.int8.onnx (int8: explicit Q/DQ, its unsigned quantizers made signed; the precision lives
in the graph, not in builder flags), one optimization profile over batch and
size (by default one that follows the package's size multiple), a workspace memory-pool limit and
a timing cache named for the GPU, CUDA runtime and TensorRT version. Engines are cached under a
key of (sha256 of the ONNX file and of its external weights, TensorRT and CUDA runtime versions,
GPU name and compute capability, precision, profile), so a changed model, driver stack or GPU
never loads a stale engine; beside them, per key without the profile, the profile built last
(what a backend opened without options uses). Plans, profiles and timing caches are entries of
the engine cache (compiled_cache): each carries the sha256 of its place and bytes, so a changed
plan, or one copied from another package's folder, is rebuilt, never deserialized; and each
write keeps the cache within its byte bound. The engine's I/O is checked at load: a float32
input and a float32/float16 output, both LINEAR (NCHW).

Run: tensors bound by name, `execute_async_v3` on our own non-blocking stream. Device and pinned
host buffers are allocated once, for the profile's largest batch and size, so mixed sizes never
reallocate. Each (batch bucket, height, width) gets its own execution context (its shapes never
change, so a CUDA graph captured on it stays valid; all contexts share one block of device
memory, as they never run at once) and, where the enqueue can be captured, its CUDA graph; an
enqueue that cannot be captured runs plainly for that shape, as trtexec does. At most
MAX_SHAPES of them are kept (least recently used goes). A batch runs in the smallest bucket
(powers of two up to the profile's max) that holds it. One lock serialises every use of the
buffers, contexts and stream, `close` included. With the CUDA kernels built, `render_maps`
assembles the input on the GPU straight into the engine's input buffer and converts the output
to uint8 there too.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from p2phd.common.errors import BackendUnavailable, ConfigError, InputError, PackageError
from p2phd.engine.backends.base import Backend, EngineOptions
from p2phd.engine.core import compiled_cache
from p2phd.engine.core.cuda_runtime import check as _check
from p2phd.engine.core.cuda_runtime import runtime as _cudart
from p2phd.engine.core.cuda_runtime import version_text
from p2phd.engine.core.package import ModelPackage

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 4 << 30
# opt, min, max when none are given, each rounded up to the package's size multiple
DEFAULT_SIZES = ((512, 1024), (64, 64), (1024, 2048))
MAX_SHAPES = 16  # (bucket, height, width) execution contexts and CUDA graphs kept


@dataclass(frozen=True)
class Profile:
    """An optimization profile: batch and (height, width) ranges; opt is what is tuned for."""

    batch: tuple[int, int, int]
    min_hw: tuple[int, int]
    opt_hw: tuple[int, int]
    max_hw: tuple[int, int]

    @classmethod
    def from_options(cls, options: EngineOptions, multiple: int) -> Profile:
        sizes = options.sizes
        if sizes:
            opt = sizes[0]
            lo = (min(h for h, _ in sizes), min(w for _, w in sizes))
            hi = (max(h for h, _ in sizes), max(w for _, w in sizes))
        else:
            opt, lo, hi = (tuple(-(-n // multiple) * multiple for n in hw) for hw in DEFAULT_SIZES)
        for h, w in (lo, opt, hi):
            if h % multiple or w % multiple:
                raise ConfigError(f"size {h}x{w} is not a multiple of the model's {multiple}")
        return cls(tuple(options.batch), lo, opt, hi)

    def shapes(self, channels: int) -> tuple[tuple[int, ...], ...]:
        b0, b1, b2 = self.batch
        return (
            (b0, channels, *self.min_hw),
            (b1, channels, *self.opt_hw),
            (b2, channels, *self.max_hw),
        )

    def holds(self, batch: int, h: int, w: int) -> bool:
        return (
            self.batch[0] <= batch <= self.batch[2]
            and self.min_hw[0] <= h <= self.max_hw[0]
            and self.min_hw[1] <= w <= self.max_hw[1]
        )

    def buckets(self) -> list[int]:
        """Batch sizes a CUDA graph is captured for: powers of two in range, and the max."""
        lo, _, hi = self.batch
        sizes = {b for b in (2**i for i in range(hi.bit_length() + 1)) if lo <= b <= hi}
        return sorted(sizes | {hi})

    def text(self) -> str:
        (b0, b1, b2), lo, opt, hi = self.batch, self.min_hw, self.opt_hw, self.max_hw
        return f"batch {b0}:{b1}:{b2}, size {lo[0]}x{lo[1]}:{opt[0]}x{opt[1]}:{hi[0]}x{hi[1]}"


class _Shape:
    """The execution context of one (bucket, height, width) and its CUDA graph (None: the
    enqueue could not be captured, so it runs plainly)."""

    def __init__(self, context, graph_exec):
        self.context = context
        self.graph_exec = graph_exec


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    reduced = "fp16"
    device_kind = "gpu"
    auto = True
    requires = {
        "tensorrt": "pip install -e '.[gpu]': its CUDA 12 build",
        "onnx": "pip install onnx",
    }
    variant_precisions = ("fp16", "int8")

    def __init__(self, package: ModelPackage, precision: str, options: EngineOptions | None = None):
        self._requested = options  # None: the profile built last for this package and precision
        super().__init__(package, precision, options)

    def load_impl(self) -> None:
        import tensorrt as trt

        self._trt = trt
        self._cuda = _cudart()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.gpu_name, self.compute_capability = _gpu()
        self.cuda_version = _cuda_version()
        self._folder = self.cache_folder()
        self.profile = self._pick_profile(self._requested)
        self.max_batch = self.profile.batch[2]
        self.engine = self._load_or_build()
        self.input_name, self.output_name = self._io_names()
        self.out_dtype = self._check_io()
        self.stream = _check(self._cuda.cudaStreamCreateWithFlags(self._cuda.cudaStreamNonBlocking))
        self._lock = threading.Lock()
        self._scratch_bytes = int(self.engine.device_memory_size_v2)
        self._scratch = int(_check(self._cuda.cudaMalloc(max(self._scratch_bytes, 1))))
        self._in = self._out = self._labels = self._ids = self._rgb = None
        self._table: _Buffer | None = None
        self._shapes: OrderedDict[tuple[int, int, int], _Shape] = OrderedDict()
        self.device_timer = None  # a CUDA event pair around the device work (set by the bench)

    # -- availability and cache keys ------------------------------------------------------------

    @classmethod
    def availability_impl(cls) -> str | None:
        try:
            cudart = _cudart()
        except ImportError:
            return "cuda-python is not installed (pip install -e '.[gpu]': cuda-python 12)"
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count == 0:
            return "no NVIDIA GPU is visible to CUDA"
        return None

    @functools.cached_property
    def _identity(self) -> dict:
        """What an engine depends on besides its profile (computed once: it reads the ONNX
        graph to find its external-data files)."""
        files = self.package.manifest.files
        return {
            "onnx_sha256": {name: files.get(name, "") for name in _onnx_files(self.source)},
            "tensorrt": self._trt.__version__,
            "cuda_runtime": self.cuda_version,
            "gpu": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
        }

    def _key(self, profile: Profile) -> dict:
        return {**self._identity, "profile": asdict(profile)}

    def _plan_name(self, profile: Profile) -> str:
        return f"generator.{self.precision}.{_digest(self._key(profile))}.plan"

    def _profile_name(self) -> str:
        """The entry holding the key (identity and profile) of the engine built last."""
        return f"generator.{self.precision}.{_digest(self._identity)}.profile.json"

    def _timing_cache_name(self) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-")
        return (
            f"timing.{gpu}.sm{self.compute_capability}.cuda{self.cuda_version}"
            f".trt{self._trt.__version__}.cache"
        )

    def _read(self, name: str) -> bytes | None:
        """The verified cache entry `name`, or None (missing, changed, foreign or no cache)."""
        return None if self._folder is None else compiled_cache.read_entry(self._folder / name)

    def _write(self, name: str, payload: bytes) -> None:
        if self._folder is not None:
            compiled_cache.write_entry(self._folder / name, payload)

    def _pick_profile(self, options: EngineOptions | None) -> Profile:
        """The requested profile, or else that of the engine most recently built for this key."""
        if options is None:
            saved = self._read(self._profile_name())
            if saved is not None:
                return Profile(**{k: tuple(v) for k, v in json.loads(saved)["profile"].items()})
        return Profile.from_options(options or EngineOptions(), self.package.manifest.size_multiple)

    # -- build ----------------------------------------------------------------------------------

    def _build(self) -> bytes:
        """Build the engine for `self.profile` and cache it; returns the serialized plan (used
        even when the cache cannot be written)."""
        trt = self._trt
        builder = trt.Builder(self.logger)
        # Required on TensorRT 10 (precision from the graph); always on, flag optional, on 11.
        strong = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        network = builder.create_network(0 if strong is None else 1 << int(strong))
        parser = trt.OnnxParser(network, self.logger)
        if not self._parse(parser):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise PackageError(f"{self.source}: TensorRT's ONNX parser failed: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        profile = builder.create_optimization_profile()
        channels = self.package.manifest.input_channels
        profile.set_shape(network.get_input(0).name, *self.profile.shapes(channels))
        config.add_optimization_profile(profile)
        timing = self._timing_cache_name()
        blob = self._read(timing) or b""
        if not config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False):
            log.warning("tensorrt: %s does not match this GPU; starting a new one", timing)
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
        log.info(
            "tensorrt: building %s engine (%s); this takes a while",
            self.precision,
            self.profile.text(),
        )
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise PackageError(f"{self.source}: TensorRT failed to build an engine (see log)")
        plan = bytes(serialized)
        self._write(self._plan_name(self.profile), plan)
        self._write(self._profile_name(), json.dumps(self._key(self.profile), indent=2).encode())
        self._write(timing, bytes(config.get_timing_cache().serialize()))
        return plan

    def _parse(self, parser) -> bool:
        """Parse the source graph; int8's with its unsigned quantizers made signed (TensorRT
        has signed int8 only: `qdq.signed_activations`), from memory (it has no external data)."""
        if self.precision != "int8":
            return parser.parse_from_file(str(self.source))
        import onnx

        from p2phd.engine.backends.qdq import signed_activations

        graph = signed_activations(onnx.load(str(self.source)))
        return parser.parse(graph.SerializeToString(), str(self.source))

    def _load_or_build(self):
        """The engine from its verified cached plan, else built (and cached) now."""
        runtime = self._trt.Runtime(self.logger)
        name = self._plan_name(self.profile)
        plan = self._read(name)
        engine = None if plan is None else runtime.deserialize_cuda_engine(plan)
        if engine is None:
            if plan is not None:
                log.warning("tensorrt: TensorRT could not load the cached %s; rebuilding it", name)
            engine = runtime.deserialize_cuda_engine(self._build())
        if engine is None:
            raise PackageError(f"{self.source}: TensorRT could not load the engine it just built")
        self._runtime = runtime
        return engine

    def build(self) -> list[Path]:
        if self._folder is None:
            return []
        names = (self._plan_name(self.profile), self._profile_name(), self._timing_cache_name())
        return [self._folder / n for n in names if (self._folder / n).is_file()]

    def _io_names(self) -> tuple[str, str]:
        trt = self._trt
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise PackageError(f"{self.source}: expected one input and one output, got {names}")
        return inputs[0], outputs[0]

    def _check_io(self) -> np.dtype:
        """The output's numpy dtype, after checking the engine's I/O is what the buffers and
        copies assume: a float32 input, a float32 or float16 output, both LINEAR (NCHW)."""
        trt = self._trt
        dt = trt.DataType
        for name, allowed in (
            (self.input_name, (dt.FLOAT,)),
            (self.output_name, (dt.FLOAT, dt.HALF)),
        ):
            dtype, layout = self.engine.get_tensor_dtype(name), self.engine.get_tensor_format(name)
            if dtype not in allowed or layout != trt.TensorFormat.LINEAR:
                wanted = " or ".join(a.name for a in allowed)
                raise PackageError(
                    f"{self.source}: the TensorRT engine's tensor {name!r} is {dtype.name} in "
                    f"{layout.name} format; p2phd needs {wanted} in LINEAR format "
                    "(rebuild the engine from the package's ONNX)"
                )
        return np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))

    # -- run ------------------------------------------------------------------------------------

    def _ensure_buffers(self) -> None:
        """Engine and staging buffers for the profile's largest batch and size, allocated once:
        a change of size never frees (cudaFree synchronises the whole device) or recaptures."""
        if self.stream is None:
            raise BackendUnavailable("tensorrt: this backend is closed")
        if self._in is not None:
            return
        h, w = self.profile.max_hw
        n = self.profile.batch[2] * h * w
        channels = self.package.manifest.input_channels
        sizes = (n * channels * 4, n * 3 * self.out_dtype.itemsize, n, n * 4, n * 3)
        buffers: list[_Buffer] = []
        try:
            for nbytes in sizes:
                buffers.append(_Buffer(nbytes))
        except BaseException:  # all or none: a later call must not find half of them
            for buf in buffers:
                buf.free()
            raise
        self._in, self._out, self._labels, self._ids, self._rgb = buffers

    def _bucket(self, batch: int) -> int:
        return next(b for b in self.profile.buckets() if b >= batch)

    def _context(self, shape: tuple[int, ...]):
        """A new execution context on the shared device memory, bound to our buffers at `shape`."""
        trt = self._trt
        strategy = trt.ExecutionContextAllocationStrategy.USER_MANAGED
        context = self.engine.create_execution_context(strategy)
        context.set_device_memory(self._scratch, self._scratch_bytes)
        if not context.set_input_shape(self.input_name, shape):
            raise InputError(f"tensorrt: input shape {shape} rejected by the engine")
        context.set_tensor_address(self.input_name, self._in.device)
        context.set_tensor_address(self.output_name, self._out.device)
        return context

    def _enqueue(self, context) -> None:
        if not context.execute_async_v3(int(self.stream)):
            raise RuntimeError("tensorrt: execute_async_v3 failed (see the TensorRT log)")

    def _capture(self, context, shape: tuple[int, ...]):
        """A CUDA graph of one enqueue of `context`, or None where the enqueue cannot be captured
        (the capture is ended and any partial graph destroyed; the shape then runs plainly)."""
        cuda = self._cuda
        # One plain run first: TensorRT does its shape-dependent setup outside the capture.
        self._enqueue(context)
        _check(cuda.cudaStreamSynchronize(self.stream))
        mode = cuda.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        _check(cuda.cudaStreamBeginCapture(self.stream, mode))
        enqueued, graph_exec = False, None
        try:
            enqueued = context.execute_async_v3(int(self.stream))
        finally:  # a capture left open would make every later call on the stream fail
            err, graph = cuda.cudaStreamEndCapture(self.stream)
            if enqueued and int(err) == 0 and graph is not None:
                err, graph_exec = cuda.cudaGraphInstantiate(graph, 0)
                graph_exec = graph_exec if int(err) == 0 else None
            if graph is not None:  # destroyed even when the enqueue raised
                cuda.cudaGraphDestroy(graph)
        if graph_exec is None:
            log.warning(
                "tensorrt: shape %s cannot be captured in a CUDA graph; it runs plainly", shape
            )
        return graph_exec

    def _shape_for(self, batch: int, h: int, w: int) -> _Shape:
        key = (self._bucket(batch), h, w)
        found = self._shapes.get(key)
        if found is not None:
            self._shapes.move_to_end(key)
            return found
        shape = (key[0], self.package.manifest.input_channels, h, w)
        context = self._context(shape)
        found = self._shapes[key] = _Shape(context, self._capture(context, shape))
        while len(self._shapes) > MAX_SHAPES:
            self._drop(self._shapes.popitem(last=False)[1])
        return found

    def _drop(self, shape: _Shape) -> None:
        if shape.graph_exec is not None:
            self._cuda.cudaGraphExecDestroy(shape.graph_exec)
        shape.graph_exec = shape.context = None

    def _launch(self, batch: int, h: int, w: int) -> None:
        """Run the engine on the input buffer for `batch` images: its shape's graph, or plainly."""
        found = self._shape_for(batch, h, w)
        if found.graph_exec is None:
            self._enqueue(found.context)
        else:
            _check(self._cuda.cudaGraphLaunch(found.graph_exec, self.stream))

    def _check_shape(self, batch: int, h: int, w: int) -> None:
        if not self.profile.holds(batch, h, w):
            raise InputError(
                f"tensorrt: batch {batch} of {h}x{w} is outside the engine's profile "
                f"({self.profile.text()}); build one with 'p2phd build --batch ... --size HxW'"
            )

    def _input(self, x: np.ndarray) -> np.ndarray:
        """`x` checked (`check_input`) and within the engine's profile."""
        x = self.check_input(x)
        self._check_shape(x.shape[0], *x.shape[2:])
        return x

    def _record(self, edge: str) -> None:
        if self.device_timer is not None:
            getattr(self.device_timer, f"record_{edge}")()

    def infer_impl(self, x: np.ndarray) -> np.ndarray:
        self._check_shape(x.shape[0], *x.shape[2:])
        batch, _, h, w = x.shape
        with self._lock:
            self._ensure_buffers()
            staged = self._in.host(np.float32, x.shape)
            staged[...] = x  # converted to the engine's float32 here, never copied as is
            self._record("start")
            self._in.upload(staged.nbytes, self.stream)
            self._launch(batch, h, w)
            out_shape = (batch, 3, h, w)
            self._out.download(int(np.prod(out_shape)) * self.out_dtype.itemsize, self.stream)
            self._record("end")
            _check(self._cuda.cudaStreamSynchronize(self.stream))
            return self._out.host(self.out_dtype, out_shape).astype(np.float32, copy=True)

    def layer_times(self, x: np.ndarray, runs: int = 5) -> list[dict]:
        """Per-layer times from a trt.IProfiler on `runs` plain enqueues of `x` (a profiled
        enqueue cannot be captured) on a context of its own, under the lock like every other
        use of the buffers and stream."""
        trt = self._trt
        totals: dict[str, float] = {}

        class Profiler(trt.IProfiler):
            def __init__(self):
                trt.IProfiler.__init__(self)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                totals[layer_name] = totals.get(layer_name, 0.0) + ms

        profiler = Profiler()  # held here: the context keeps only a pointer to it
        x = self._input(x)
        with self._lock:
            self._ensure_buffers()
            staged = self._in.host(np.float32, x.shape)
            staged[...] = x
            self._in.upload(staged.nbytes, self.stream)
            context = self._context(x.shape)
            context.profiler = profiler
            for _ in range(runs):
                self._enqueue(context)
                _check(self._cuda.cudaStreamSynchronize(self.stream))
        rows = [{"layer": k, "mean_ms": round(v / runs, 4)} for k, v in totals.items()]
        return sorted(rows, key=lambda r: -r["mean_ms"])

    @property
    def renders_maps(self) -> bool:
        """True when the CUDA preprocessing kernels are built: `render_maps` can be used."""
        from p2phd.engine.kernels import cuda as kernels_cuda

        return kernels_cuda.available()

    def render_maps(
        self, labels: np.ndarray, compact, table: np.ndarray | None, edges: bool, feat: int
    ) -> np.ndarray:
        """The whole pipeline on the GPU from compact maps: uint8 RGB [B, H, W, 3].

        Labels, compact ids and the feature table go up (5 bytes a pixel instead of 4 per
        input channel); the CUDA kernels write the dense input straight into the engine's input
        buffer and convert its output to uint8 on the device; only RGB bytes come back.
        """
        from p2phd.engine.kernels import cuda as kc

        batch, h, w = labels.shape
        self._check_shape(batch, h, w)
        with self._lock:
            self._ensure_buffers()
            m = self.package.manifest
            self._labels.host(np.uint8, labels.shape)[...] = labels
            ids = kmax = None
            if compact is not None:
                self._ids.host(np.int32, labels.shape)[...] = compact.ids
                ids, kmax = (
                    kc.DeviceArray(self._ids.device, labels.shape, np.dtype(np.int32)),
                    compact.kmax,
                )
            device_table = None
            if table is not None:
                if self._table is None or self._table.nbytes < table.nbytes:
                    if self._table is not None:
                        self._table.free()
                        self._table = None  # not used or freed again if the next one fails
                    self._table = _Buffer(max(table.nbytes, 1 << 16))
                self._table.host(np.float32, table.shape)[...] = table
                device_table = kc.DeviceArray(self._table.device, table.shape, np.dtype(np.float32))
            self._record("start")
            self._labels.upload(labels.nbytes, self.stream)
            if compact is not None:
                self._ids.upload(compact.ids.nbytes, self.stream)
            if table is not None:
                self._table.upload(table.nbytes, self.stream)
            stream = int(self.stream)
            x = kc.DeviceArray(
                self._in.device, (batch, m.input_channels, h, w), np.dtype(np.float32)
            )
            kc.assemble_input(
                kc.DeviceArray(self._labels.device, labels.shape, np.dtype(np.uint8)),
                ids,
                device_table,
                m.label_nc,
                edges,
                x,
                kmax=kmax or 0,
                feat_channels=feat,
                stream=stream,
            )
            self._launch(batch, h, w)
            out = kc.DeviceArray(self._out.device, (batch, 3, h, w), self.out_dtype)
            rgb_shape = (batch, h, w, 3)
            kc.to_uint8_rgb(
                out, kc.DeviceArray(self._rgb.device, rgb_shape, np.dtype(np.uint8)), stream
            )
            self._rgb.download(batch * h * w * 3, self.stream)
            self._record("end")
            _check(self._cuda.cudaStreamSynchronize(self.stream))
            return self._rgb.host(np.uint8, rgb_shape).copy()

    def device(self) -> str:
        return f"cuda:0 ({self.gpu_name}, sm{self.compute_capability})"

    def describe(self) -> dict:
        # A snapshot, without the lock: a batch may be adding or dropping shapes meanwhile.
        graphs = [s.graph_exec is not None for s in list(self._shapes.values())]
        return {
            **super().describe(),
            "profile": self.profile.text(),
            "tensorrt": self._trt.__version__,
            "cuda_runtime": self.cuda_version,
            "cuda_graphs": sum(graphs),
            "plain_shapes": len(graphs) - sum(graphs),
            "preprocessing": "cuda" if self.renders_maps else "cpu",
        }

    def close(self) -> None:
        """Free the device memory once no batch runs (a running one finishes first)."""
        with self._lock:
            if getattr(self, "stream", None) is None:
                return
            self._cuda.cudaStreamSynchronize(self.stream)  # freed either way, error or not
            for shape in self._shapes.values():
                self._drop(shape)
            self._shapes.clear()
            for buf in (self._in, self._out, self._labels, self._ids, self._rgb, self._table):
                if buf is not None:
                    buf.free()
            self._in = self._out = self._labels = self._ids = self._rgb = self._table = None
            self._cuda.cudaFree(self._scratch)
            self._cuda.cudaStreamDestroy(self.stream)
            self.stream = None
            self.engine = None


class _Buffer:
    """A device buffer and its pinned host twin of the same size, for async copies."""

    def __init__(self, nbytes: int):
        cuda = _cudart()
        self.nbytes = nbytes
        self.device = int(_check(cuda.cudaMalloc(nbytes)))
        try:
            self.pinned = int(_check(cuda.cudaMallocHost(nbytes)))
        except BaseException:
            cuda.cudaFree(self.device)
            raise

    def host(self, dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A numpy view of the first elements of the pinned buffer."""
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.pinned)
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def upload(self, nbytes: int, stream) -> None:
        cuda = _cudart()
        kind = cuda.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(cuda.cudaMemcpyAsync(self.device, self.pinned, nbytes, kind, stream))

    def download(self, nbytes: int, stream) -> None:
        cuda = _cudart()
        kind = cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cuda.cudaMemcpyAsync(self.pinned, self.device, nbytes, kind, stream))

    def free(self) -> None:
        cuda = _cudart()
        cuda.cudaFree(self.device)
        cuda.cudaFreeHost(self.pinned)


def _gpu() -> tuple[str, str]:
    """Name and compute capability ("89") of CUDA device 0."""
    cudart = _cudart()
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}{props.minor}"


def _cuda_version() -> str:
    """The CUDA runtime's version ("12.8"): engines and timing caches depend on it."""
    return version_text(int(_check(_cudart().cudaRuntimeGetVersion())))


def _digest(key: dict) -> str:
    """A short name for a cache key: the start of the sha256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _onnx_files(source: Path) -> list[str]:
    """The package files an ONNX graph consists of: itself and its external-data files."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(source), load_external_data=False)
    locations = {
        entry.value
        for tensor in model.graph.initializer
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return [source.name, *sorted(locations)]
