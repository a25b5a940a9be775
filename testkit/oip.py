"""Open Inference Protocol REST bodies with binary tensors (the extension Triton's clients use), and
checked cases for ``testkit.models.matmul_chain_model``."""

from __future__ import annotations

import json

import aiohttp
import numpy as np


def binary_body(x: np.ndarray, name: str = "x") -> tuple[bytes, dict[str, str]]:
    """An OIP infer body with one FP32 input and every output in the binary section."""
    header = json.dumps({
        "inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes}}],
        "parameters": {"binary_data_output": True},
    }).encode()  # fmt: skip
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header)),
                                  "Content-Type": "application/octet-stream"}  # fmt: skip


def decode_binary_output(body: bytes, header_length: int, name: str) -> tuple[dict, np.ndarray]:
    meta = json.loads(body[:header_length])
    offset = header_length
    for out in meta["outputs"]:
        size = out["parameters"]["binary_data_size"]
        if out["name"] == name:
            arr = np.frombuffer(body[offset : offset + size], np.float32).reshape(out["shape"])
            return meta, arr
        offset += size
    raise KeyError(name)


def chain_cases(weights: list[np.ndarray], n: int = 24, seed: int = 0) -> list:
    """Precomputed (body, headers, expected y) with 1..16 rows: varying batch shapes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.standard_normal((int(rng.integers(1, 17)), weights[0].shape[0])).astype(np.float32)
        y = x.astype(np.float64)
        for w in weights:
            y = y @ w
        body, headers = binary_body(x)
        out.append((body, headers, y.astype(np.float32)))
    return out


def check_chain_answer(response: aiohttp.ClientResponse, data: bytes, expected: np.ndarray) -> str | None:
    n = int(response.headers["Inference-Header-Content-Length"])
    _, y = decode_binary_output(data, n, "y")
    if y.shape != expected.shape:
        return f"shape {y.shape} != {expected.shape}"
    if not np.allclose(y, expected, rtol=1e-3, atol=1e-3):
        return f"values differ by {np.abs(y - expected).max()}"
    return None
