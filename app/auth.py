"""API keys: which routes need which keys, and a constant-time check of what a client sent.

Two key sets (``app.config``): ``api_keys`` for everything that serves or describes models,
``repository_api_keys`` for the repository load/unload routes; with no repository keys set,
load/unload take the ``api_keys``, so setting keys never leaves model control open. Health
(liveness/readiness) is always open so probes need no secret; ``/metrics`` is open unless
``metrics_require_key``. Clients send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``
(gRPC: the same names as metadata). Each transport declares the ``Access`` of its routes or
methods (``app.transports.rest.guard.access_of``, ``app.transports.grpc.server.access_of``); this
module says which keys each access takes and checks them. The REST check is an ASGI middleware
so it also covers the infer fast path, the gRPC one a server interceptor.
"""

from __future__ import annotations

import enum
import hmac
from typing import Iterable, Sequence

from app.config import Settings

class Access(enum.Enum):
    """What a route or method needs, declared by the transport that serves it."""

    OPEN = "open"  # probes, the API description, static assets: never a key
    METRICS = "metrics"  # /metrics: a key only with DENDRITE_METRICS_REQUIRE_KEY
    SERVING = "serving"  # serving and describing models: DENDRITE_API_KEYS
    REPOSITORY = "repository"  # load/unload: DENDRITE_REPOSITORY_API_KEYS, else DENDRITE_API_KEYS


def required_keys(settings: Settings, access: Access) -> tuple[Sequence[str], str]:
    """The keys one of which a call with ``access`` must present (empty: none needed), and the
    message a call without one gets."""
    if access is Access.OPEN or (access is Access.METRICS and not settings.metrics_require_key):
        return (), ""
    if access is Access.REPOSITORY and settings.repository_api_keys:
        return settings.repository_api_keys, MISSING_REPOSITORY
    return settings.api_keys, MISSING


def presented_key(authorization: str | None, api_key: str | None) -> str | None:
    if api_key:
        return api_key.strip()
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def authorized(presented: str | None, keys: Iterable[str]) -> bool:
    """True when ``presented`` equals one of ``keys``. Every key is compared, each in constant
    time (``hmac.compare_digest``), so timing reveals neither which key nor how much matched."""
    if presented is None:
        return False
    given = presented.encode()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, key.encode())
    return ok


MISSING = "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (DENDRITE_API_KEYS)"
MISSING_REPOSITORY = ("missing or invalid repository API key: send 'Authorization: Bearer <key>' "
                      "or 'X-API-Key: <key>' (DENDRITE_REPOSITORY_API_KEYS)")  # fmt: skip
