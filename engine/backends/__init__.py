"""Backend choice: by name, or "auto" (TensorRT on a GPU, else OpenVINO, else ONNX Runtime; its
explanation quotes the GPU line of `p2phd doctor`), and precision choice: "auto" takes the
hardware's reduced precision only where the package's quality report shows it close enough to
the fp32 reference.

Each backend module is imported only when asked for, so a CPU server never imports TensorRT and
nothing but the torch reference imports PyTorch.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

from p2phd.common.errors import BackendUnavailable, ConfigError, P2PHDError, PackageError
from p2phd.engine.backends.base import Backend, EngineOptions
from p2phd.engine.core import quality
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.platform import gpu_summary

log = logging.getLogger(__name__)

BACKENDS = {
    "tensorrt": ("p2phd.engine.backends.tensorrt", "TensorRTBackend"),
    "openvino": ("p2phd.engine.backends.openvino", "OpenVINOBackend"),
    "onnxruntime": ("p2phd.engine.backends.onnxruntime", "OnnxRuntimeBackend"),
    "torch": ("p2phd.engine.backends.torch", "TorchBackend"),
}
AUTO_ORDER = ("tensorrt", "openvino", "onnxruntime")
# The reduced precision each backend would use by default, where the hardware supports it.
REDUCED = {"tensorrt": "fp16", "openvino": "bf16", "onnxruntime": "fp16"}
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
INT8_HOW = (
    "make one with 'p2phd build {model} --backend {backend} --precision int8 --calibration DIR' "
    "(DIR: label maps *_labelIds.png with their *_instanceIds.png, as p2phd render pairs them; "
    "'synthetic' for a model trained on p2phd synth scenes)"
)


@dataclass
class Choice:
    """A backend and precision, and the reasons they were chosen (shown by describe/info)."""

    backend: str
    precision: str
    backend_reason: str
    precision_reason: str


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose auto, {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def choose_backend(name: str = "auto") -> tuple[str, str]:
    """The backend to use and why; BackendUnavailable when it (or every candidate) cannot run."""
    if name != "auto":
        reason = backend_class(name).availability()
        if reason:
            raise BackendUnavailable(f"backend {name}: {reason}")
        return name, "requested"
    skipped = []
    for candidate in AUTO_ORDER:
        reason = backend_class(candidate).availability()
        if candidate == "tensorrt":  # the GPU facts `p2phd doctor` reports, in one line
            reason = reason and f"{reason}; GPU: {gpu_summary()}"
        if reason is None:
            runs = f"{candidate} runs" + (f" on {gpu_summary()}" if candidate == "tensorrt" else "")
            return candidate, "auto: " + "".join(f"{s}; " for s in skipped) + runs
        skipped.append(f"{candidate} unavailable ({reason})")
    raise BackendUnavailable("no backend can run here: " + "; ".join(skipped))


def choose_precision(
    package: ModelPackage, backend: str, precision: str = "auto"
) -> tuple[str, str]:
    """The precision to use and why: "auto" is the reduced one only where quality.json allows."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if precision == "int8":
        return precision, int8_allowed(package, backend)
    if precision != "auto":
        return precision, "requested"
    reduced = REDUCED.get(backend)
    if reduced is None:
        return "fp32", f"{backend} runs fp32 only"
    unsupported = backend_class(backend).reduced_unsupported(reduced)
    if unsupported:
        return "fp32", unsupported
    report = quality.read_report(package.engines_dir)
    ok, why = quality.allows(report, f"{backend}:{reduced}", package.content_key)
    if package.variant_path("int8") is not None:
        why += "; int8 runs only when asked for (--precision int8)"
    return (reduced, why) if ok else ("fp32", why)


def int8_allowed(package: ModelPackage, backend: str) -> str:
    """Why int8 may run on `backend` (its gate passed on this export), else ConfigError saying
    why not and how to make it: int8 is never a default, and never runs ungated."""
    if package.variant_path("int8") is None:
        how = INT8_HOW.format(model=package.path, backend=backend)
        raise ConfigError(f"{package.path}: has no int8 calibration; {how}")
    report = quality.read_report(package.engines_dir)
    ok, why = quality.allows_int8(report, f"{backend}:int8", package.content_key)
    if not ok:
        raise ConfigError(f"precision int8 refused: {why}")
    return why


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
