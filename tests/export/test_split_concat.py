"""Convolutions over a concatenation split per input for the int8 graph: the same numbers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from p2phd.export import split_concat
from p2phd.export.onnx_export import export_onnx
from p2phd.export.parity import cpu_session


class TailSkip(torch.nn.Module):
    """conv(pad(concat(relu(conv(x)), x[:, -2:]))): the shape of a tail-skip generator's end."""

    def __init__(self, pad: bool):
        super().__init__()
        self.body = torch.nn.Conv2d(5, 4, 3, padding=1)
        self.pad = torch.nn.ReflectionPad2d(3) if pad else torch.nn.Identity()
        self.tail = torch.nn.Conv2d(4 + 2, 3, 7 if pad else 1)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return torch.tanh(self.tail(self.pad(torch.cat([h, x[:, -2:]], 1))))


@pytest.mark.parametrize("pad", [True, False], ids=["through a Pad", "direct"])
def test_split_convolutions_compute_the_same_image(tmp_path, pad):
    torch.manual_seed(0)
    export_onnx(TailSkip(pad), torch.zeros(1, 5, 8, 8), tmp_path / "g.onnx", "input", "image")
    model = onnx.load(str(tmp_path / "g.onnx"))
    split = split_concat.rewrite(model)
    ops = [n.op_type for n in split.graph.node]
    assert "Concat" not in ops and ops.count("Conv") == 3 and ops.count("Add") == 1
    assert ops.count("Pad") == (2 if pad else 0)
    onnx.save(split, str(tmp_path / "split.onnx"))
    x = np.random.default_rng(1).normal(size=(2, 5, 9, 13)).astype(np.float32)
    want = cpu_session(tmp_path / "g.onnx").run(None, {"input": x})[0]
    got = cpu_session(tmp_path / "split.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the replaced weights are gone; the model given is untouched
    assert "tail.weight" not in {t.name for t in split.graph.initializer}
    assert "Concat" in [n.op_type for n in model.graph.node]


def test_a_concatenation_used_twice_is_left_alone(tmp_path):
    class Twice(torch.nn.Module):
        def forward(self, x):
            c = torch.cat([x, x * 2], 1)
            return torch.nn.functional.conv2d(c, torch.ones(1, 4, 1, 1)) + c.sum(1, keepdim=True)

    export_onnx(Twice(), torch.zeros(1, 2, 4, 4), tmp_path / "t.onnx", "input", "image")
    model = onnx.load(str(tmp_path / "t.onnx"))
    assert [n.op_type for n in split_concat.rewrite(model).graph.node] == [
        n.op_type for n in model.graph.node
    ]
