"""Reading an OpenVINO model's graph, for the rewrites the backend applies before compiling
(openvino_rewrites, openvino_first_layer): which nodes an output feeds and is computed from,
which values are constants, and a copy with its constants folded to read values off."""

from __future__ import annotations

import numpy as np

CHANNEL_BLOCK = 16  # the CPU plugin lays out NCHW channels in blocks of 16 (AVX-512 fp32 lanes)


def folded(model, shape: list[int]) -> object:
    """A copy of `model` reshaped to `shape` with its constant subgraphs folded into Constants,
    to read values off (and compile small parts of: folding also turns int8 weights into the
    float values they stand for, so the whole is never what runs)."""
    import openvino as ov
    from openvino.passes import ConstantFolding, Manager

    model = model.clone()
    model.reshape({model.get_parameters()[0].output(0): ov.PartialShape(shape)})
    passes = Manager()
    passes.register_pass(ConstantFolding())
    passes.run_passes(model)
    return model


def constant_value(output) -> np.ndarray | None:
    """The value of `output` where its node is a Constant (after constant folding), else None."""
    node = output.get_node()
    return node.get_data() if node.get_type_name() == "Constant" else None


def per_channel(value: np.ndarray, channels: int) -> np.ndarray | None:
    """`value`, added to an NCHW tensor of `channels`, as one constant per channel; None where
    it varies over height or width (or has another shape)."""
    if value.size == 1:
        return np.full(channels, value.ravel()[0])
    if value.ndim >= 3 and value.shape[-3:] == (channels, 1, 1) and value.size == channels:
        return value.ravel()
    return None


def ancestors(outputs, stop=("ShapeOf",)) -> dict[str, object]:
    """The nodes `outputs` are computed from, by friendly name, each visited once; the inputs of
    `stop` types are not followed (a ShapeOf reads only its input's shape)."""
    seen, todo = {}, [o.get_node() for o in outputs]
    while todo:
        node = todo.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen[name] = node
        if node.get_type_name() not in stop:
            todo.extend(i.get_source_output().get_node() for i in node.inputs())
    return seen


def from_constants(output) -> bool:
    """Whether `output` is computed from constants and shapes alone (a quantized weight and its
    scale; a bias reshaped to the activation's rank by way of its ShapeOf)."""
    return all(n.get_type_name() != "Parameter" for n in ancestors([output]).values())


def only_consumer(output):
    """The one input `output`'s values feed (ShapeOf reads only its shape), or None when they
    feed none or several."""
    targets = [t for t in output.get_target_inputs() if t.get_node().get_type_name() != "ShapeOf"]
    return targets[0] if len(targets) == 1 else None
