"""The one place REST maps errors to status codes: ``{"error": "..."}`` bodies everywhere."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.errors import UNEXPECTED, DendriteError, InvalidInput

log = logging.getLogger(__name__)


def invalid_request(exc: RequestValidationError) -> InvalidInput:
    """FastAPI's rejection of a request (body, parameters) in our words."""
    return InvalidInput(_describe(exc))


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            return f"request body is not valid JSON: {e.get('ctx', {}).get('error', e.get('msg'))}"
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {e.get('msg')}")
    return "; ".join(parts)


def error_response(exc: DendriteError) -> JSONResponse:
    if exc.http_status >= 500 and exc.http_status not in (503, 504):  # overload and deadlines are not bugs
        log.error("%s: %s", type(exc).__name__, exc.message)
    return JSONResponse({"error": exc.message}, status_code=exc.http_status, headers=exc.headers)


def unexpected_response(exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return JSONResponse({"error": UNEXPECTED}, status_code=500)


def install(app: FastAPI) -> None:
    @app.exception_handler(DendriteError)
    async def dendrite_error(_: Request, exc: DendriteError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(invalid_request(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected_response(exc)
