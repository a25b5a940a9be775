"""Tensor codecs shared by every transport: JSON data lists and raw little-endian bytes
(the Open Inference Protocol's binary extension and gRPC ``raw_*_contents``) <-> numpy.

BYTES tensors in raw form are, per element, a 4-byte little-endian length then the bytes.
Decoded BYTES elements are Python ``str``: ONNX Runtime string tensors hold text (it would
turn a ``bytes`` object into the text "b'...'"), so non-UTF-8 bytes are rejected.
Every failure is an ``InvalidInput`` naming the tensor and what was expected.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from app.protocol.datatypes import OIP_TO_NUMPY, oip_datatype
from app.errors import InvalidInput, PayloadTooLarge


def _dtype(name: str, datatype: str) -> np.dtype:
    try:
        return OIP_TO_NUMPY[datatype]
    except KeyError:
        raise InvalidInput(
            f"input {name!r}: unknown datatype {datatype!r} (one of {', '.join(OIP_TO_NUMPY)})"
        ) from None


def check_shape(name: str, shape: Any, max_elements: int) -> int:
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be a list of integers, got {shape!r}")
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    if count > max_elements:
        raise PayloadTooLarge(
            f"input {name!r}: {count} elements exceed the limit of {max_elements} (DENDRITE_MAX_TENSOR_ELEMENTS)"
        )
    return count


def _to_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, bytes):
        return item.decode()
    raise TypeError(f"BYTES elements must be strings, got {type(item).__name__}")


def _to_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    raise TypeError(f"BYTES elements must be strings, got {type(item).__name__}")


def from_json(name: str, datatype: str, shape: list[int], data: Any, max_elements: int) -> np.ndarray:
    """A tensor from JSON ``data`` (flat or nested, row-major)."""
    count = check_shape(name, shape, max_elements)
    dtype = _dtype(name, datatype)
    if not isinstance(data, list):
        data = [data]
    if len(data) > max(count, 1):  # flat data has count items, nested data shape[0]: refuse before converting
        has = f"more than {count}" if isinstance(data[0], list) else str(len(data))
        raise InvalidInput(f"input {name!r}: shape {list(shape)} needs {count} elements, data has {has}")
    try:
        if datatype == "BYTES":
            flat = np.asarray(data, dtype=object).ravel()
            arr = np.fromiter((_to_text(x) for x in flat), dtype=object, count=flat.size)
        elif datatype == "BOOL":
            arr = np.asarray(data)
            if arr.dtype != np.bool_ and arr.size:
                raise TypeError("BOOL data must be true/false")
            arr = arr.astype(np.bool_, copy=False)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                arr = np.asarray(data, dtype=dtype)
            # JSON has no NaN or infinity: a non-finite value came from null or an out-of-range number.
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError(f"null or a number out of {datatype} range")
    except (TypeError, ValueError, OverflowError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"input {name!r}: data does not fit datatype {datatype}: {exc}") from None
    if arr.size != count:
        raise InvalidInput(
            f"input {name!r}: shape {list(shape)} needs {count} elements, data has {arr.size}"
        )
    return arr.reshape(shape)


def from_raw(name: str, datatype: str, shape: list[int], raw: bytes | memoryview, max_elements: int) -> np.ndarray:
    """A tensor from raw little-endian bytes."""
    count = check_shape(name, shape, max_elements)
    if datatype == "BYTES":
        items, view, pos = [], memoryview(raw), 0
        while pos < len(view):
            if len(items) == count:  # stop at once: the rest of the buffer may be millions of elements
                raise InvalidInput(
                    f"input {name!r}: shape {list(shape)} needs {count} BYTES elements, the data has more"
                )
            if pos + 4 > len(view):
                raise InvalidInput(f"input {name!r}: truncated BYTES element length at offset {pos}")
            (n,) = struct.unpack_from("<I", view, pos)
            pos += 4
            if pos + n > len(view):
                raise InvalidInput(f"input {name!r}: BYTES element of {n} bytes overruns the buffer")
            try:
                items.append(str(view[pos : pos + n], "utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(f"input {name!r}: BYTES element at offset {pos} is not UTF-8 text") from None
            pos += n
        if len(items) != count:
            raise InvalidInput(f"input {name!r}: shape {list(shape)} needs {count} BYTES elements, got {len(items)}")
        arr = np.empty(count, dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    dtype = _dtype(name, datatype)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"input {name!r}: {datatype} shape {list(shape)} needs {expected} bytes, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)


def to_raw(arr: np.ndarray) -> bytes:
    if oip_datatype(arr) == "BYTES":
        parts = []
        for item in arr.ravel():
            b = _to_bytes(item)
            parts.append(struct.pack("<I", len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def to_json_data(arr: np.ndarray) -> list | np.ndarray:
    """Flat row-major data for JSON: a contiguous numpy array (orjson writes it natively) or,
    for BYTES and FP16, a list."""
    if oip_datatype(arr) == "BYTES":
        try:
            return [_to_text(item) for item in arr.ravel()]
        except UnicodeDecodeError:
            raise InvalidInput("a BYTES output is not UTF-8; request it with the binary_data parameter") from None
    if arr.dtype == np.float16:
        return arr.astype(np.float32).ravel().tolist()
    return np.ascontiguousarray(arr).ravel()
