"""Parity of an exported ONNX model with the torch network it came from, in ONNX Runtime (CPU).

Relative error is max|onnx - torch| / max|torch| over the whole batch: a scale-free number (the
generator's tanh output is in [-1, 1], an encoder's features need not be), so one tolerance
(1e-4 for fp32) fits every network. Every export checks two sizes at batch 2 and fails loudly.

The fp16 variant is also evaluated in true fp16 (`fp16_psnr_db`): ONNX Runtime's CPU provider
has few fp16 kernels, inserts casts to fp32 around the rest and removes the casts it finds
redundant, so it computes much of the graph in fp32. `onnx.reference` keeps every tensor in the
graph's own type, as a TensorRT strongly typed engine does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from p2phd.common.errors import ExportError

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


def fp16_psnr_db(
    fp16_path: str | Path, fp32_path: str | Path, make_input: InputMaker, size: tuple[int, int]
) -> float:
    """PSNR in dB of the fp16 graph, evaluated in fp16, against the fp32 graph (ONNX Runtime) at
    batch 1 and `size`, on the float output over tanh's range [-1, 1] (peak 2; 8-bit PSNR is
    about the same number). Every tensor is rounded to fp16 between nodes; convolutions
    accumulate in fp32, as GPU fp16 convolutions do."""
    x = make_input(1, *size).numpy()
    session = cpu_session(fp32_path)
    (reference,) = session.run(None, {session.get_inputs()[0].name: x})
    half = ReferenceEvaluator(onnx.load(str(fp16_path)), new_ops=[Conv, ConvTranspose])
    (got,) = half.run(None, {half.input_names[0]: x})
    mse = float(np.mean((got.astype(np.float64) - reference) ** 2))
    return 10.0 * np.log10(4.0 / mse) if mse > 0 else float("inf")


def _torch_args(X, W, B, pads, auto_pad) -> tuple:
    """fp32 torch tensors of a 2-D convolution's operands, and its pads (ONNX order)."""
    if X.ndim != 4 or auto_pad not in (None, "NOTSET"):
        raise ExportError(f"fp16 evaluation: 2-D convolutions with explicit pads only ({X.shape})")
    f32 = lambda a: None if a is None else torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    return f32(X), f32(W), f32(B), list(pads or [0] * 4)


class Conv(OpRun):
    """onnx.reference's Conv on fp16 operands, accumulated in fp32 (torch) instead of numpy's
    unvectorised fp16 loops; the result in the operands' type."""

    op_domain = ""

    def _run(self, X, W, B=None, auto_pad=None, dilations=None, group=None, kernel_shape=None,
             pads=None, strides=None):  # fmt: skip
        x, w, b, pads = _torch_args(X, W, B, pads, auto_pad)
        x = F.pad(x, [pads[1], pads[3], pads[0], pads[2]])  # left, right, top, bottom
        y = F.conv2d(x, w, b, stride=strides or 1, dilation=dilations or 1, groups=group or 1)
        return (y.numpy().astype(X.dtype),)


class ConvTranspose(OpRun):
    """onnx.reference's ConvTranspose likewise (symmetric pads, no output_shape)."""

    op_domain = ""

    def _run(self, X, W, B=None, auto_pad=None, dilations=None, group=None, kernel_shape=None,
             output_padding=None, output_shape=None, pads=None, strides=None):  # fmt: skip
        x, w, b, pads = _torch_args(X, W, B, pads, auto_pad)
        if pads[:2] != pads[2:] or output_shape is not None:
            raise ExportError("fp16 evaluation: ConvTranspose with asymmetric pads/output_shape")
        y = F.conv_transpose2d(
            x, w, b, stride=strides or 1, padding=pads[:2], output_padding=output_padding or 0,
            groups=group or 1, dilation=dilations or 1,
        )  # fmt: skip
        return (y.numpy().astype(X.dtype),)
