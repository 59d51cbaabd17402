"""TensorRT on an NVIDIA GPU (TensorRT 10/11 Python API, cuda-python for streams and memory).

Build: a strongly typed network parsed from generator.onnx (fp32) or generator.fp16.onnx (fp16:
the precision lives in the graph, not in builder flags), one optimization profile over batch and
size, a workspace memory-pool limit and a timing cache persisted beside the engines. Engines are
cached in MODEL_DIR/engines/tensorrt/ under a key of (ONNX sha256, TensorRT version, GPU name and
compute capability, precision, profile), so a changed model, driver stack or GPU never loads a
stale engine.

Run: tensors bound by name (`set_input_shape`, `set_tensor_address`), `execute_async_v3` on our
own non-blocking stream, device buffers allocated once for the profile's largest batch at a size
and reused, pinned host buffers for the copies, and one CUDA graph per batch-size bucket (powers
of two up to the profile's max; a batch runs in the smallest bucket that holds it). Callers with
their own CUDA preprocessing write into `input_pointer()` and call `run_device`.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from p2phd.engine.atomic import atomic_write_bytes
from p2phd.engine.backends.base import Backend, EngineOptions
from p2phd.engine.errors import BackendUnavailable, InputError, PackageError
from p2phd.engine.package import ModelPackage

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 4 << 30
DEFAULT_SIZES = ((512, 1024), (64, 64), (1024, 2048))  # opt, min, max when none are given


def _cudart():
    """cuda-python's runtime module (cuda.bindings.runtime, or cuda.cudart before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart
    return cudart


def _check(result):
    """Unpack a cuda-python (err, *values) tuple, raising on any CUDA error."""
    cudart = _cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != int(cudart.cudaError_t.cudaSuccess):
        _, name = cudart.cudaGetErrorName(err)
        raise RuntimeError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


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
            opt, lo, hi = DEFAULT_SIZES
        for h, w in (lo, opt, hi):
            if h % multiple or w % multiple:
                raise InputError(f"size {h}x{w} is not a multiple of the model's {multiple}")
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


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16")

    def __init__(self, package: ModelPackage, precision: str, options: EngineOptions | None = None):
        super().__init__(package, precision, options)
        reason = self.availability()
        if reason:
            raise BackendUnavailable(reason)
        import tensorrt as trt

        self._trt = trt
        self._cuda = _cudart()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.source = package.generator_path
        if precision == "fp16":
            self.source = package.variant_path("fp16")
            if self.source is None:
                raise PackageError(f"{package.path}: has no fp16 generator variant; re-export it")
        self.gpu_name, self.compute_capability = _gpu()
        self.profile = self._pick_profile(options)
        self.engine = self._load_or_build()
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = self._io_names()
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self.stream = _check(self._cuda.cudaStreamCreateWithFlags(self._cuda.cudaStreamNonBlocking))
        self._buffers_hw: tuple[int, int] | None = None
        self._dev_in = self._dev_out = self._host_in = self._host_out = 0
        self._graphs: dict[tuple[int, int, int], object] = {}
        self._shape: tuple[int, ...] | None = None

    # -- availability and cache keys ------------------------------------------------------------

    @classmethod
    def availability(cls) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "TensorRT is not installed (pip install tensorrt)"
        try:
            cudart = _cudart()
        except ImportError:
            return "cuda-python is not installed (pip install cuda-python)"
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count == 0:
            return "no NVIDIA GPU is visible to CUDA"
        return None

    def _identity(self) -> dict:
        """What an engine depends on besides its profile."""
        return {
            "onnx_sha256": self.package.manifest.files.get(self.source.name, ""),
            "tensorrt": self._trt.__version__,
            "gpu": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
        }

    def _key(self, profile: Profile) -> dict:
        return {**self._identity(), "profile": asdict(profile)}

    def _plan_path(self, profile: Profile) -> Path:
        digest = hashlib.sha256(json.dumps(self._key(profile), sort_keys=True).encode())
        return self.engine_dir() / f"generator.{self.precision}.{digest.hexdigest()[:20]}.plan"

    def _timing_cache_path(self) -> Path:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-")
        return (
            self.engine_dir()
            / f"timing.{gpu}.sm{self.compute_capability}.trt{self._trt.__version__}.cache"
        )

    def _pick_profile(self, options: EngineOptions | None) -> Profile:
        """The requested profile, or else that of an engine already built for this key."""
        multiple = self.package.manifest.size_multiple
        if options is None:
            identity = self._identity()
            for sidecar in sorted(self.engine_dir().glob("*.plan.json")):
                meta = json.loads(sidecar.read_text())
                if {k: v for k, v in meta.items() if k != "profile"} == identity:
                    p = meta["profile"]
                    return Profile(
                        tuple(p["batch"]),
                        tuple(p["min_hw"]),
                        tuple(p["opt_hw"]),
                        tuple(p["max_hw"]),
                    )
        return Profile.from_options(options or EngineOptions(), multiple)

    # -- build ----------------------------------------------------------------------------------

    def _build(self, plan: Path) -> None:
        trt = self._trt
        builder = trt.Builder(self.logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(self.source)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise PackageError(f"{self.source}: TensorRT's ONNX parser failed: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        profile = builder.create_optimization_profile()
        channels = self.package.manifest.input_channels
        profile.set_shape(network.get_input(0).name, *self.profile.shapes(channels))
        config.add_optimization_profile(profile)
        cache_path = self._timing_cache_path()
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        timing_cache = config.create_timing_cache(blob)
        config.set_timing_cache(timing_cache, ignore_mismatch=False)
        log.info(
            "tensorrt: building %s engine (%s); this takes a while",
            self.precision,
            self.profile.text(),
        )
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise PackageError(f"{self.source}: TensorRT failed to build an engine (see log)")
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
        atomic_write_bytes(plan, bytes(serialized))
        sidecar = json.dumps(self._key(self.profile), indent=2).encode()
        atomic_write_bytes(plan.with_suffix(".plan.json"), sidecar)

    def _load_or_build(self):
        plan = self._plan_path(self.profile)
        if not plan.is_file():
            self._build(plan)
        runtime = self._trt.Runtime(self.logger)
        engine = runtime.deserialize_cuda_engine(plan.read_bytes())
        if engine is None:
            raise PackageError(f"{plan}: TensorRT could not load this engine; delete it to rebuild")
        self._runtime = runtime
        return engine

    def build(self) -> list[Path]:
        plan = self._plan_path(self.profile)
        return [plan, plan.with_suffix(".plan.json"), self._timing_cache_path()]

    def _io_names(self) -> tuple[str, str]:
        trt = self._trt
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise PackageError(f"{self.source}: expected one input and one output, got {names}")
        return inputs[0], outputs[0]

    # -- run ------------------------------------------------------------------------------------

    def _ensure_buffers(self, h: int, w: int) -> None:
        """Device and pinned host buffers for the profile's max batch at (h, w), reused."""
        if self._buffers_hw == (h, w):
            return
        self._free_buffers()
        batch = self.profile.batch[2]
        channels = self.package.manifest.input_channels
        in_bytes = batch * channels * h * w * np.dtype(np.float32).itemsize
        out_bytes = batch * 3 * h * w * self.out_dtype.itemsize
        cuda = self._cuda
        self._dev_in = _check(cuda.cudaMalloc(in_bytes))
        self._dev_out = _check(cuda.cudaMalloc(out_bytes))
        self._host_in = _check(cuda.cudaMallocHost(in_bytes))
        self._host_out = _check(cuda.cudaMallocHost(out_bytes))
        self._in_bytes, self._out_bytes = in_bytes, out_bytes
        self._buffers_hw = (h, w)
        self.context.set_tensor_address(self.input_name, int(self._dev_in))
        self.context.set_tensor_address(self.output_name, int(self._dev_out))

    def _host_view(self, ptr: int, nbytes: int, dtype: np.dtype, shape: tuple) -> np.ndarray:
        raw = (ctypes.c_uint8 * nbytes).from_address(int(ptr))
        count = int(np.prod(shape))
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

    def _bucket(self, batch: int) -> int:
        return next(b for b in self.profile.buckets() if b >= batch)

    def _set_shape(self, shape: tuple[int, ...]) -> None:
        if self._shape != shape:
            if not self.context.set_input_shape(self.input_name, shape):
                raise InputError(f"tensorrt: input shape {shape} rejected by the engine")
            self._shape = shape

    def _launch(self, bucket: int, h: int, w: int) -> None:
        """Run the engine for [bucket, C, h, w] on the stream, via its CUDA graph."""
        cuda = self._cuda
        shape = (bucket, self.package.manifest.input_channels, h, w)
        self._set_shape(shape)
        key = (bucket, h, w)
        graph_exec = self._graphs.get(key)
        if graph_exec is None:
            # One plain run first: TensorRT does its shape-dependent setup outside the capture.
            if not self.context.execute_async_v3(int(self.stream)):
                raise RuntimeError("tensorrt: execute_async_v3 failed")
            _check(cuda.cudaStreamSynchronize(self.stream))
            mode = cuda.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            _check(cuda.cudaStreamBeginCapture(self.stream, mode))
            self.context.execute_async_v3(int(self.stream))
            graph = _check(cuda.cudaStreamEndCapture(self.stream))
            graph_exec = _check(cuda.cudaGraphInstantiate(graph, 0))
            _check(cuda.cudaGraphDestroy(graph))
            self._graphs[key] = graph_exec
        _check(cuda.cudaGraphLaunch(graph_exec, self.stream))

    def _check_shape(self, batch: int, h: int, w: int) -> None:
        if not self.profile.holds(batch, h, w):
            raise InputError(
                f"tensorrt: batch {batch} of {h}x{w} is outside the engine's profile "
                f"({self.profile.text()}); build one with 'p2phd build --batch ... --size HxW'"
            )

    def input_pointer(self, batch: int, h: int, w: int) -> tuple[int, int]:
        """(device pointer, stream handle) where [batch, C, h, w] float32 input is to be written."""
        self._check_shape(batch, h, w)
        self._ensure_buffers(h, w)
        return int(self._dev_in), int(self.stream)

    def run_device(self, batch: int, h: int, w: int) -> np.ndarray:
        """Run on the input already in the device buffer; return float32 [batch, 3, h, w]."""
        cuda = self._cuda
        bucket = self._bucket(batch)
        self._launch(bucket, h, w)
        nbytes = batch * 3 * h * w * self.out_dtype.itemsize
        kind = cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cuda.cudaMemcpyAsync(self._host_out, self._dev_out, nbytes, kind, self.stream))
        _check(cuda.cudaStreamSynchronize(self.stream))
        out = self._host_view(self._host_out, self._out_bytes, self.out_dtype, (batch, 3, h, w))
        return out.astype(np.float32, copy=True)

    def infer(self, x: np.ndarray) -> np.ndarray:
        batch, _, h, w = x.shape
        self._check_shape(batch, h, w)
        self._ensure_buffers(h, w)
        host = self._host_view(self._host_in, self._in_bytes, np.dtype(np.float32), x.shape)
        host[...] = x
        kind = self._cuda.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self._cuda.cudaMemcpyAsync(self._dev_in, self._host_in, x.nbytes, kind, self.stream))
        return self.run_device(batch, h, w)

    def device(self) -> str:
        return f"cuda:0 ({self.gpu_name}, sm{self.compute_capability})"

    def describe(self) -> dict:
        return {
            **super().describe(),
            "profile": self.profile.text(),
            "tensorrt": self._trt.__version__,
            "cuda_graphs": len(self._graphs),
        }

    def _free_buffers(self) -> None:
        cuda = self._cuda
        for graph_exec in self._graphs.values():
            cuda.cudaGraphExecDestroy(graph_exec)
        self._graphs.clear()
        self._shape = None
        for ptr in (self._dev_in, self._dev_out):
            if ptr:
                cuda.cudaFree(ptr)
        for ptr in (self._host_in, self._host_out):
            if ptr:
                cuda.cudaFreeHost(ptr)
        self._dev_in = self._dev_out = self._host_in = self._host_out = 0
        self._buffers_hw = None

    def close(self) -> None:
        if getattr(self, "stream", None) is None:
            return
        self._free_buffers()
        self._cuda.cudaStreamDestroy(self.stream)
        self.stream = None
        self.context = None
        self.engine = None


def _gpu() -> tuple[str, str]:
    """Name and compute capability ("89") of CUDA device 0."""
    cudart = _cudart()
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}{props.minor}"
