"""Property tests (hypothesis) on the tensor codecs and the OIP REST body codec: every tensor
round-trips through raw bytes and JSON, and any input at all either decodes or fails with the
data plane's own errors (400/413), never an unexpected exception (a 500)."""

from __future__ import annotations

import json

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.protocol import tensors
from app.transports.rest import codec as rest_codec
from app.protocol.datatypes import OIP_TO_NUMPY
from app.errors import DendriteError

NUMERIC = [d for d in OIP_TO_NUMPY if d != "BYTES"]
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@st.composite
def numeric_arrays(draw, finite: bool = False):
    datatype = draw(st.sampled_from(NUMERIC))
    dtype = OIP_TO_NUMPY[datatype]
    elements = None
    if dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=not finite, allow_infinity=not finite)
    return datatype, draw(hnp.arrays(dtype, draw(shapes), elements=elements))


@st.composite
def text_arrays(draw):
    shape = draw(shapes)
    items = draw(st.lists(st.text(max_size=12), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return "BYTES", arr.reshape(shape)


@SETTINGS
@given(st.one_of(numeric_arrays(), text_arrays()))
def test_raw_round_trip(case):
    datatype, arr = case
    back = tensors.from_raw("x", datatype, list(arr.shape), tensors.to_raw(arr), max_elements=10**6)
    assert back.shape == arr.shape and back.dtype == arr.dtype
    if datatype == "BYTES":
        assert back.tolist() == arr.tolist()
    else:
        np.testing.assert_array_equal(back, arr)  # NaN == NaN here, bit patterns kept


@SETTINGS
@given(st.one_of(numeric_arrays(finite=True), text_arrays()))
def test_json_round_trip(case):
    datatype, arr = case
    data = orjson.loads(orjson.dumps(tensors.to_json_data(arr), option=orjson.OPT_SERIALIZE_NUMPY))
    back = tensors.from_json("x", datatype, list(arr.shape), data, max_elements=10**6)
    assert back.shape == arr.shape
    if datatype == "BYTES":
        assert back.tolist() == arr.tolist()
    else:
        np.testing.assert_array_equal(back, arr)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip
datatypes = st.sampled_from(list(OIP_TO_NUMPY) + ["FP128", "", "fp32"])
any_shape = st.one_of(st.lists(st.integers(min_value=-3, max_value=2**33), max_size=4), json_values)


@SETTINGS
@given(datatype=datatypes, shape=any_shape, data=json_values)
def test_from_json_fails_only_with_dendrite_errors(datatype, shape, data):
    try:
        tensors.from_json("x", datatype, shape, data, max_elements=1000)
    except DendriteError:
        pass


@SETTINGS
@given(datatype=datatypes, shape=any_shape, raw=st.binary(max_size=64))
def test_from_raw_fails_only_with_dendrite_errors(datatype, shape, raw):
    try:
        tensors.from_raw("x", datatype, shape, raw, max_elements=1000)
    except DendriteError:
        pass


tensor_items = st.fixed_dictionaries(
    {}, optional={"name": st.one_of(st.just("x"), json_values), "datatype": st.one_of(datatypes, json_values),
                  "shape": any_shape, "data": json_values,
                  "parameters": st.one_of(json_values, st.fixed_dictionaries(
                      {"binary_data_size": st.one_of(st.integers(-2, 80), json_values)}))},
)  # fmt: skip
documents = st.fixed_dictionaries(
    {}, optional={"inputs": st.one_of(st.lists(tensor_items, max_size=3), json_values),
                  "outputs": st.one_of(st.lists(st.fixed_dictionaries({}, optional={"name": json_values,
                                                                                    "parameters": json_values})),
                                       json_values),
                  "id": json_values, "parameters": json_values},
)  # fmt: skip


@SETTINGS
@given(doc=documents, tail=st.binary(max_size=64), header=st.one_of(st.none(), st.integers(-5, 400).map(str),
                                                                     st.text(max_size=5)))  # fmt: skip
def test_decode_request_fails_only_with_dendrite_errors(doc, tail, header):
    head = json.dumps(doc).encode()
    body = head + tail if header is not None else head
    try:
        rest_codec.decode_request(body, header, max_elements=1000)
    except DendriteError:
        pass


@SETTINGS
@given(body=st.binary(max_size=200), header=st.one_of(st.none(), st.integers(-5, 250).map(str)))
def test_decode_request_on_random_bytes(body, header):
    try:
        rest_codec.decode_request(body, header, max_elements=1000)
    except DendriteError:
        pass
