"""Export a torch module to a clean ONNX graph: named input/output, dynamic N/H/W, weights named
exactly like the module's state_dict keys, constant shape arithmetic folded away.

We use torch's TorchScript-based exporter (`dynamo=False`): on these convolutional networks it
keeps the state_dict names as initializer names, names the dynamic axes N/H/W, and is much
faster than the dynamo exporter (which matters for tests that export many tiny packages).
Its only blemish, the constant subgraphs it emits to compute reflection-pad amounts, is folded
here, so the graph holds just Conv/ConvTranspose/InstanceNormalization/Pad/Relu/Add/AveragePool/
Tanh. Models over 2 GB keep their weights in one `<name>.onnx.data` file beside the graph.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from p2phd.common.atomic import atomic_path

OPSET = 17
PROTOBUF_LIMIT = 2_000_000_000  # bytes; beyond this a model must use external data
DYNAMIC = {0: "N", 2: "H", 3: "W"}


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: str | Path,
    input_name: str,
    output_name: str,
) -> Path:
    """Write `module` (one NCHW input, one NCHW output) to `path` atomically; return `path`."""
    path = Path(path)
    module = module.eval()
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".onnx-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                module,
                (example,),
                str(raw),
                dynamo=False,
                opset_version=OPSET,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: DYNAMIC, output_name: DYNAMIC},
                do_constant_folding=True,
                # Export in the module's own (eval) mode without the eval peephole, which would
                # fold BatchNorm into the preceding convolution and rename its weights; and keep
                # every parameter under its own name (as an input, dropped below) rather than
                # merging parameters of equal value (fresh BatchNorm layers are all ones).
                training=torch.onnx.TrainingMode.PRESERVE,
                keep_initializers_as_inputs=True,
            )
        model = onnx.load(str(raw))  # external tensors, if torch wrote any, load from `tmp`
        drop_initializer_inputs(model)
        fold_constants(model)
        save_onnx(model, path)
    return path


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    """Save atomically; weights go to `<path>.data` when the protobuf would exceed 2 GB."""
    data_path = path.with_name(path.name + ".data")
    large = model.ByteSize() > PROTOBUF_LIMIT
    with atomic_path(path) as tmp:
        if large:
            # onnx writes the data file relative to the model; write both in a scratch dir.
            scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=".onnx-save-"))
            try:
                onnx.save_model(
                    model,
                    str(scratch / path.name),
                    save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location=data_path.name,
                    size_threshold=1024,
                )
                with atomic_path(data_path) as tmp_data:
                    shutil.move(scratch / data_path.name, tmp_data)
                shutil.move(scratch / path.name, tmp)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        else:
            onnx.save_model(model, str(tmp))
            data_path.unlink(missing_ok=True)


def drop_initializer_inputs(model: onnx.ModelProto) -> None:
    """Remove graph inputs that are initializers: the weights stay constants of the graph."""
    params = {init.name for init in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in params]
    del model.graph.input[:]
    model.graph.input.extend(keep)


def fold_constants(model: onnx.ModelProto) -> None:
    """Evaluate every node whose inputs are all constants, in place; results that feed the
    remaining nodes become initializers. Parameters (initializers) are kept as they are."""
    graph = model.graph
    consts: dict = {}
    params = {init.name for init in graph.initializer}
    kept = []
    for node in graph.node:
        ins = [i for i in node.input if i]
        if node.op_type == "Constant" or (ins and all(i in consts for i in ins)):
            results = ReferenceEvaluator(node).run(None, {i: consts[i] for i in ins})
            consts.update(zip(node.output, results, strict=True))
        else:
            kept.append(node)
    needed = {i for node in kept for i in node.input} | {o.name for o in graph.output}
    new_inits = [
        numpy_helper.from_array(value, name)
        for name, value in consts.items()
        if name in needed and name not in params
    ]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(new_inits)
    del graph.value_info[:]  # stale shapes of removed intermediates
