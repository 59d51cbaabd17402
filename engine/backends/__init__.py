"""The backend registry, and the choice of backend and precision.

BACKENDS names each backend's class, in the order `backend="auto"` tries those that join it
(TensorRT on a GPU, else OpenVINO, else ONNX Runtime; its explanation quotes the GPU line of
`p2phd doctor`). Everything else about a backend (device kind, precisions, the reduced precision
"auto" may take) is declared on its class, and the CLI, the demo and the bench read it from
here: a new backend is its module plus one line below. Precision "auto" takes the backend's
reduced precision only where the package's quality report shows it close enough to fp32.

Backend modules are light: each imports its runtime (TensorRT, OpenVINO, ONNX Runtime, PyTorch)
only when it runs, so a CPU server never imports TensorRT and nothing but the torch reference
imports PyTorch.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

from p2phd.common.errors import BackendUnavailable, ConfigError, P2PHDError, PackageError
from p2phd.engine.backends.base import Backend, EngineOptions
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.platform import gpu_summary

log = logging.getLogger(__name__)

BACKENDS = {
    "tensorrt": ("p2phd.engine.backends.tensorrt", "TensorRTBackend"),
    "openvino": ("p2phd.engine.backends.openvino", "OpenVINOBackend"),
    "onnxruntime": ("p2phd.engine.backends.onnxruntime", "OnnxRuntimeBackend"),
    "torch": ("p2phd.engine.backends.torch", "TorchBackend"),
}


@dataclass
class Choice:
    """A backend and precision, and the reasons they were chosen (shown by describe/info)."""

    backend: str
    precision: str
    backend_reason: str
    precision_reason: str


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose {', '.join(backend_choices())}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def backend_names(device_kind: str | None = None) -> tuple[str, ...]:
    """The registered backends (those made for `device_kind`, "cpu" or "gpu", if given)."""
    return tuple(
        name
        for name in BACKENDS
        if device_kind is None or backend_class(name).device_kind == device_kind
    )


def built_names() -> tuple[str, ...]:
    """The backends `p2phd build` builds and measures: all but torch, the fp32 reference they
    are measured against."""
    return tuple(name for name in BACKENDS if name != "torch")


def precisions() -> tuple[str, ...]:
    """Every precision some backend offers, fp32 first."""
    offered = (p for name in BACKENDS for p in backend_class(name).precisions)
    return tuple(dict.fromkeys(("fp32", *offered)))


def backend_choices() -> tuple[str, ...]:
    """What `backend` may be: "auto" or a registered name (the CLI's --backend choices)."""
    return ("auto", *BACKENDS)


def precision_choices() -> tuple[str, ...]:
    """What `precision` may be: "auto" or one some backend offers (the CLI's --precision)."""
    return ("auto", *precisions())


def choose_backend(name: str = "auto") -> tuple[str, str]:
    """The backend to use and why; BackendUnavailable when it (or every candidate) cannot run."""
    if name != "auto":
        reason = backend_class(name).availability()
        if reason:
            raise BackendUnavailable(f"backend {name}: {reason}")
        return name, "requested"
    skipped = []
    for candidate in (n for n in BACKENDS if backend_class(n).auto):
        cls = backend_class(candidate)
        reason = cls.availability()
        gpu = cls.device_kind == "gpu"  # its line quotes the GPU facts `p2phd doctor` reports
        if gpu:
            reason = reason and f"{reason}; GPU: {gpu_summary()}"
        if reason is None:
            runs = f"{candidate} runs" + (f" on {gpu_summary()}" if gpu else "")
            return candidate, "auto: " + "".join(f"{s}; " for s in skipped) + runs
        skipped.append(f"{candidate} unavailable ({reason})")
    raise BackendUnavailable("no backend can run here: " + "; ".join(skipped))


def choose_precision(
    package: ModelPackage, backend: str, precision: str = "auto"
) -> tuple[str, str]:
    """The precision to use and why (`Backend.choose_precision`: the quality report decides)."""
    if precision not in precision_choices():
        known = ", ".join(precision_choices())
        raise ConfigError(f"unknown precision {precision!r}; choose {known}")
    return backend_class(backend).choose_precision(package, precision)


def open_backend(
    package: ModelPackage,
    backend: str = "auto",
    precision: str = "auto",
    options: EngineOptions | None = None,
) -> tuple[Backend, Choice]:
    """Load the chosen backend on `package`; log and return what was chosen and why."""
    name, backend_reason = choose_backend(backend)
    prec, precision_reason = choose_precision(package, name, precision)
    log.info("backend %s (%s), precision %s (%s)", name, backend_reason, prec, precision_reason)
    try:
        instance = backend_class(name)(package, prec, options)
    except P2PHDError:
        raise
    except Exception as e:  # the runtime refused the package's model: say so in one line
        raise PackageError(
            f"{package.path}: the {name} backend cannot load the model at {prec} "
            f"({type(e).__name__}: {e})"
        ) from e
    return instance, Choice(name, prec, backend_reason, precision_reason)
