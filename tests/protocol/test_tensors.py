"""Tensor codecs: JSON and raw bytes for every Open Inference Protocol datatype."""

import struct
import time

import numpy as np
import pytest

from app.protocol import tensors
from app.protocol.datatypes import OIP_TO_NUMPY
from app.errors import InvalidInput, PayloadTooLarge

NUMERIC = [dt for dt in OIP_TO_NUMPY if dt not in ("BYTES", "BOOL")]


@pytest.mark.parametrize("datatype", NUMERIC)
def test_numeric_roundtrip_json_and_raw(datatype):
    arr = (np.arange(6) % 5).astype(OIP_TO_NUMPY[datatype]).reshape(2, 3)
    flat = tensors.from_json("t", datatype, [2, 3], arr.ravel().tolist(), 100)
    nested = tensors.from_json("t", datatype, [2, 3], arr.tolist(), 100)
    raw = tensors.from_raw("t", datatype, [2, 3], tensors.to_raw(arr), 100)
    for got in (flat, nested, raw):
        assert got.dtype == arr.dtype
        np.testing.assert_array_equal(got, arr)
    assert list(np.asarray(tensors.to_json_data(arr))) == arr.ravel().tolist()


def test_bool_and_bytes():
    b = tensors.from_json("b", "BOOL", [3], [True, False, True], 10)
    assert b.dtype == np.bool_ and b.tolist() == [True, False, True]
    s = tensors.from_json("s", "BYTES", [2], ["héllo", "x"], 10)
    assert s.tolist() == ["héllo", "x"]
    assert tensors.from_raw("s", "BYTES", [2], tensors.to_raw(s), 10).tolist() == ["héllo", "x"]
    assert tensors.to_raw(s) == b"\x06\x00\x00\x00h\xc3\xa9llo\x01\x00\x00\x00x"
    assert tensors.to_json_data(s) == ["héllo", "x"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("FP32", [2, 2], [1, 2, 3]), "needs 4 elements, data has 3"),
        (("FP32", [2], ["a", "b"]), "does not fit datatype FP32"),
        (("UINT8", [1], [300]), "does not fit datatype UINT8"),
        (("BOOL", [1], [1]), "BOOL"),
        (("FP32", [2, -1], [1, 2]), "negative dimension"),
        (("FP32", "2x2", [1, 2, 3, 4]), "shape must be a list of integers"),
        (("FLOAT", [1], [1.0]), "unknown datatype 'FLOAT'"),
        (("FP32", [2, 2], [[1, 2], [3]]), "does not fit"),
        (("FP32", [2], [1, None]), "null or a number out of FP32 range"),
        (("FP16", [1], [1e6]), "out of FP16 range"),
    ],
)
def test_json_errors_name_the_problem(args, message):
    with pytest.raises(InvalidInput, match=message):
        tensors.from_json("x", *args, max_elements=100)


def test_raw_errors_name_the_problem():
    with pytest.raises(InvalidInput, match="needs 16 bytes, got 12"):
        tensors.from_raw("x", "FP32", [4], b"\x00" * 12, 100)
    with pytest.raises(InvalidInput, match="overruns"):
        tensors.from_raw("x", "BYTES", [1], b"\x09\x00\x00\x00abc", 100)
    with pytest.raises(InvalidInput, match="needs 2 BYTES elements, got 1"):
        tensors.from_raw("x", "BYTES", [2], b"\x01\x00\x00\x00a", 100)
    with pytest.raises(InvalidInput, match="not UTF-8"):
        tensors.from_raw("x", "BYTES", [1], b"\x01\x00\x00\x00\xff", 100)


def test_more_elements_than_the_shape_are_refused_before_the_rest_is_parsed():
    # After the one element shape [1] needs comes bytes that are not UTF-8: the count is refused first.
    with pytest.raises(InvalidInput, match=r"shape \[1\] needs 1 BYTES elements, the data has more"):
        tensors.from_raw("x", "BYTES", [1], b"\x01\x00\x00\x00a" + b"\x01\x00\x00\x00\xff", 100)
    # 8 MiB of empty elements cost about 1 s of CPU to parse before the count was checked.
    many = struct.pack("<I", 0) * (2 * 1024 * 1024)
    started = time.process_time()
    with pytest.raises(InvalidInput, match="the data has more"):
        tensors.from_raw("x", "BYTES", [1], many, 50_000_000)
    with pytest.raises(InvalidInput, match="needs 1 elements, data has 2097152"):
        tensors.from_json("x", "BYTES", [1], ["a"] * (len(many) // 4), 50_000_000)
    assert time.process_time() - started < 0.1


def test_element_limit_names_its_setting():
    with pytest.raises(PayloadTooLarge, match="DENDRITE_MAX_TENSOR_ELEMENTS"):
        tensors.from_json("x", "FP32", [1000, 1000], [], max_elements=1000)
