"""A double of cuda-python's runtime module (`cuda.bindings.runtime`): the calls p2phd makes.

Conventions as in cuda-python: every call returns a tuple `(cudaError_t, *values)`; streams,
events and graphs are handle objects that `int()` turns into their address; pointers are ints.

Memory: device allocations live in a fake address space (ints far above user space, mapped to
numpy buffers: a host dereference of one would crash, as on a real GPU); pinned host allocations
are real host memory (numpy), kept alive after cudaFreeHost so a stale view cannot crash the
test, but any copy from or to freed or out-of-bounds memory fails with cudaErrorInvalidValue.

Time: a virtual device timeline, so CUDA events measure what a GPU would, deterministically.
Host time only advances through `advance_host(ms)` (a test says "this host step takes N ms") and
synchronisation; each device operation starts when both the host has enqueued it and the stream
is free, and lasts its modelled cost (copies at `copy_gbps`, engine runs `engine_ms`). An event
completes when the work before it on its stream has. Work runs eagerly at enqueue, except during
stream capture, when it is recorded into the graph instead and runs at cudaGraphLaunch.
"""

from __future__ import annotations

import ctypes
import enum
import types
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

DEVICE_BASE = 0x7_0000_0000_0000  # above the 47-bit user address space: never a host pointer
ALIGN = 256


class cudaError_t(enum.IntEnum):  # noqa: N801  (cuda-python's names)
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100
    cudaErrorInvalidResourceHandle = 400
    cudaErrorNotReady = 600
    cudaErrorIllegalAddress = 700
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorStreamCaptureUnmatched = 903


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class cudaStreamCaptureStatus(enum.IntEnum):  # noqa: N801
    cudaStreamCaptureStatusNone = 0
    cudaStreamCaptureStatusActive = 1
    cudaStreamCaptureStatusInvalidated = 2


class cudaDeviceAttr(enum.IntEnum):  # noqa: N801
    cudaDevAttrClockRate = 13
    cudaDevAttrMultiProcessorCount = 16


class _Handle:
    """An opaque CUDA handle: int() gives its address, as cuda-python's handle types do."""

    _next = 0x1000

    def __init__(self):
        _Handle._next += 0x10
        self._address = _Handle._next

    def __int__(self) -> int:
        return self._address

    def getPtr(self) -> int:  # noqa: N802
        return self._address


class cudaStream_t(_Handle):  # noqa: N801
    def __init__(self):
        super().__init__()
        self.tail_ms = 0.0  # when the work enqueued so far completes
        self.capturing = False
        self.invalidated = False
        self.nodes: list[_Node] = []


class cudaEvent_t(_Handle):  # noqa: N801
    def __init__(self):
        super().__init__()
        self.at_ms: float | None = None


class cudaGraph_t(_Handle):  # noqa: N801
    def __init__(self, nodes: list[_Node]):
        super().__init__()
        self.nodes = nodes


class cudaGraphExec_t(_Handle):  # noqa: N801
    def __init__(self, nodes: list[_Node]):
        super().__init__()
        self.nodes = nodes


@dataclass
class cudaDeviceProp:  # noqa: N801
    name: bytes
    major: int
    minor: int
    multiProcessorCount: int  # noqa: N815
    totalGlobalMem: int  # noqa: N815


@dataclass
class _Node:
    """One operation on a stream: its cost on the device and what it does when it runs."""

    what: str
    cost_ms: float
    run: Callable[[float], None]  # called with the time the operation starts


@dataclass
class _Alloc:
    base: int
    array: np.ndarray  # uint8
    device: bool
    freed: bool = False


class DeviceFault(Exception):
    """An operation touched memory it does not own (a real GPU: an illegal address)."""


@dataclass
class _State:
    device: dict[int, _Alloc] = field(default_factory=dict)
    pinned: dict[int, _Alloc] = field(default_factory=dict)
    next_device: int = DEVICE_BASE
    host_ms: float = 0.0
    live: Counter = field(default_factory=Counter)  # streams, events, graphs, graph execs


class CudaRuntimeDouble(types.ModuleType):
    """`cuda.bindings.runtime`, for tests: see the module docstring."""

    __p2phd_double__ = True
    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamCaptureMode = cudaStreamCaptureMode
    cudaStreamCaptureStatus = cudaStreamCaptureStatus
    cudaDeviceAttr = cudaDeviceAttr
    cudaStream_t = cudaStream_t
    cudaStreamNonBlocking = 1
    cudaStreamDefault = 0

    def __init__(self, name: str = "p2phd test double (no GPU)", capability=(9, 0)):
        super().__init__("cuda.bindings.runtime")
        self.device_name = name
        self.capability = capability
        self.runtime_version = 12080  # 1000 * major + 10 * minor
        self.copy_gbps = 20.0
        self.engine_ms = 1.0
        self.calls: Counter = Counter()  # runtime API calls by name
        self.ran: Counter = Counter()  # device operations run (not just enqueued), by kind
        self.faults: list[str] = []
        self.state = _State()
        self._streams: dict[int, cudaStream_t] = {}
        self._default = cudaStream_t()
        self._streams[0] = self._default

    # -- bookkeeping ----------------------------------------------------------------------------

    def __getattribute__(self, name: str):
        if name in _API:
            object.__getattribute__(self, "calls")[name] += 1
        return object.__getattribute__(self, name)

    def advance_host(self, ms: float) -> None:
        """The host spends `ms` milliseconds (a test models a slow host step with this)."""
        self.state.host_ms += ms

    def stream(self, handle) -> cudaStream_t:
        s = self._streams.get(int(handle))
        if s is None:
            raise DeviceFault(f"unknown stream {int(handle):#x}")
        return s

    def device_bytes(self, ptr: int, nbytes: int) -> np.ndarray:
        """A uint8 view of `nbytes` of device memory at `ptr` (DeviceFault if not all owned)."""
        return self._view(self.state.device, ptr, nbytes, "device")

    def device_allocated(self) -> int:
        return sum(a.array.nbytes for a in self.state.device.values() if not a.freed)

    def _view(self, table: dict[int, _Alloc], ptr: int, nbytes: int, what: str) -> np.ndarray:
        for a in table.values():
            if a.base <= ptr < a.base + max(a.array.nbytes, 1):
                if a.freed:
                    raise DeviceFault(f"{what} memory at {ptr:#x} was freed")
                off = ptr - a.base
                if off + nbytes > a.array.nbytes:
                    raise DeviceFault(
                        f"{nbytes} bytes at {ptr:#x} overrun the {a.array.nbytes}-byte "
                        f"{what} allocation at {a.base:#x}"
                    )
                return a.array[off : off + nbytes]
        raise DeviceFault(f"{ptr:#x} is not {what} memory")

    def _host_bytes(self, ptr: int, nbytes: int) -> np.ndarray:
        """Pinned memory is bounds-checked; other host memory is pageable and read as is."""
        try:
            return self._view(self.state.pinned, ptr, nbytes, "pinned host")
        except DeviceFault as e:
            if "is not" not in str(e):
                raise
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))

    def _enqueue(self, stream, what: str, cost_ms: float, run: Callable[[float], None]):
        s = self.stream(stream)
        node = _Node(what, cost_ms, run)
        if s.capturing:
            s.nodes.append(node)
            return (cudaError_t.cudaSuccess,)
        return self._execute(s, [node])

    def _execute(self, s: cudaStream_t, nodes: list[_Node]):
        for node in nodes:
            start = max(self.state.host_ms, s.tail_ms)
            try:
                node.run(start)
            except DeviceFault as e:
                self.faults.append(f"{node.what}: {e}")
                return (cudaError_t.cudaErrorIllegalAddress,)
            s.tail_ms = start + node.cost_ms
            self.ran[node.what] += 1
        return (cudaError_t.cudaSuccess,)

    # -- device ---------------------------------------------------------------------------------

    def cudaGetDeviceCount(self):  # noqa: N802
        return (cudaError_t.cudaSuccess, 1)

    def cudaGetDeviceProperties(self, device: int):  # noqa: N802
        if device != 0:
            return (cudaError_t.cudaErrorInvalidValue, None)
        name = self.device_name.encode()
        props = cudaDeviceProp(name, *self.capability, 132, 80 * 2**30)
        return (cudaError_t.cudaSuccess, props)

    def cudaDeviceGetAttribute(self, attr, device: int):  # noqa: N802
        values = {cudaDeviceAttr.cudaDevAttrClockRate: 1_980_000}
        values[cudaDeviceAttr.cudaDevAttrMultiProcessorCount] = 132
        return (cudaError_t.cudaSuccess, values[cudaDeviceAttr(attr)])

    def cudaRuntimeGetVersion(self):  # noqa: N802
        return (cudaError_t.cudaSuccess, self.runtime_version)

    def cudaMemGetInfo(self):  # noqa: N802
        total = 80 * 2**30
        return (cudaError_t.cudaSuccess, total - self.device_allocated(), total)

    def cudaDeviceSynchronize(self):  # noqa: N802
        for s in self._streams.values():
            self.state.host_ms = max(self.state.host_ms, s.tail_ms)
        return (cudaError_t.cudaSuccess,)

    # -- memory ---------------------------------------------------------------------------------

    def cudaMalloc(self, size: int):  # noqa: N802
        st = self.state
        base = st.next_device
        st.next_device += -(-max(size, 1) // ALIGN) * ALIGN + ALIGN  # a guard gap between
        st.device[base] = _Alloc(base, np.zeros(size, np.uint8), device=True)
        return (cudaError_t.cudaSuccess, base)

    def cudaMallocHost(self, size: int):  # noqa: N802
        array = np.zeros(max(size, 1), np.uint8)
        base = array.ctypes.data
        self.state.pinned[base] = _Alloc(base, array[:size], device=False)
        return (cudaError_t.cudaSuccess, base)

    def _free(self, table: dict[int, _Alloc], ptr: int):
        a = table.get(int(ptr))
        if a is None or a.freed:
            return (cudaError_t.cudaErrorInvalidValue,)
        a.freed = True  # the array stays referenced: a stale view reads garbage, not a crash
        return (cudaError_t.cudaSuccess,)

    def cudaFree(self, devPtr: int):  # noqa: N802, N803
        self.cudaDeviceSynchronize()  # cudaFree synchronises the device
        return self._free(self.state.device, devPtr)

    def cudaFreeHost(self, ptr: int):  # noqa: N802
        return self._free(self.state.pinned, ptr)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind, stream):  # noqa: N802
        kind = cudaMemcpyKind(kind)
        to_device = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, 3)
        from_device = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, 3)
        try:  # arguments are checked at the call, as the runtime does
            (self.device_bytes if to_device else self._host_bytes)(int(dst), count)
            (self.device_bytes if from_device else self._host_bytes)(int(src), count)
        except DeviceFault as e:
            self.faults.append(f"cudaMemcpyAsync: {e}")
            return (cudaError_t.cudaErrorInvalidValue,)

        def run(_start: float) -> None:
            out = (self.device_bytes if to_device else self._host_bytes)(int(dst), count)
            out[...] = (self.device_bytes if from_device else self._host_bytes)(int(src), count)

        cost = count / (self.copy_gbps * 1e6)
        return self._enqueue(stream, f"memcpy {kind.name}", cost, run)

    # -- streams and events ---------------------------------------------------------------------

    def cudaStreamCreateWithFlags(self, flags: int):  # noqa: N802
        s = cudaStream_t()
        self._streams[int(s)] = s
        self.state.live["stream"] += 1
        return (cudaError_t.cudaSuccess, s)

    def cudaStreamCreate(self):  # noqa: N802
        return self.cudaStreamCreateWithFlags(self.cudaStreamDefault)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        if self._streams.pop(int(stream), None) is None:
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        self.state.live["stream"] -= 1
        return (cudaError_t.cudaSuccess,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        s = self.stream(stream)
        if s.capturing:  # illegal during capture: it invalidates the capture
            s.invalidated = True
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        self.state.host_ms = max(self.state.host_ms, s.tail_ms)
        return (cudaError_t.cudaSuccess,)

    def cudaEventCreate(self):  # noqa: N802
        self.state.live["event"] += 1
        return (cudaError_t.cudaSuccess, cudaEvent_t())

    def cudaEventDestroy(self, event):  # noqa: N802
        self.state.live["event"] -= 1
        return (cudaError_t.cudaSuccess,)

    def cudaEventRecord(self, event, stream):  # noqa: N802
        def run(start: float) -> None:
            event.at_ms = start

        return self._enqueue(stream, "event record", 0.0, run)

    def cudaEventSynchronize(self, event):  # noqa: N802
        if event.at_ms is None:
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        self.state.host_ms = max(self.state.host_ms, event.at_ms)
        return (cudaError_t.cudaSuccess,)

    def cudaEventElapsedTime(self, start, end):  # noqa: N802
        if start.at_ms is None or end.at_ms is None:
            return (cudaError_t.cudaErrorInvalidResourceHandle, 0.0)
        return (cudaError_t.cudaSuccess, float(end.at_ms - start.at_ms))

    # -- stream capture and graphs --------------------------------------------------------------

    def cudaStreamBeginCapture(self, stream, mode):  # noqa: N802
        s = self.stream(stream)
        if s.capturing or s is self._default:
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        s.capturing, s.invalidated, s.nodes = True, False, []
        return (cudaError_t.cudaSuccess,)

    def cudaStreamIsCapturing(self, stream):  # noqa: N802
        s = self.stream(stream)
        status = cudaStreamCaptureStatus
        if not s.capturing:
            return (cudaError_t.cudaSuccess, status.cudaStreamCaptureStatusNone)
        active = status.cudaStreamCaptureStatusInvalidated if s.invalidated else status(1)
        return (cudaError_t.cudaSuccess, active)

    def invalidate_capture(self, stream) -> None:
        """What a capture-breaking call does to the stream's capture (used by the TensorRT
        double when an enqueue fails under capture)."""
        self.stream(stream).invalidated = True

    def cudaStreamEndCapture(self, stream):  # noqa: N802
        s = self.stream(stream)
        if not s.capturing:
            return (cudaError_t.cudaErrorStreamCaptureUnmatched, None)
        s.capturing, nodes, s.nodes = False, s.nodes, []
        if s.invalidated:
            return (cudaError_t.cudaErrorStreamCaptureInvalidated, None)
        self.state.live["graph"] += 1
        return (cudaError_t.cudaSuccess, cudaGraph_t(nodes))

    def cudaGraphInstantiate(self, graph, flags: int):  # noqa: N802
        self.state.live["graph_exec"] += 1
        return (cudaError_t.cudaSuccess, cudaGraphExec_t(list(graph.nodes)))

    def cudaGraphDestroy(self, graph):  # noqa: N802
        self.state.live["graph"] -= 1
        return (cudaError_t.cudaSuccess,)

    def cudaGraphExecDestroy(self, graphExec):  # noqa: N802, N803
        self.state.live["graph_exec"] -= 1
        graphExec.nodes = []
        return (cudaError_t.cudaSuccess,)

    def cudaGraphLaunch(self, graphExec, stream):  # noqa: N802, N803
        s = self.stream(stream)
        if s.capturing:
            s.nodes.extend(graphExec.nodes)
            return (cudaError_t.cudaSuccess,)
        return self._execute(s, graphExec.nodes)


_API = {
    name
    for name, value in vars(CudaRuntimeDouble).items()
    if name.startswith("cuda") and isinstance(value, types.FunctionType)
}
