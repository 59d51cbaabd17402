"""What the int8 graph rewrites (subpixel, split_concat) share: a deep copy of a model, a
node's attributes as Python values, and replacing a graph's nodes without leaving behind the
initializers nothing reads any more."""

from __future__ import annotations

import onnx
from onnx import helper


def copy_of(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy, not through bytes: a model may be over protobuf's 2 GB."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def set_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Make `nodes` the graph's nodes and drop the initializers none of them reads."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    for unused in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(unused)
