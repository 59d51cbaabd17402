"""The int8 graph's transposed convolutions as sub-pixel convolutions: the same numbers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from p2phd.export import subpixel
from p2phd.export.parity import cpu_session


def export(net: torch.nn.Module, path, channels: int) -> onnx.ModelProto:
    x = torch.zeros(1, channels, 4, 4)
    torch.onnx.export(net, x, str(path), input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "b", 2: "h", 3: "w"}}, dynamo=False)  # fmt: skip
    return onnx.load(str(path))


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (16, 9)])
def test_rewritten_transposed_convolutions_compute_the_same_image(tmp_path, size):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(6, 5, 3, stride=2, padding=1, output_padding=1),
        torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(5, 4, 3, stride=2, padding=1, output_padding=1, bias=False),
        torch.nn.ConvTranspose2d(4, 3, 3, stride=1, padding=1),  # another shape: left as it is
    ).eval()
    model = export(net, tmp_path / "g.onnx", 6)
    rewritten = subpixel.rewrite(model)
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops.count("ConvTranspose") == 1 and ops.count("DepthToSpace") == 2
    assert ops.count("Conv") == 8
    onnx.checker.check_model(rewritten)
    x = np.random.default_rng(1).normal(size=(2, 6, *size)).astype(np.float32)
    onnx.save(rewritten, str(tmp_path / "sub.onnx"))
    want = cpu_session(tmp_path / "g.onnx").run(None, {"input": x})[0]
    got = cpu_session(tmp_path / "sub.onnx").run(None, {"input": x})[0]
    assert got.shape == want.shape == (2, 3, 4 * size[0], 4 * size[1])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the replaced weights are gone; the original model is untouched
    names = {t.name for t in rewritten.graph.initializer}
    assert not any(n.endswith("0.weight") for n in names if "phase" not in n)
    assert [n.op_type for n in model.graph.node].count("ConvTranspose") == 3


def test_phase_kernels_hold_the_nine_taps_once():
    w = np.arange(2 * 3 * 9, dtype=np.float32).reshape(2, 3, 3, 3)
    kernels = list(subpixel.phase_kernels(w).values())
    assert [k.shape[2:] for k in kernels] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert sorted(np.concatenate([k.transpose(1, 0, 2, 3).reshape(2, 3, -1) for k in kernels],
                                 axis=2).ravel()) == sorted(w.ravel())  # fmt: skip
