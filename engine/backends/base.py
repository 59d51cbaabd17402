"""The backend interface: load a model package at a precision, run a dense batch, describe itself.

A backend sees only the generator's dense NCHW input (one-hot ⊕ edges ⊕ features) and returns
its tanh output; decoding, style and the uint8 conversion stay in the renderer, so every backend
computes exactly the same function.

The base class owns the public flow and the checks every backend shares (as Polygraphy's runners
do): `availability` imports the backend's required modules, `reduced_unsupported` refuses a
precision the backend does not offer, the constructor checks the precision, the availability and
the hardware and finds the graph (the package's fp16 or int8 variant where the precision reads
one), `choose_precision` takes a reduced precision only where the package's quality report
allows it, `infer` checks the input. A backend fills the `*_impl` hooks and declares, once, what
the registry, the CLI, the demo and the bench read about it (name, device kind, precisions).
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from p2phd.common.errors import BackendUnavailable, ConfigError, InputError, PackageError
from p2phd.engine.core import compiled_cache, quality
from p2phd.engine.core.package import ModelPackage

log = logging.getLogger(__name__)

MAX_BATCH = 1024  # images one engine call takes at most: past it, input memory alone runs to GBs


def int8_how(model, backend: str = "BACKEND") -> str:
    """How to make `model`'s int8 graph (said wherever one is missing)."""
    return (
        f"make one with 'p2phd build {model} --backend {backend} --precision int8 "
        "--calibration DIR' (DIR: label maps *_labelIds.png with their *_instanceIds.png, as "
        "p2phd render pairs them; 'synthetic' for a model trained on p2phd synth scenes)"
    )


@dataclass
class EngineOptions:
    """Shapes an engine is built for: batch (min, opt, max) and sizes (H, W); the first is opt."""

    batch: tuple[int, int, int] = (1, 1, 4)
    sizes: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi <= MAX_BATCH:
            raise ConfigError(
                f"batch profile {lo}:{opt}:{hi} must satisfy 1 <= MIN <= OPT <= MAX <= {MAX_BATCH}"
            )


class Backend(ABC):
    """One inference engine over a model package's generator."""

    # -- what a backend declares (read by the registry, the CLI, the demo and the bench) --------
    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]  # what it runs, "fp32" first
    reduced: ClassVar[str | None] = None  # what precision="auto" takes where quality.json allows
    device_kind: ClassVar[str] = "cpu"  # "cpu" or "gpu": what it is made for (demo, bench: cpu)
    auto: ClassVar[bool] = False  # a candidate of backend="auto", in the registry's order
    requires: ClassVar[dict[str, str]] = {}  # modules it imports -> how to install them
    variant_precisions: ClassVar[tuple[str, ...]] = ()  # those read from generator.<p>.onnx
    # The dtype the renderer assembles the dense input in (every package graph has float32 I/O).
    input_dtype: ClassVar[np.dtype] = np.dtype(np.float32)
    # True where `render_maps` runs the whole pipeline on the device from the compact maps (the
    # renderer then hands it those instead of the dense input).
    renders_maps: bool = False
    # False where `infer_labeled` reads the labels and never the dense input's one-hot channels
    # (the renderer then leaves them unwritten).
    reads_one_hot: bool = True
    # The largest batch one call takes (a TensorRT engine's profile), None: any. The renderer
    # splits larger batches (a server's --max-batch or `p2phd render --batch` above it).
    max_batch: int | None = None

    def __init__(self, package: ModelPackage, precision: str, options: EngineOptions | None = None):
        """Check that `precision` runs here, find its graph (`self.source`), then `load_impl`."""
        if precision not in self.precisions:
            raise ConfigError(
                f"backend {self.name} supports precision {', '.join(self.precisions)}; "
                f"got {precision!r}"
            )
        reason = self.availability()
        if reason:
            raise BackendUnavailable(reason)
        reason = self.reduced_unsupported(precision)
        if reason:
            raise BackendUnavailable(f"{reason}; use precision fp32")
        self.package = package
        self.precision = precision
        self.options = options or EngineOptions()
        self.source = self._graph(package, precision)
        self.load_impl()

    @classmethod
    def _graph(cls, package: ModelPackage, precision: str) -> Path:
        """The ONNX graph `precision` runs: generator.onnx, or the package's variant for it."""
        if precision not in cls.variant_precisions:
            return package.generator_path
        path = package.variant_path(precision)
        if path is None:
            how = int8_how(package.path, cls.name)
            fix = how if precision == "int8" else "re-export it"
            raise PackageError(f"{package.path}: has no {precision} generator variant; {fix}")
        return path

    # -- availability and precision -------------------------------------------------------------

    @classmethod
    def availability(cls) -> str | None:
        """None when this backend can run here, else why not (a required module missing, with
        how to install it, or what `availability_impl` finds: no GPU)."""
        for module, install in cls.requires.items():
            try:
                importlib.import_module(module)
            except ImportError:
                return f"{module} is not installed ({install})"
        return cls.availability_impl()

    @classmethod
    def availability_impl(cls) -> str | None:
        """Checks beyond the required modules (a GPU, a driver); None when it can run."""
        return None

    @classmethod
    def reduced_unsupported(cls, precision: str) -> str | None:
        """None when this backend offers `precision` and the hardware runs it natively, else
        why not."""
        if precision not in cls.precisions:
            return f"{cls.name} has no {precision} mode"
        return None if precision == "fp32" else cls.reduced_unsupported_impl(precision)

    @classmethod
    def reduced_unsupported_impl(cls, precision: str) -> str | None:
        """Why the hardware cannot run the offered reduced `precision` natively, or None."""
        return None

    @classmethod
    def choose_precision(cls, package: ModelPackage, precision: str = "auto") -> tuple[str, str]:
        """The precision to open `package` at, and why. "auto" takes `reduced` only where the
        hardware runs it and quality.json shows it close enough to fp32 on this export; int8
        runs only when asked for and its gate passed (else ConfigError saying how to make it)."""
        if precision == "int8":
            return precision, cls._int8_allowed(package)
        if precision != "auto":
            return precision, "requested"
        chosen, why = cls._auto_precision(package)
        if package.variant_path("int8") is not None:
            why += "; int8 runs only when asked for (--precision int8)"
        return chosen, why

    @classmethod
    def _auto_precision(cls, package: ModelPackage) -> tuple[str, str]:
        if cls.reduced is None:
            return "fp32", f"{cls.name} runs fp32 only"
        unsupported = cls.reduced_unsupported(cls.reduced)
        if unsupported:
            return "fp32", unsupported
        report = quality.read_report(package.engines_dir)
        ok, why = quality.allows(report, f"{cls.name}:{cls.reduced}", package.content_key)
        return (cls.reduced, why) if ok else ("fp32", why)

    @classmethod
    def _int8_allowed(cls, package: ModelPackage) -> str:
        """Why int8 may run (its gate passed on this export), else ConfigError saying why not
        and how to make it: int8 is never a default, and never runs ungated."""
        unsupported = cls.reduced_unsupported("int8")
        if unsupported:
            raise ConfigError(f"precision int8 refused: {unsupported}")
        if package.variant_path("int8") is None:
            how = int8_how(package.path, cls.name)
            raise ConfigError(f"{package.path}: has no int8 calibration; {how}")
        report = quality.read_report(package.engines_dir)
        key = f"{cls.name}:int8"
        ok, why = quality.allows_int8(report, key, package.content_key, str(package.path))
        if not ok:
            raise ConfigError(f"precision int8 refused: {why}")
        return why

    # -- load and run -----------------------------------------------------------------------------

    @abstractmethod
    def load_impl(self) -> None:
        """Load `self.source` at `self.precision` (the checks have passed)."""

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """`x` as a [B, C, H, W] array of real numbers with the generator's C, else InputError."""
        x = np.asarray(x)
        channels = self.package.manifest.input_channels
        if x.ndim != 4 or x.shape[1] != channels:
            shape = list(x.shape)
            raise InputError(f"{self.name}: expected input [B, {channels}, H, W], got {shape}")
        if x.dtype.kind not in "fiu":
            raise InputError(f"{self.name}: input dtype {x.dtype} is not a real number type")
        return x

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the generator on x [B, C, H, W] -> float32 [B, 3, H, W] in [-1, 1]."""
        return self.infer_impl(self.check_input(x))

    @abstractmethod
    def infer_impl(self, x: np.ndarray) -> np.ndarray:
        """`infer` on a checked input."""

    def infer_labeled(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """`infer` on a dense input built from `labels` (uint8 [B, H, W]: what its one-hot
        channels hold), for a backend that reads the labels (OpenVINO's first convolution) and
        so need not read them back from x."""
        return self.infer(x)

    def layer_times(self, x: np.ndarray, runs: int = 5) -> list[dict] | None:
        """Per-layer times on `x` ({"layer", "mean_ms"} over `runs`, slowest first) where the
        backend can profile its layers (TensorRT), else None. The benchmark's per-layer table."""
        return None

    def render_maps(
        self, labels: np.ndarray, compact, table: np.ndarray | None, edges: bool, feat: int
    ) -> np.ndarray:
        """The whole pipeline from compact maps: uint8 RGB [B, H, W, 3] (where `renders_maps`)."""
        raise NotImplementedError(f"{self.name} renders from the dense input only")

    def build(self) -> list[Path]:
        """Build and cache the engine for `options` ahead of serving; return the files written."""
        return []

    def cache_key(self) -> str:
        """What this backend's cached files depend on besides the package: name and device
        (subclasses add their runtime's version)."""
        return f"{self.name}-{self.device()}"

    def engine_dir(self) -> Path:
        """The folder to write this backend's cache files into: in the engine cache, keyed by the
        package's content hash and `cache_key()`, never inside the package (see compiled_cache)."""
        return compiled_cache.backend_dir(
            compiled_cache.package_key(self.package.content_key), self.cache_key()
        )

    def cache_folder(self) -> Path | None:
        """`engine_dir()`, or None (with a warning) where the engine cache cannot be created:
        the backend then builds and runs its engine uncached."""
        try:
            return self.engine_dir()
        except ConfigError as e:
            log.warning("%s: %s; going on without a cache", self.name, e)
            return None

    def device(self) -> str:
        return "cpu"

    def describe(self) -> dict:
        limit = {} if self.max_batch is None else {"max_batch": self.max_batch}
        return {"backend": self.name, "precision": self.precision, "device": self.device(), **limit}

    def close(self) -> None:  # noqa: B027  (most backends hold nothing to release)
        """Release sessions and device memory (the backend is unusable afterwards)."""
