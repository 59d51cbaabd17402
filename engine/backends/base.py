"""The backend interface: load a model package at a precision, run a dense batch, describe itself.

A backend sees only the generator's dense NCHW input (one-hot ⊕ edges ⊕ features) and returns
its tanh output; decoding, style and the uint8 conversion stay in the renderer, so every backend
computes exactly the same function.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from p2phd.common.errors import ConfigError
from p2phd.engine.core import compiled_cache
from p2phd.engine.core.package import ModelPackage

log = logging.getLogger(__name__)


@dataclass
class EngineOptions:
    """Shapes an engine is built for: batch (min, opt, max) and sizes (H, W); the first is opt."""

    batch: tuple[int, int, int] = (1, 1, 4)
    sizes: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise ConfigError(f"batch profile {lo}:{opt}:{hi} must satisfy 1 <= MIN <= OPT <= MAX")


class Backend(ABC):
    """One inference engine over a model package's generator."""

    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    # The dtype the renderer assembles the dense input in (every package graph has float32 I/O).
    input_dtype: ClassVar[np.dtype] = np.dtype(np.float32)

    def __init__(self, package: ModelPackage, precision: str, options: EngineOptions | None = None):
        if precision not in self.precisions:
            raise ConfigError(
                f"backend {self.name} supports precision {', '.join(self.precisions)}; "
                f"got {precision!r}"
            )
        self.package = package
        self.precision = precision
        self.options = options or EngineOptions()

    @classmethod
    @abstractmethod
    def availability(cls) -> str | None:
        """None when this backend can run here, else why not (missing package, no GPU)."""

    @classmethod
    def reduced_unsupported(cls, precision: str) -> str | None:
        """None when this hardware runs `precision` natively, else why not."""
        if precision not in cls.precisions:
            return f"{cls.name} has no {precision} mode"
        return None

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the generator on x [B, C, H, W] -> float32 [B, 3, H, W] in [-1, 1]."""

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
        return {"backend": self.name, "precision": self.precision, "device": self.device()}

    def close(self) -> None:  # noqa: B027  (most backends hold nothing to release)
        """Release sessions and device memory (the backend is unusable afterwards)."""
