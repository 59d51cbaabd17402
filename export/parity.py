"""Parity of an exported ONNX model with the torch network it came from, in ONNX Runtime (CPU).

Relative error is max|onnx - torch| / max|torch| over the whole batch: a scale-free number (the
generator's tanh output is in [-1, 1], an encoder's features need not be), so one tolerance
(1e-4 for fp32) fits every network. Every export checks two sizes at batch 2 and fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from p2phd.engine.errors import ExportError

FP32_TOLERANCE = 1e-4
PARITY_BATCH = 2

InputMaker = Callable[[int, int, int], torch.Tensor]  # (batch, height, width) -> input


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """max|actual - reference| / max|reference| (absolute when the reference is all zeros)."""
    diff = float(np.max(np.abs(actual.astype(np.float64) - reference)))
    scale = float(np.max(np.abs(reference)))
    return diff / scale if scale > 0 else diff


def cpu_session(path: str | Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_error(
    module: torch.nn.Module,
    onnx_path: str | Path,
    make_input: InputMaker,
    sizes: Sequence[tuple[int, int]],
    batch: int = PARITY_BATCH,
) -> float:
    """The worst relative error of the ONNX model vs `module` over `sizes` at `batch`."""
    session = cpu_session(onnx_path)
    name = session.get_inputs()[0].name
    worst = 0.0
    module = module.eval()
    for h, w in sizes:
        x = make_input(batch, h, w)
        with torch.no_grad():
            expected = module(x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        if got.shape != expected.shape:
            raise ExportError(
                f"{onnx_path}: output shape {list(got.shape)} at input {list(x.shape)}, "
                f"torch gives {list(expected.shape)}"
            )
        worst = max(worst, relative_error(got, expected))
    return worst


def check_parity(
    module: torch.nn.Module,
    onnx_path: str | Path,
    make_input: InputMaker,
    sizes: Sequence[tuple[int, int]],
    tolerance: float = FP32_TOLERANCE,
) -> float:
    """`measure_error`, raising ExportError when it exceeds `tolerance`; returns the error."""
    err = measure_error(module, onnx_path, make_input, sizes)
    if not err <= tolerance:  # also catches NaN
        shown = ", ".join(f"{h}x{w}" for h, w in sizes)
        raise ExportError(
            f"{onnx_path}: ONNX Runtime differs from PyTorch by relative error {err:.3g} "
            f"(max|onnx-torch|/max|torch| at sizes {shown}, batch {PARITY_BATCH}); "
            f"the limit is {tolerance:g}. The export is not trustworthy and was not installed."
        )
    return err
