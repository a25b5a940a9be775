"""Benchmark models built with onnx.helper (random weights: speed does not depend on them).

- ``small_cnn``: Fashion-MNIST-sized CNN (2 conv blocks + 2 dense), where per-call overhead
  dominates and batching pays.
- ``effnet_sized``: a conv stack with about EfficientNet-Lite0's compute (~0.5 GMAC/sample at
  224x224), where the CPU is compute-bound and batching gains little.

If the training module has exported the real models into the repository, the bench can use
those instead (``--cnn`` / ``--big`` paths).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_rng = np.random.default_rng(0)


def _w(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    fan_in = int(np.prod(shape[1:])) or 1
    return numpy_helper.from_array((_rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name)


def _conv(nodes, inits, x, name, cin, cout, stride=1):
    inits += [_w(f"{name}_w", (cout, cin, 3, 3)), _w(f"{name}_b", (cout,))]
    nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"], pads=[1, 1, 1, 1],
                                  strides=[stride, stride]))  # fmt: skip
    nodes.append(helper.make_node("Relu", [f"{name}_c"], [f"{name}_r"]))
    return f"{name}_r"


def _model(nodes, inits, inp, shape, out, classes, name) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, ["batch", *shape])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", classes])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def small_cnn() -> onnx.ModelProto:
    nodes, inits = [], []
    x = _conv(nodes, inits, "image", "c1", 1, 32)
    nodes.append(helper.make_node("MaxPool", [x], ["p1"], kernel_shape=[2, 2], strides=[2, 2]))
    x = _conv(nodes, inits, "p1", "c2", 32, 64)
    nodes.append(helper.make_node("MaxPool", [x], ["p2"], kernel_shape=[2, 2], strides=[2, 2]))
    nodes.append(helper.make_node("Flatten", ["p2"], ["f"]))
    inits += [_w("d1_w", (3136, 128)), _w("d1_b", (128,)), _w("d2_w", (128, 10)), _w("d2_b", (10,))]
    nodes += [
        helper.make_node("Gemm", ["f", "d1_w", "d1_b"], ["d1"]),
        helper.make_node("Relu", ["d1"], ["d1r"]),
        helper.make_node("Gemm", ["d1r", "d2_w", "d2_b"], ["logits"]),
    ]
    return _model(nodes, inits, "image", (1, 28, 28), "logits", 10, "small_cnn")


def effnet_sized() -> onnx.ModelProto:
    nodes, inits = [], []
    x = _conv(nodes, inits, "image", "stem", 3, 32, stride=2)  # 112x112
    for i, (cin, cout) in enumerate([(32, 64), (64, 128), (128, 256), (256, 512)]):
        x = _conv(nodes, inits, x, f"b{i}a", cin, cout, stride=2)  # 56, 28, 14, 7
        if i >= 1:
            x = _conv(nodes, inits, x, f"b{i}b", cout, cout)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["f"]))
    inits += [_w("fc_w", (512, 1000)), _w("fc_b", (1000,))]
    nodes.append(helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"]))
    return _model(nodes, inits, "image", (3, 224, 224), "logits", 1000, "effnet_sized")


def write(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
