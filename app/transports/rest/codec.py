"""Open Inference Protocol REST bodies <-> data-plane requests/responses.

JSON tensors (flat or nested ``data``) and the binary tensor extension: a request whose
``Inference-Header-Content-Length`` header is N carries N bytes of JSON followed by the raw
tensors, in input order, of every input whose ``parameters.binary_data_size`` is set.
Responses put an output in the binary section when its requested ``parameters.binary_data``
is true, or when the request's ``parameters.binary_data_output`` is true.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.protocol import tensors
from app.protocol.types import InferRequest, InferResponse, RequestedOutput, Tensor
from app.errors import InvalidInput

HEADER_LENGTH = "inference-header-content-length"


def _obj(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object")
    return value


def _params(value: Any, where: str) -> dict:
    return {} if value is None else _obj(value, f"{where}.parameters")


def decode_request(body: bytes, header_length: str | None, *, max_elements: int) -> InferRequest:
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
        if n < 0 or n > len(body):
            raise InvalidInput(f"Inference-Header-Content-Length {n} is outside the body of {len(body)} bytes")
        header, binary = body[:n], memoryview(body)[n:]
    else:
        header, binary = body, memoryview(b"")
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    doc = _obj(doc, "request body")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("request needs a non-empty 'inputs' list")
    inputs: list[Tensor] = []
    offset = 0
    for i, item in enumerate(raw_inputs):
        item = _obj(item, f"inputs[{i}]")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"inputs[{i}] needs a 'name' string")
        if not isinstance(datatype, str):
            raise InvalidInput(f"input {name!r} needs a 'datatype' string")
        params = _params(item.get("parameters"), f"input {name!r}")
        size = params.get("binary_data_size")
        if size is not None:
            if header_length is None:
                raise InvalidInput(f"input {name!r} has binary_data_size but no Inference-Header-Content-Length header")
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInput(f"input {name!r}: binary_data_size {size!r} overruns the {len(binary)}-byte binary section")
            data = tensors.from_raw(name, datatype, shape, binary[offset : offset + size], max_elements)
            offset += size
        else:
            if "data" not in item:
                raise InvalidInput(f"input {name!r} needs 'data' (or parameters.binary_data_size)")
            data = tensors.from_json(name, datatype, shape, item["data"], max_elements)
        inputs.append(Tensor(name, datatype, list(shape), data, params))
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} unread bytes after the binary tensors (check binary_data_size)")
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise InvalidInput("'outputs' must be a list")
        outputs = []
        for i, o in enumerate(doc["outputs"]):
            o = _obj(o, f"outputs[{i}]")
            if not isinstance(o.get("name"), str):
                raise InvalidInput(f"outputs[{i}] needs a 'name' string")
            outputs.append(RequestedOutput(o["name"], _params(o.get("parameters"), f"output {o['name']!r}")))
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise InvalidInput("'id' must be a string")
    return InferRequest(inputs, outputs, rid, _params(doc.get("parameters"), "request"))


def encode_response(resp: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when a binary section follows."""
    all_binary = bool(request.parameters.get("binary_data_output"))
    outputs, chunks = [], []
    for out in resp.outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        params = {k: v for k, v in out.parameters.items() if k != "binary_data"}
        if out.parameters.get("binary_data", all_binary):
            raw = tensors.to_raw(out.data)
            chunks.append(raw)
            params["binary_data_size"] = len(raw)
        else:
            entry["data"] = tensors.to_json_data(out.data)
        if params:
            entry["parameters"] = params
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": resp.model_name, "model_version": resp.model_version, "outputs": outputs}
    if resp.id is not None:
        doc["id"] = resp.id
    if resp.parameters:
        doc["parameters"] = resp.parameters
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)
