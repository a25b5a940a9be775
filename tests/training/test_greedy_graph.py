"""Greedy decoding inside ONNX Runtime gives the Python loop's tokens: the composed graph of a real
encoder/decoder_step pair (testkit's copying model, and a small random-weight transformer decoder step)
against ``greedy_decode`` over the same graphs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.tasks.translation.decoding import DecodingSpec, greedy_decode, greedy_tokens
from app.training.greedy_graph import compose_greedy
from testkit.models import OPSET, save, write_copying_translation

SPEC = DecodingSpec(start_id=1, eos_id=2, suppressed_ids=(0, 1), max_output_length=12)


def sessions(*models: onnx.ModelProto) -> list[ort.InferenceSession]:
    return [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in models]


def python_loop(encoder, decoder, src_ids, mask, spec, max_length=None):
    graphs = {"encoder": encoder, "decoder_step": decoder}

    def run(name, feeds):
        return graphs[name].run(None, dict(feeds))

    memory = np.asarray(run("encoder", {"src_ids": src_ids})[0])
    return greedy_decode(run, memory, mask, spec, max_length)


def test_copying_model(tmp_path):
    folder = write_copying_translation(tmp_path, "copy", max_output_length=12)
    encoder, decoder = onnx.load(folder / "1" / "encoder.onnx"), onnx.load(folder / "1" / "decoder_step.onnx")
    greedy = compose_greedy(encoder, decoder, SPEC, vocab_size=64)
    enc, dec, graph = sessions(encoder, decoder, greedy)
    src = np.array([[5, 6, 7, 2, 0, 0], [8, 9, 2, 0, 0, 0], [10, 11, 12, 13, 14, 2]], np.int64)
    mask = (src != 0).astype(np.int64)
    tokens = graph.run(None, {"src_ids": src, "memory_mask": mask})[0]
    assert greedy_tokens(tokens, SPEC.eos_id) == python_loop(enc, dec, src, mask, SPEC) == [
        [5, 6, 7, 2], [8, 9, 2], [10, 11, 12, 13, 14, 2]]
    for limit in (1, 3, 5):
        assert greedy_tokens(tokens, SPEC.eos_id, limit) == python_loop(enc, dec, src, mask, SPEC, limit)


def random_decoder_step(vocab: int = 40, width: int = 16, seed: int = 0) -> onnx.ModelProto:
    """A decoder step with real arithmetic: embed the prefix, attend over memory (masked), project to
    logits. Its argmax depends on the whole prefix and the memory, so any mistake in the loop shows."""
    rng = np.random.default_rng(seed)
    w = {"embed": rng.standard_normal((vocab, width)), "proj": rng.standard_normal((width, vocab)),
         "mix": rng.standard_normal((width, width))}  # fmt: skip
    nodes = [
        helper.make_node("Gather", ["embed", "tgt_prefix"], ["emb"]),  # [b, t, w]
        helper.make_node("ReduceMean", ["emb"], ["query"], axes=[1], keepdims=1),  # [b, 1, w]
        helper.make_node("Transpose", ["memory"], ["memory_t"], perm=[0, 2, 1]),  # [b, w, s]
        helper.make_node("MatMul", ["query", "memory_t"], ["scores"]),  # [b, 1, s]
        helper.make_node("Cast", ["memory_mask"], ["keep"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["keep", "one"], ["off"]),
        helper.make_node("Mul", ["off", "big"], ["penalty"]),
        helper.make_node("Unsqueeze", ["penalty", "axis1"], ["penalty3"]),
        helper.make_node("Add", ["scores", "penalty3"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["attention"], axis=-1),
        helper.make_node("MatMul", ["attention", "memory"], ["context"]),  # [b, 1, w]
        helper.make_node("MatMul", ["context", "mix"], ["mixed"]),
        helper.make_node("Add", ["mixed", "query"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "proj"], ["logits3"]),
        helper.make_node("Squeeze", ["logits3", "axis1"], ["next_logits"]),
    ]
    graph = helper.make_graph(
        nodes, "decoder_step",
        [helper.make_tensor_value_info("tgt_prefix", TensorProto.INT64, ["b", "t"]),
         helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["b", "s", width]),
         helper.make_tensor_value_info("memory_mask", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("next_logits", TensorProto.FLOAT, ["b", vocab])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()]
        + [numpy_helper.from_array(np.array([1], np.int64), "axis1"), numpy_helper.from_array(np.array(1.0, np.float32), "one"),
           numpy_helper.from_array(np.array(1e9, np.float32), "big")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=OPSET)


def embedding_encoder(vocab: int = 40, width: int = 16, seed: int = 1) -> onnx.ModelProto:
    table = np.random.default_rng(seed).standard_normal((vocab, width)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "src_ids"], ["memory"])], "encoder",
        [helper.make_tensor_value_info("src_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["b", "s", width])],
        [numpy_helper.from_array(table, "table")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=OPSET)


@pytest.mark.parametrize("seed", range(4))
def test_random_transformer_step(tmp_path, seed):
    encoder, decoder = embedding_encoder(seed=seed + 10), random_decoder_step(seed=seed)
    spec = DecodingSpec(start_id=1, eos_id=2, suppressed_ids=(0, 1), max_output_length=20)
    save(decoder, tmp_path / "decoder_step.onnx")  # checker-valid on its own
    greedy = compose_greedy(encoder, decoder, spec, vocab_size=40)
    enc, dec, graph = sessions(encoder, decoder, greedy)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=6)
    src = np.zeros((6, int(lengths.max())), np.int64)
    for row, n in enumerate(lengths):
        src[row, :n] = rng.integers(3, 40, size=n)
    mask = (src != 0).astype(np.int64)
    tokens = graph.run(None, {"src_ids": src, "memory_mask": mask})[0]
    expected = python_loop(enc, dec, src, mask, spec)
    assert greedy_tokens(tokens, spec.eos_id) == expected
    assert 0 not in tokens[:, 1:] and 1 not in tokens[:, 1:]  # suppressed ids never chosen
    assert tokens.shape[1] - 1 == max(len(t) for t in expected)  # it stopped when the last sentence ended
