"""The failure families of p2phd: one exception type each, with a message naming what was wrong.

The CLI prints these without a traceback and exits non-zero; the server maps each family to a
gRPC status (see `GRPC_STATUS`).
"""

# How backends word an allocation failure: ONNX Runtime ("Failed to allocate memory"), OpenVINO
# ("std::bad_alloc"), CUDA/TensorRT/torch ("out of memory", cudaErrorMemoryAllocation).
_OUT_OF_MEMORY = ("out of memory", "outofmemory", "bad_alloc", "failed to allocate",
                  "memoryallocation")  # fmt: skip


def is_out_of_memory(exc: BaseException) -> bool:
    """True when `exc` is a host or device out-of-memory error from Python or any backend."""
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(marker in text for marker in _OUT_OF_MEMORY)


class P2PHDError(Exception):
    """Base of every error p2phd raises on purpose."""

    grpc_status = "INTERNAL"


class InputError(P2PHDError, ValueError):
    """A request or input file is malformed: wrong size, dtype, label out of range, bad PNG."""

    grpc_status = "INVALID_ARGUMENT"


class PackageError(P2PHDError):
    """A model package is missing, incomplete, tampered with or of an unknown format."""

    grpc_status = "FAILED_PRECONDITION"


class CheckpointError(P2PHDError):
    """A checkpoint does not match the architecture it is loaded into."""


class ConfigError(P2PHDError, ValueError):
    """A configuration file or command-line option is invalid."""

    grpc_status = "INVALID_ARGUMENT"


class BackendUnavailable(P2PHDError):
    """A backend is not installed, or the hardware it needs is absent."""

    grpc_status = "UNAVAILABLE"


class Overloaded(P2PHDError):
    """The request queue is full; the caller should retry later."""

    grpc_status = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(P2PHDError):
    """A request's deadline passed before it reached the engine; it was dropped unrendered."""

    grpc_status = "DEADLINE_EXCEEDED"


class ExportError(P2PHDError):
    """An export produced a model that does not compute what the source network computes."""
