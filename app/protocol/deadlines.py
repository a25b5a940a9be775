"""Deadlines: every source of one and the one rule that combines them.

A deadline is a ``time.monotonic()`` instant (None: no deadline). A request gets one from
- its transport: REST ``X-Request-Timeout: <seconds>`` (``from_seconds_header``) or the gRPC call's
  own deadline (``from_remaining``);
- OIP infer's ``timeout`` parameter, in microseconds (``from_timeout_parameter``);
- the model: config.yaml ``dynamic_batching.default_timeout_microseconds`` (``or_default``).

The rule: the earliest the client set (``earliest``); the model's default only when the client set
none, bounding the whole task request (a translation's coalescing and every decode step), not each
graph run. A group of requests run together (coalesced decoding) runs under its most patient
member's deadline (``latest``), each member still leaving at its own.
"""

from __future__ import annotations

import time

from app.errors import InvalidInput


def after(seconds: float) -> float:
    return time.monotonic() + seconds


def from_seconds_header(name: str, value: str | None) -> float | None:
    """A header of seconds from now (``name`` words the error)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise InvalidInput(f"{name} must be positive, got {value!r}")
    return after(seconds)


def from_remaining(remaining: float | None) -> float | None:
    """A gRPC call's time remaining (None: the client set no deadline)."""
    return None if remaining is None else after(remaining)


def from_timeout_parameter(value: object) -> float | None:
    """OIP's ``timeout`` request parameter: a positive integer of microseconds."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidInput(f"parameter 'timeout' must be a positive integer of microseconds, got {value!r}")
    return after(value / 1e6)


def earliest(*deadlines: float | None) -> float | None:
    """The first of the deadlines set (None: none is)."""
    set_ = [d for d in deadlines if d is not None]
    return min(set_) if set_ else None


def latest(deadlines: list[float | None]) -> float | None:
    """The last of the deadlines; None when any is None (someone waits without a deadline)."""
    return None if None in deadlines else max(deadlines)  # type: ignore[type-var]


def or_default(deadline: float | None, default_microseconds: int | None) -> float | None:
    """The client's deadline, else the model's default (0 or None: no default)."""
    if deadline is None and default_microseconds:
        return after(default_microseconds / 1e6)
    return deadline
