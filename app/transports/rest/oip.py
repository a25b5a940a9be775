"""Open Inference Protocol (KServe v2) REST routes: thin translations onto the data plane."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from app.transports.rest import codec
from app.dataplane import DataPlane
from app.errors import DendriteError, PayloadTooLarge
from app.protocol import deadlines
from app.protocol.model_config import ModelConfig
from app.runtime import workers
from app.transports.rest import errors, schemas

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"])



def answers(*codes: int) -> dict[int | str, dict]:
    """The error statuses a route can answer, each with its {"error"} body: a route documents only these."""
    return {code: {"model": schemas.ErrorBody} for code in sorted(codes)}


# Any route that names a model: bad version, no API key, unknown model or version, model not ready.
MODEL_ERRORS = (400, 401, 404, 503)
# Inference on top: body too large, the model failed, the deadline passed.
INFER_ERRORS = (*MODEL_ERRORS, 413, 500, 504)
TIMEOUT_HEADER = "x-request-timeout"


def plane(request: Request) -> DataPlane:
    return request.app.state.dataplane


@router.get("/health/live", response_model=schemas.Live)
async def live(request: Request):
    ok = plane(request).live()
    return JSONResponse({"live": ok}, status_code=200 if ok else 503)


@router.get("/health/ready", response_model=schemas.Ready, responses=answers(503))
async def ready(request: Request):
    why = plane(request).not_ready_because()
    return JSONResponse({"ready": False, "error": why} if why else {"ready": True}, status_code=503 if why else 200)


@router.get("", response_model=schemas.ServerMetadata, responses=answers(401))
async def server_metadata(request: Request):
    return plane(request).server_metadata()


@router.get("/models/{model}", response_model=schemas.ModelMetadata, responses=answers(*MODEL_ERRORS))
@router.get("/models/{model}/versions/{version}", response_model=schemas.ModelMetadata,
            responses=answers(*MODEL_ERRORS))
async def model_metadata(request: Request, model: str, version: str | None = None):
    return plane(request).model_metadata(model, version)


@router.get("/models/{model}/config", response_model=ModelConfig, responses=answers(*MODEL_ERRORS))
@router.get("/models/{model}/versions/{version}/config", response_model=ModelConfig, responses=answers(*MODEL_ERRORS))
async def model_config(request: Request, model: str, version: str | None = None):
    """The configuration in force: config.yaml with the server's settings resolved (instance kind, intra-op
    threads, queue size, warm-up sizes) and the tensors as loaded (Triton's ``GET .../config``)."""
    return plane(request).model_config(model, version)


@router.get("/models/{model}/ready", response_model=schemas.ModelReadyBody, responses=answers(*MODEL_ERRORS))
@router.get("/models/{model}/versions/{version}/ready", response_model=schemas.ModelReadyBody,
            responses=answers(*MODEL_ERRORS))
async def model_ready(request: Request, model: str, version: str | None = None):
    mv = plane(request).model(model, version)
    ok = plane(request).model_ready(model, version)
    body = {"name": model, "ready": ok}
    if not ok:
        body["error"] = f"model {model!r} version {mv.version} is {mv.state.value}" + (f": {mv.reason}" if mv.reason else "")
    return JSONResponse(body, status_code=200 if ok else 503)


def request_deadline(request: Request) -> float | None:
    """``X-Request-Timeout: <seconds>``: the client's deadline, carried into the batcher."""
    return deadlines.from_seconds_header(TIMEOUT_HEADER, request.headers.get(TIMEOUT_HEADER))


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit} (DENDRITE_MAX_REQUEST_BYTES)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes (DENDRITE_MAX_REQUEST_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/models/{model}/infer",
    response_model=schemas.InferResponseBody,
    responses=answers(*INFER_ERRORS),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": schemas.InferRequestBody.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
)  # fmt: skip
@router.post("/models/{model}/versions/{version}/infer", response_model=schemas.InferResponseBody,
             include_in_schema=False)  # fmt: skip
async def infer(request: Request, model: str, version: str | None = None) -> Response:
    return await handle_infer(request, model, version)


async def handle_infer(request: Request, model: str, version: str | None) -> Response:
    """The infer route's work; also called by ``InferFastPath`` without FastAPI's routing."""
    dp = plane(request)
    settings = dp.settings
    with dp.refusals(model, "rest"):
        deadline = request_deadline(request)
        body = await read_body(request, settings.max_request_bytes)
        header_length = request.headers.get(codec.HEADER_LENGTH)
        # big JSON tensors are parsed off the loop
        req = await workers.offload_if_large(len(body), codec.decode_request, body, header_length,
                                             max_elements=settings.max_tensor_elements)
    resp = await dp.infer(model, version, req, protocol="rest", deadline=deadline)
    payload, json_length = codec.encode_response(resp, req)
    if json_length is None:
        return Response(payload, media_type="application/json")
    return Response(payload, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(json_length)})  # fmt: skip


INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


class InferFastPath:
    """ASGI middleware serving ``POST /v2/models/{m}[/versions/{v}]/infer`` directly.

    FastAPI's route matching and dependency solving cost about as much CPU as everything
    else a small-model request does (py-spy, bench/serving.py), so the hot route skips them.
    The FastAPI route above still documents it in the OpenAPI schema, and errors go through
    the same mapping as every other route.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = INFER_PATH.match(scope["path"])
            if match:
                request = Request(scope, receive)
                try:
                    response = await handle_infer(request, match.group(1), match.group(2))
                except DendriteError as exc:
                    response = errors.error_response(exc)
                except ClientDisconnect:  # gone while sending the body: nobody to answer
                    return
                except Exception as exc:  # noqa: BLE001 - same contract as the app's catch-all handler
                    response = errors.unexpected_response(exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# Triton's repository extension; its own router so Swagger lists these once, under their own tag.
repository_router = APIRouter(prefix="/v2/repository", tags=["Model repository"])


@repository_router.get("/index", response_model=list[schemas.RepositoryModel], responses=answers(401))
@repository_router.post("/index", response_model=list[schemas.RepositoryModel], include_in_schema=False)
async def repository_index(request: Request):
    return plane(request).repository_index()


@repository_router.post("/models/{model}/load", responses=answers(400, 401, 403, 404, 500))
async def load_model(request: Request, model: str):
    return await plane(request).load_model(model)


@repository_router.post("/models/{model}/unload", responses=answers(400, 401, 403, 404))
async def unload_model(request: Request, model: str):
    await plane(request).unload_model(model)
    return {"name": model, "unloaded": True}
