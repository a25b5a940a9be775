"""The deadline rule: every source of a deadline read and combined in one place (app.protocol.deadlines)."""

from __future__ import annotations

import time

import pytest

from app.errors import InvalidInput
from app.protocol import deadlines


def test_sources_are_instants_from_now():
    before = time.monotonic()
    header = deadlines.from_seconds_header("x-request-timeout", "1.5")
    remaining = deadlines.from_remaining(2.0)
    parameter = deadlines.from_timeout_parameter(250_000)
    after = time.monotonic()
    assert before + 1.5 <= header <= after + 1.5
    assert before + 2.0 <= remaining <= after + 2.0
    assert before + 0.25 <= parameter <= after + 0.25
    assert deadlines.from_seconds_header("x-request-timeout", None) is None
    assert deadlines.from_remaining(None) is None and deadlines.from_timeout_parameter(None) is None


@pytest.mark.parametrize("value, message", [
    ("soon", "x-request-timeout must be a number of seconds, got 'soon'"),
    ("0", "x-request-timeout must be positive, got '0'"),
    ("-1", "x-request-timeout must be positive, got '-1'"),
    ("nan", "x-request-timeout must be positive, got 'nan'"),
])  # fmt: skip
def test_header_refusals_name_the_header(value, message):
    with pytest.raises(InvalidInput) as refused:
        deadlines.from_seconds_header("x-request-timeout", value)
    assert refused.value.message == message


@pytest.mark.parametrize("value", [0, -5, 1.5, "100", True])
def test_timeout_parameter_is_a_positive_integer_of_microseconds(value):
    with pytest.raises(InvalidInput, match="parameter 'timeout' must be a positive integer of microseconds"):
        deadlines.from_timeout_parameter(value)


def test_the_client_sets_the_earliest_and_the_model_a_default():
    assert deadlines.earliest(None, None) is None
    assert deadlines.earliest(5.0, None, 3.0) == 3.0
    assert deadlines.or_default(7.0, 1_000_000) == 7.0  # the client's own wins, even if later than the default
    assert deadlines.or_default(None, 0) is None and deadlines.or_default(None, None) is None
    start = time.monotonic()
    assert start + 1.0 <= deadlines.or_default(None, 1_000_000) <= time.monotonic() + 1.0


def test_a_group_runs_under_its_most_patient_member():
    assert deadlines.latest([1.0, 4.0, 2.0]) == 4.0
    assert deadlines.latest([1.0, None]) is None  # someone waits without a deadline
