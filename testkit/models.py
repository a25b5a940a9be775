"""Tiny real ONNX models built with onnx.helper, and model repositories on disk: what tests and
benches serve when a trained model would be too slow or beside the point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def affine_model(width: int = 4, scale: float = 2.0, bias: float = 1.0) -> onnx.ModelProto:
    """y = x * scale + bias, and s = row sums of y: per-row outputs, so mixed-up rows show."""
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["xs"]),
        helper.make_node("Add", ["xs", "bias"], ["y"]),
        helper.make_node("ReduceSum", ["y", "axes"], ["s"], keepdims=1),
    ]
    inits = [
        numpy_helper.from_array(np.array(scale, np.float32), "scale"),
        numpy_helper.from_array(np.array(bias, np.float32), "bias"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
    ]
    graph = helper.make_graph(
        nodes, "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch", 1])],
        inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=OPSET)


IDENTITY_TYPES = {
    "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}  # fmt: skip


def identity_model(datatypes: tuple[str, ...] = tuple(IDENTITY_TYPES)) -> onnx.ModelProto:
    """One Identity per OIP datatype: input in_<DT> -> output out_<DT>, shape [batch, -1]."""
    nodes, ins, outs = [], [], []
    for dt in datatypes:
        proto = IDENTITY_TYPES[dt]
        nodes.append(helper.make_node("Identity", [f"in_{dt}"], [f"out_{dt}"]))
        ins.append(helper.make_tensor_value_info(f"in_{dt}", proto, ["batch", "n"]))
        outs.append(helper.make_tensor_value_info(f"out_{dt}", proto, ["batch", "n"]))
    return helper.make_model(helper.make_graph(nodes, "identity", ins, outs), opset_imports=OPSET)


def lookup_model(rows: int = 10, width: int = 3) -> onnx.ModelProto:
    """An embedding lookup like the recommendation model's: ids (int64, [batch]) -> table rows
    (row i holds i*width .. i*width+width-1), so an id out of 0..rows-1 is ONNX Runtime's INVALID_ARGUMENT."""
    table = np.arange(rows * width, dtype=np.float32).reshape(rows, width)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "user"], ["scores"], axis=0)], "lookup",
        [helper.make_tensor_value_info("user", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(table, "table")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=OPSET)


def matmul_chain_model(width: int = 512, depth: int = 8, seed: int = 0) -> onnx.ModelProto:
    """A compute-heavy model (depth matmuls of width x width) for queueing and deadline tests."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(depth):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=OPSET)


def write_model(repo: Path, name: str, model: onnx.ModelProto | bytes | None, config: dict,
                versions: tuple[int, ...] = (1,)) -> Path:  # fmt: skip
    """models/<name>/config.yaml plus <version>/model.onnx for each version (bytes = a corrupt file)."""
    folder = repo / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    for v in versions:
        target = folder / str(v) / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(model, bytes):
            target.write_bytes(model)
        elif model is not None:
            save(model, target)
    return folder


COPY_WORDS = [f"w{i}" for i in range(60)]  # the copying translation model's vocabulary (after 4 specials)


def write_copying_translation(repo: Path, name: str, *, step_delay_us: int = 0, max_batch_size: int = 8,
                              max_queue_size: int | None = None, max_output_length: int = 64,
                              step_work: int = 0, greedy: bool = False, decoding: str | None = None) -> Path:  # fmt: skip
    """A real translation model (encoder + decoder_step graphs, a tokenizer.json) that translates
    by copying: the output is the input's words (``COPY_WORDS``), one per decode step, then EOS.
    ``step_delay_us`` (the batcher's max_queue_delay) paces every graph run of a partial batch,
    so a decode lasts about (words + 1) x the delay on any machine (a full batch does not wait).
    ``step_work``: that many 1024 x 1024 matmuls per row and step, for real compute per row.
    ``greedy``: also the in-graph greedy search (``greedy.onnx``, listed in the config's graphs);
    ``decoding``: ``parameters.decoding`` (None: the pipeline's default)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3} | {w: i + 4 for i, w in enumerate(COPY_WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    encoder = helper.make_graph(
        [helper.make_node("Cast", ["src_ids"], ["ids"], to=TensorProto.FLOAT),
         helper.make_node("Unsqueeze", ["ids", "two"], ["memory"])],
        "encoder", [helper.make_tensor_value_info("src_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["b", "s", 1])],
        [numpy_helper.from_array(np.array([2], np.int64), "two")],
    )  # fmt: skip
    # next token = the source token at the prefix's position (the source ends with </s>, so does the copy)
    decoder = helper.make_graph(
        [helper.make_node("Shape", ["tgt_prefix"], ["prefix_shape"]),
         helper.make_node("Gather", ["prefix_shape", "one"], ["length"]),
         helper.make_node("Sub", ["length", "one"], ["position"]),
         helper.make_node("Gather", ["memory", "position"], ["at"], axis=1),
         helper.make_node("Squeeze", ["at", "axis1"], ["token_f"]),
         helper.make_node("Cast", ["token_f"], ["token"], to=TensorProto.INT64),
         helper.make_node("OneHot", ["token", "depth", "values"], ["onehot"]),
         helper.make_node("ReduceSum", ["memory_mask"], ["mask_sum"], keepdims=0),
         helper.make_node("Cast", ["mask_sum"], ["mask_f"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["mask_f", "zero"], ["nothing"]),
         helper.make_node("Add", ["onehot", "nothing"], ["logits" if step_work else "next_logits"])]
        + ([helper.make_node("MatMul", ["onehot", "widen"], ["h0"])]
           + [helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]) for i in range(step_work)]
           + [helper.make_node("ReduceSum", [f"h{step_work}", "axis1"], ["work"]),
              helper.make_node("Mul", ["work", "zero"], ["no_work"]),
              helper.make_node("Add", ["logits", "no_work"], ["next_logits"])] if step_work else []),
        "decoder_step",
        [helper.make_tensor_value_info("tgt_prefix", TensorProto.INT64, ["b", "t"]),
         helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["b", "s", 1]),
         helper.make_tensor_value_info("memory_mask", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("next_logits", TensorProto.FLOAT, ["b", len(vocab)])],
        [numpy_helper.from_array(np.array(1, np.int64), "one"), numpy_helper.from_array(np.array([1], np.int64), "axis1"),
         numpy_helper.from_array(np.array(len(vocab), np.int64), "depth"),
         numpy_helper.from_array(np.array([0.0, 10.0], np.float32), "values"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
        + ([numpy_helper.from_array(np.full((len(vocab), 1024), 0.01, np.float32), "widen"),
            numpy_helper.from_array(np.eye(1024, dtype=np.float32), "w")] if step_work else []),
    )  # fmt: skip
    folder = repo / name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    save(helper.make_model(encoder, opset_imports=OPSET), version / "encoder.onnx")
    save(helper.make_model(decoder, opset_imports=OPSET), version / "decoder_step.onnx")
    tokenizer.save(str(version / "tokenizer.json"))
    graphs = {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"}
    parameters = {"tokenizer": "tokenizer.json", "pad_id": 0, "start_id": 1, "eos_id": 2,
                  "max_source_length": max_output_length, "max_output_length": max_output_length}  # fmt: skip
    if greedy:
        from app.tasks.translation.decoding import DecodingSpec
        from app.training.greedy_graph import compose_greedy

        spec = DecodingSpec(start_id=1, eos_id=2, suppressed_ids=(0, 1), max_output_length=max_output_length)
        model = compose_greedy(onnx.load(version / "encoder.onnx"), onnx.load(version / "decoder_step.onnx"), spec)
        onnx.save(model, version / "greedy.onnx")
        graphs["greedy"] = "greedy.onnx"
    if decoding:
        parameters["decoding"] = decoding
    # fixed: every partial step waits the delay (the adaptive policy would run a lone group at once)
    batching = {"max_queue_delay_microseconds": step_delay_us, "delay_policy": "fixed"}
    if max_queue_size:
        batching["max_queue_size"] = max_queue_size
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "task": "translation", "graphs": graphs, "max_batch_size": max_batch_size, "dynamic_batching": batching,
        "parameters": parameters}))  # fmt: skip
    return folder


def chain_weights(model: onnx.ModelProto) -> list[np.ndarray]:
    """``matmul_chain_model``'s weights in the order they multiply: y = x @ w0 @ w1 ..."""
    return [numpy_helper.to_array(t) for t in sorted(model.graph.initializer, key=lambda t: int(t.name[1:]))]
