"""Greedy decoding inside ONNX Runtime: one graph that runs a translation model's encoder once and its
decoder step in an ONNX ``Loop`` until every sentence has ended, so a batch of sentences is one
session run instead of one run per output token driven from Python.

Built from the two exported graphs (``encoder(src_ids) -> memory`` and ``decoder_step(tgt_prefix,
memory, memory_mask) -> next_logits``), not exported from torch: the same weights and the same
operators, so its tokens are those of ``app.tasks.translation.decoding.greedy_decode`` (the export
checks it: ``greedy_parity`` in the recipe). Inputs ``src_ids`` and ``memory_mask`` [batch, source];
output ``tokens`` [batch, 1 + steps]: the start token, then each step's argmax (suppressed ids never
chosen); a sentence that has produced EOS gets EOS from then on, and the loop stops when all have or
after ``max_output_length`` steps. ``decoding.greedy_tokens`` cuts each row after its first EOS.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.tasks.translation.decoding import DecodingSpec


def _moved(graph: onnx.GraphProto, prefix: str, names: dict[str, str]) -> tuple[list, list]:
    """The graph's nodes and initializers with every value renamed to ``prefix + name`` (``names``
    maps the ones that connect to the outside), so two graphs can share one scope."""

    def rename(value: str) -> str:
        return names.get(value, prefix + value) if value else value

    nodes = []
    for i, node in enumerate(graph.node):
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"{graph.name}: node {node.name or node.op_type} has a subgraph; cannot be moved")
        moved = onnx.NodeProto()
        moved.CopyFrom(node)
        moved.name = f"{prefix}{node.name or node.op_type}_{i}"
        moved.input[:] = [rename(v) for v in node.input]
        moved.output[:] = [rename(v) for v in node.output]
        nodes.append(moved)
    initializers = []
    for tensor in graph.initializer:
        moved_tensor = onnx.TensorProto()
        moved_tensor.CopyFrom(tensor)
        moved_tensor.name = rename(tensor.name)
        initializers.append(moved_tensor)
    return nodes, initializers


def _input_type(graph: onnx.GraphProto, name: str) -> int:
    for value in graph.input:
        if value.name == name:
            return value.type.tensor_type.elem_type
    raise ValueError(f"{graph.name} has no input {name!r} (it has {', '.join(v.name for v in graph.input)})")


def compose_greedy(encoder: onnx.ModelProto, decoder_step: onnx.ModelProto, spec: DecodingSpec,
                   vocab_size: int | None = None) -> onnx.ModelProto:  # fmt: skip
    """The greedy-search graph of a model's encoder and decoder step (module docstring). ``vocab_size``:
    the logits' width, read from the decoder step's output when None."""
    enc, dec = encoder.graph, decoder_step.graph
    if vocab_size is None:
        dims = dec.output[0].type.tensor_type.shape.dim
        if len(dims) != 2 or not dims[1].dim_value:
            raise ValueError(f"{dec.name}: the logits' width is not static; pass vocab_size")
        vocab_size = dims[1].dim_value
    src_type = _input_type(enc, enc.input[0].name)
    mask_type = _input_type(dec, "memory_mask")
    enc_nodes, enc_inits = _moved(enc, "encoder/", {enc.input[0].name: "src_ids", enc.output[0].name: "memory"})
    dec_nodes, dec_inits = _moved(dec, "decoder/", {"tgt_prefix": "prefix_in", "memory": "memory",
                                                    "memory_mask": "memory_mask", dec.output[0].name: "logits"})  # fmt: skip
    suppress = np.zeros(vocab_size, np.float32)
    suppress[list(spec.suppressed_ids)] = -np.inf
    step = helper.make_graph(
        dec_nodes + [
            helper.make_node("Cast", ["logits"], ["logits_f"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["logits_f", "suppressed"], ["allowed"]),
            helper.make_node("ArgMax", ["allowed"], ["best"], axis=-1, keepdims=0),  # the first of equals, as numpy
            helper.make_node("Where", ["finished_in", "eos", "best"], ["next"]),
            helper.make_node("Unsqueeze", ["next", "axis_1"], ["next_column"]),
            helper.make_node("Concat", ["prefix_in", "next_column"], ["prefix_out"], axis=1),
            helper.make_node("Equal", ["next", "eos"], ["ended"]),
            helper.make_node("Or", ["finished_in", "ended"], ["finished_out"]),
            helper.make_node("Not", ["finished_out"], ["running"]),
            helper.make_node("Cast", ["running"], ["running_i"], to=TensorProto.INT64),
            helper.make_node("ReduceMax", ["running_i"], ["any_running"], keepdims=0),
            helper.make_node("Cast", ["any_running"], ["cond_out"], to=TensorProto.BOOL),
        ],
        "greedy_step",
        [helper.make_tensor_value_info("step", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("prefix_in", TensorProto.INT64, ["batch", None]),
         helper.make_tensor_value_info("finished_in", TensorProto.BOOL, ["batch"])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("prefix_out", TensorProto.INT64, ["batch", None]),
         helper.make_tensor_value_info("finished_out", TensorProto.BOOL, ["batch"])],
    )  # fmt: skip
    constants = {
        "suppressed": suppress, "eos": np.array(spec.eos_id, np.int64), "axis_0": np.array([0], np.int64),
        "axis_1": np.array([1], np.int64), "zero": np.array(0, np.int64), "one_column": np.array([1], np.int64),
        "steps": np.array(spec.max_output_length, np.int64), "true": np.array(True),
    }  # fmt: skip
    graph = helper.make_graph(
        enc_nodes + [
            helper.make_node("Shape", ["src_ids"], ["source_shape"]),
            helper.make_node("Gather", ["source_shape", "zero"], ["batch_size"]),
            helper.make_node("Unsqueeze", ["batch_size", "axis_0"], ["batch_shape"]),
            helper.make_node("Concat", ["batch_shape", "one_column"], ["start_shape"], axis=0),
            helper.make_node("ConstantOfShape", ["start_shape"], ["start"],
                             value=numpy_helper.from_array(np.array([spec.start_id], np.int64))),
            helper.make_node("ConstantOfShape", ["batch_shape"], ["none_finished"],
                             value=numpy_helper.from_array(np.array([False]))),
            helper.make_node("Loop", ["steps", "true", "start", "none_finished"], ["tokens", "finished"], body=step),
        ],
        "greedy_decode",
        [helper.make_tensor_value_info("src_ids", src_type, ["batch", "source"]),
         helper.make_tensor_value_info("memory_mask", mask_type, ["batch", "source"])],
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "length"])],
        enc_inits + dec_inits + [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )  # fmt: skip
    opsets: dict[str, int] = {}
    for model in (encoder, decoder_step):
        for op in model.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
    composed = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                                 producer_name="dendrite greedy_graph")  # fmt: skip
    composed.ir_version = max(encoder.ir_version, decoder_step.ir_version)
    onnx.checker.check_model(composed)
    return composed
