"""API keys: which routes need which keys, and a constant-time check of what a client sent.

Two key sets (``app.config``): ``api_keys`` for everything that serves or describes models,
``repository_api_keys`` for the repository load/unload routes; with no repository keys set,
load/unload take the ``api_keys``, so setting keys never leaves model control open. Health
(liveness/readiness) is always open so probes need no secret; ``/metrics`` is open unless
``metrics_require_key``. Clients send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``
(gRPC: the same names as metadata). Each transport asks ``required_keys`` and ``authorized``;
the REST check is an ASGI middleware (``app.transports.rest.guard``) so it also covers the
infer fast path, the gRPC one a server interceptor.
"""

from __future__ import annotations

import hmac
from typing import Iterable, Sequence

from app.config import Settings

# REST paths that never need a key (probes, the API description, the playground page).
PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/docs", "/docs/oauth2-redirect", "/redoc",
                          "/openapi.json", "/"})  # fmt: skip
# Static files (Swagger UI / ReDoc assets, the playground's JS and CSS): no data in them; the
# routes the playground calls (/status, /predict/...) still need a key.
PUBLIC_PREFIXES = ("/docs-assets/", "/playground/")
# gRPC methods that never need a key (probes, discovery).
PUBLIC_GRPC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
PUBLIC_GRPC_METHODS = frozenset({"/inference.GRPCInferenceService/ServerLive",
                                 "/inference.GRPCInferenceService/ServerReady"})  # fmt: skip


def required_keys(settings: Settings, path: str) -> tuple[Sequence[str], str]:
    """The keys one of which a REST request to ``path`` must present (empty: none needed), and
    the message a request without one gets."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return (), ""
    if path.startswith("/v2/repository/models/") and path.endswith(("/load", "/unload")):
        if settings.repository_api_keys:
            return settings.repository_api_keys, MISSING_REPOSITORY
        return settings.api_keys, MISSING
    if path == "/metrics" and not settings.metrics_require_key:
        return (), ""
    return settings.api_keys, MISSING


def required_grpc_keys(settings: Settings, method: str) -> Sequence[str]:
    if method in PUBLIC_GRPC_METHODS or method.startswith(PUBLIC_GRPC_PREFIXES):
        return ()
    return settings.api_keys


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
