"""Outcome labels: what each error counts as in dendrite_requests_total."""

import asyncio

import pytest

from app import errors


@pytest.mark.parametrize(
    "exc, outcome",
    [
        (None, "success"),
        (errors.InvalidInput("x"), "client_error"),
        (errors.NotFound("x"), "not_found"),
        (errors.PayloadTooLarge("x"), "client_error"),
        (errors.Overloaded("x"), "rejected"),
        (errors.DeadlineExceeded("x"), "timeout"),
        (errors.ModelNotReady("x"), "unavailable"),
        (errors.ModelTraining("x"), "training"),
        (asyncio.CancelledError(), "cancelled"),  # client gone: not the server's failure
        (errors.InferenceFailed("x"), "server_error"),
        (RuntimeError("x"), "server_error"),
    ],
)
def test_outcome_of(exc, outcome):
    assert errors.outcome_of(exc) == outcome


def test_overloaded_carries_retry_after():
    assert errors.Overloaded("full", retry_after=7).headers == {"Retry-After": "7"}


def test_an_unexpected_error_names_no_exception_class_to_the_client():
    import grpc
    import orjson

    from app.transports.grpc.rpc import status_of
    from app.transports.rest.errors import unexpected_response

    try:
        raise KeyError("secret")
    except KeyError as exc:
        code, message, _ = status_of(exc, "test")
        body = orjson.loads(unexpected_response(exc).body)
    assert code is grpc.StatusCode.INTERNAL
    assert message == body["error"] == "internal error; the server log has the details"
