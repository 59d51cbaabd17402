"""A double of the TensorRT 10 Python API (`import tensorrt`): the subset p2phd calls.

Build: `Builder.create_network(1 << STRONGLY_TYPED)`, `OnnxParser.parse_from_file` or `parse` (a
Q/DQ graph only with signed int8 zero-point-0 quantizers, as TensorRT's), a builder
config with a workspace limit, optimization profiles and a timing cache; the serialized "plan"
holds the ONNX graph (external weights inlined, as a real engine holds its weights), the
profiles, and the TensorRT version and GPU it was built for, which `deserialize_cuda_engine`
checks as TensorRT does (another GPU or version: None). Run: an execution context binds tensors
by name and `execute_async_v3` enqueues the engine on the CUDA runtime double's stream, where it
runs the ONNX graph with ONNX Runtime on the bound device buffers.

What it models that matters to the backend's control flow:
- stream capture: an enqueue under capture is recorded into the graph; with `fail_capture` set it
  fails (returns False and invalidates the capture, as an uncapturable enqueue does);
- a context's shape state: the engine's kernels read the input shape the context last enqueued
  with (TensorRT keeps shape-dependent launch state in the context), so a graph captured at one
  shape and replayed after that context enqueued another shape runs at the wrong shape; TensorRT
  only supports replaying a graph while its context keeps the shapes it was captured with;
- device memory: USER_MANAGED contexts run only with `set_device_memory` of at least
  `device_memory_size_v2` bytes;
- the layer profiler: `report_layer_time` per ONNX node after each plain (uncaptured) enqueue;
  enqueueing with a profiler under capture fails.
Knobs: `fail_capture`, `tensor_dtypes` / `tensor_formats` (what built engines report for a tensor
name), `before_run` (a hook called as each engine run starts); counters: `builds` (engines
built), `timing_cache_hits`, `contexts_created`, and `errors` (what TensorRT would log).
"""

from __future__ import annotations

import enum
import json
import types

import numpy as np

from tests.doubles.cudart import CudaRuntimeDouble

PLAN_MAGIC = b"p2phd-tensorrt-double-plan/1\n"
CACHE_MAGIC = b"p2phd-tensorrt-double-timing-cache/1\n"
DEVICE_MEMORY_BYTES = 1 << 20


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    BF16 = 7
    INT64 = 8


_NUMPY = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
    DataType.INT64: np.int64,
}
_ONNX_TYPES = {1: DataType.FLOAT, 10: DataType.HALF, 11: DataType.FLOAT}  # 11 (double): rejected


def nptype(trt_type: DataType):
    """The numpy type of a TensorRT DataType."""
    return _NUMPY[DataType(trt_type)]


class TensorFormat(enum.IntEnum):
    LINEAR = 0
    CHW2 = 1
    HWC8 = 2
    CHW4 = 3
    CHW16 = 4
    CHW32 = 5


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class ExecutionContextAllocationStrategy(enum.IntEnum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


class Logger:
    """trt.Logger: keeps what it is told (tests read `messages`)."""

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = tuple(Severity)

    def __init__(self, min_severity=Severity.WARNING):
        self.min_severity = min_severity
        self.messages: list[tuple[Logger.Severity, str]] = []

    def log(self, severity, msg: str) -> None:
        self.messages.append((severity, msg))


class IHostMemory:
    """Serialized bytes TensorRT hands back (engines, timing caches)."""

    def __init__(self, data: bytes):
        self._data = data

    def __bytes__(self) -> bytes:
        return self._data

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        return len(self._data)


class IProfiler:
    """Subclass and override report_layer_time; call IProfiler.__init__(self) first."""

    def __init__(self):
        pass

    def report_layer_time(self, layer_name: str, ms: float) -> None:
        raise NotImplementedError


class ITensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: DataType):
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, flags: int):
        self.flags = flags
        self.model = None  # the parsed onnx.ModelProto
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]

    def get_flag(self, flag) -> bool:
        return bool(self.flags & (1 << int(flag)))


class IParserError:
    def __init__(self, desc: str):
        self._desc = desc

    def desc(self) -> str:
        return self._desc

    def __str__(self) -> str:
        return self._desc


def _tensors(values, initializers: set[str]) -> list[ITensor]:
    out = []
    for v in values:
        if v.name in initializers:
            continue
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        out.append(ITensor(v.name, dims, _ONNX_TYPES.get(t.elem_type, DataType.FLOAT)))
    return out


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Logger):
        self.network, self.logger = network, logger
        self.errors: list[IParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> IParserError:
        return self.errors[index]

    def parse_from_file(self, model: str) -> bool:
        import onnx

        try:
            proto = onnx.load(model)  # external data is read from beside the model
        except Exception as e:  # noqa: BLE001  (the parser reports, it does not raise)
            self.errors.append(IParserError(f"{model}: {e}"))
            return False
        return self._take(proto)

    def parse(self, model: bytes, path: str | None = None) -> bool:
        import onnx

        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as e:  # noqa: BLE001
            self.errors.append(IParserError(f"{path or 'model'}: {e}"))
            return False
        return self._take(proto)

    def _take(self, proto) -> bool:
        """Load a parsed graph into the network; as TensorRT, refuse quantizers that are not
        signed int8 with zero point 0 (its only integer quantization)."""
        from onnx import TensorProto, numpy_helper

        inits = {i.name: i for i in proto.graph.initializer}
        for node in proto.graph.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
                zero = inits[node.input[2]]
                if zero.data_type != TensorProto.INT8 or numpy_helper.to_array(zero).any():
                    self.errors.append(
                        IParserError(f"{node.name}: TRT only supports symmetric int8 quantization")
                    )
                    return False
        initializers = set(inits)
        self.network.model = proto
        self.network.inputs = _tensors(proto.graph.input, initializers)
        self.network.outputs = _tensors(proto.graph.output, set())
        return True


class IOptimizationProfile:
    def __init__(self):
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min, opt, max) -> None:  # noqa: A002  (TensorRT's names)
        self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    def get_shape(self, input: str):  # noqa: A002
        return list(self.shapes.get(input, ()))


class ITimingCache:
    def __init__(self, header: dict, entries: dict[str, float]):
        self.header, self.entries = header, entries

    def serialize(self) -> IHostMemory:
        body = json.dumps({"header": self.header, "entries": self.entries}).encode()
        return IHostMemory(CACHE_MAGIC + body)


class IBuilderConfig:
    def __init__(self, double: TensorRTDouble):
        self._double = double
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None

    def set_memory_pool_limit(self, pool, pool_size: int) -> None:
        self.pools[MemoryPoolType(pool)] = int(pool_size)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        for lo, opt, hi in profile.shapes.values():
            if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
                return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache) -> ITimingCache:
        blob = bytes(serialized_timing_cache)
        if blob.startswith(CACHE_MAGIC):
            saved = json.loads(blob[len(CACHE_MAGIC) :])
            return ITimingCache(saved["header"], saved["entries"])
        return ITimingCache(self._double.device_header(), {})

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache.header != self._double.device_header() and not ignore_mismatch:
            return False  # a cache from another GPU or TensorRT version
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.timing_cache


class Builder:
    _double: TensorRTDouble

    def __init__(self, logger: Logger):
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self._double)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def _error(self, msg: str) -> None:
        self.logger.log(Logger.ERROR, msg)

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig):
        if network.model is None:
            return self._error("network is empty (nothing parsed)")
        if not config.profiles:
            return self._error("a network with dynamic shapes needs an optimization profile")
        for profile in config.profiles:
            for tensor in network.inputs:
                shapes = profile.shapes.get(tensor.name)
                if shapes is None:
                    return self._error(f"profile has no shape for input {tensor.name}")
                for shape in shapes:
                    fixed = all(d in (-1, s) for d, s in zip(tensor.shape, shape, strict=True))
                    if len(shape) != len(tensor.shape) or not fixed:
                        return self._error(f"{tensor.name}: profile shape {shape} vs network")
        cache = config.timing_cache
        if cache is not None:
            for node in network.model.graph.node:
                key = f"{node.op_type}:{node.name}"
                self._double.timing_cache_hits += key in cache.entries
                cache.entries.setdefault(key, 0.01)
        self._double.builds += 1
        header = {
            **self._double.device_header(),
            "strongly_typed": network.get_flag(NetworkDefinitionCreationFlag.STRONGLY_TYPED),
            "profiles": [
                {name: [list(s) for s in shapes] for name, shapes in p.shapes.items()}
                for p in config.profiles
            ],
        }
        body = network.model.SerializeToString()
        return IHostMemory(PLAN_MAGIC + json.dumps(header).encode() + b"\n" + body)


class Runtime:
    _double: TensorRTDouble

    def __init__(self, logger: Logger):
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine) -> ICudaEngine | None:
        blob = bytes(serialized_engine)
        if not blob.startswith(PLAN_MAGIC):
            self.logger.log(Logger.ERROR, "not a serialized engine")
            return None
        header_line, body = blob[len(PLAN_MAGIC) :].split(b"\n", 1)
        header = json.loads(header_line)
        if {k: header[k] for k in self._double.device_header()} != self._double.device_header():
            self.logger.log(Logger.ERROR, "engine was built for another GPU or TensorRT version")
            return None
        return ICudaEngine(self._double, header, body)


class ICudaEngine:
    def __init__(self, double: TensorRTDouble, header: dict, onnx_bytes: bytes):
        import onnx
        import onnxruntime as ort

        self._double = double
        self.profiles = header["profiles"]
        model = onnx.load_from_string(onnx_bytes)
        initializers = {i.name for i in model.graph.initializer}
        self.layers = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node)]
        inputs = _tensors(model.graph.input, initializers)
        outputs = _tensors(model.graph.output, set())
        self.io = {t.name: (TensorIOMode.INPUT, t) for t in inputs}
        self.io |= {t.name: (TensorIOMode.OUTPUT, t) for t in outputs}
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, options, ["CPUExecutionProvider"])

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    @property
    def device_memory_size_v2(self) -> int:
        return DEVICE_MEMORY_BYTES

    def get_tensor_name(self, index: int) -> str:
        return list(self.io)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self.io[name][0] if name in self.io else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._double.tensor_dtypes.get(name, self.io[name][1].dtype)

    def get_tensor_format(self, name: str) -> TensorFormat:
        return self._double.tensor_formats.get(name, TensorFormat.LINEAR)

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.io[name][1].shape

    def get_tensor_profile_shape(self, name: str, profile_index: int):
        return [tuple(s) for s in self.profiles[profile_index][name]]

    def create_execution_context(
        self, strategy=ExecutionContextAllocationStrategy.STATIC
    ) -> IExecutionContext:
        return IExecutionContext(self, ExecutionContextAllocationStrategy(strategy))


class IExecutionContext:
    def __init__(self, engine: ICudaEngine, strategy: ExecutionContextAllocationStrategy):
        self.engine = engine
        self.profiler: IProfiler | None = None
        self._cuda: CudaRuntimeDouble = engine._double.cuda
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self._staged: dict[str, tuple[int, ...]] = {}  # the shapes its kernels read at run time
        self._memory: tuple[int, int] | None = None
        self._owned = None
        if strategy == ExecutionContextAllocationStrategy.STATIC:
            ptr = self._cuda.cudaMalloc(DEVICE_MEMORY_BYTES)[1]
            self._owned = self._memory = (ptr, DEVICE_MEMORY_BYTES)
        engine._double.contexts_created += 1

    def __del__(self):
        if self._owned is not None:
            self._cuda.cudaFree(self._owned[0])

    def _log_error(self, msg: str) -> bool:
        self.engine._double.errors.append(msg)
        return False

    def set_input_shape(self, name: str, shape) -> bool:
        mode, tensor = self.engine.io.get(name, (TensorIOMode.NONE, None))
        if mode != TensorIOMode.INPUT:
            return self._log_error(f"{name} is not an input")
        lo, _, hi = self.engine.profiles[0][name]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):  # noqa: B905
            return self._log_error(f"{name}: shape {shape} outside the profile {lo}..{hi}")
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self._shapes:
            return self._shapes[name]
        shape = self.engine.session.get_outputs()[0].shape
        return tuple(-1 if not isinstance(d, int) else d for d in shape)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine.io:
            return self._log_error(f"{name} is not an I/O tensor")
        self._addresses[name] = int(memory)
        return True

    def set_device_memory(self, memory: int, size: int) -> None:
        if size < self.engine.device_memory_size_v2:
            self._log_error(f"device memory of {size} bytes < {DEVICE_MEMORY_BYTES}")
            return
        self._memory = (int(memory), int(size))

    def execute_async_v3(self, stream_handle: int) -> bool:
        double = self.engine._double
        if self._memory is None:
            return self._log_error("no device memory: USER_MANAGED needs set_device_memory")
        missing = [n for n in self.engine.io if n not in self._addresses]
        missing += [
            n
            for n, (m, _) in self.engine.io.items()
            if m == TensorIOMode.INPUT and n not in self._shapes
        ]
        if missing:
            return self._log_error(f"tensors without an address or shape: {missing}")
        stream = self._cuda.stream(stream_handle)
        if stream.capturing and (self.profiler is not None or double.fail_capture):
            self._cuda.invalidate_capture(stream_handle)
            return self._log_error("this enqueue cannot be captured into a CUDA graph")
        self._staged = dict(self._shapes)
        addresses = dict(self._addresses)
        profiler = self.profiler

        def run(_start: float) -> None:
            if double.before_run is not None:
                double.before_run()
            self._run(self._staged, addresses)
            if profiler is not None:
                for layer in self.engine.layers:
                    profiler.report_layer_time(
                        layer, double.cuda.engine_ms / len(self.engine.layers)
                    )

        err = self._cuda._enqueue(stream_handle, "tensorrt engine", double.cuda.engine_ms, run)
        return int(err[0]) == 0

    def _run(self, shapes: dict[str, tuple[int, ...]], addresses: dict[str, int]) -> None:
        self._cuda.device_bytes(*self._memory)  # the context's device memory must be live
        feeds = {}
        for name, (mode, tensor) in self.engine.io.items():
            if mode == TensorIOMode.INPUT:
                dtype = np.dtype(nptype(tensor.dtype))
                n = int(np.prod(shapes[name])) * dtype.itemsize
                raw = self._cuda.device_bytes(addresses[name], n)
                feeds[name] = raw.view(dtype).reshape(shapes[name])
        results = self.engine.session.run(None, feeds)
        for (name, (_, tensor)), value in zip(
            ((n, v) for n, v in self.engine.io.items() if v[0] == TensorIOMode.OUTPUT),
            results,
            strict=True,
        ):
            value = np.ascontiguousarray(value, nptype(tensor.dtype))
            out = self._cuda.device_bytes(addresses[name], value.nbytes)
            out[...] = value.reshape(-1).view(np.uint8)


class TensorRTDouble(types.ModuleType):
    """`tensorrt`, for tests: see the module docstring. Bound to one CUDA runtime double."""

    __p2phd_double__ = True
    __version__ = "10.13.0+double"
    DataType = DataType
    TensorFormat = TensorFormat
    TensorIOMode = TensorIOMode
    NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    MemoryPoolType = MemoryPoolType
    ExecutionContextAllocationStrategy = ExecutionContextAllocationStrategy
    Logger = Logger
    IProfiler = IProfiler
    OnnxParser = OnnxParser
    nptype = staticmethod(nptype)

    def __init__(self, cuda: CudaRuntimeDouble):
        super().__init__("tensorrt")
        self.cuda = cuda
        self.Builder = type("Builder", (Builder,), {"_double": self})
        self.Runtime = type("Runtime", (Runtime,), {"_double": self})
        self.fail_capture = False
        self.before_run = None  # called as each engine run starts on the device
        self.tensor_dtypes: dict[str, DataType] = {}
        self.tensor_formats: dict[str, TensorFormat] = {}
        self.builds = 0
        self.timing_cache_hits = 0
        self.contexts_created = 0
        self.errors: list[str] = []

    def device_header(self) -> dict:
        """What an engine or timing cache is specific to: TensorRT version and GPU."""
        cuda = self.cuda
        return {
            "tensorrt": self.__version__,
            "gpu": cuda.device_name,
            "capability": list(cuda.capability),
        }
