"""Task routes: ``POST /predict/{task}`` with plain inputs and answers, typed in the OpenAPI schema."""

from __future__ import annotations

import inspect
import time

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from app.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from app.runtime import workers
from app.tasks.base import Task, TaskRequest, invalid_input
from app.transports.rest.errors import invalid_request
from app.transports.rest.oip import INFER_ERRORS, answers, plane, read_body, request_deadline


class CountedRoute(APIRoute):
    """Counts a body FastAPI rejects before the route runs (it fails the task's request model) in
    dendrite_requests_total, as ``DataPlane.predict`` counts the requests it sees; what the routes
    refuse themselves before ``predict`` they count with ``DataPlane.refusals``. The model is "":
    the body that names it did not validate."""

    def get_route_handler(self):
        handle = super().get_route_handler()

        async def counted(request: Request) -> Response:
            start = time.perf_counter()
            try:
                return await handle(request)
            except RequestValidationError as exc:  # raised only before the endpoint runs
                error = invalid_request(exc)
                plane(request).refused(None, "rest", error, time.perf_counter() - start)
                raise error from None

        return counted


def media_type(request: Request, accepted: tuple[str, ...] = ("application/json",)) -> str:
    """The request's media type, one of ``accepted``. Every /predict route answers a wrong or missing one
    the same way: 415 naming what it takes, before the body is read."""
    ctype = request.headers.get("content-type", "")
    kind = ctype.split(";", 1)[0].strip().lower()
    if kind not in accepted:
        given = repr(ctype) if ctype else "a body without Content-Type"
        raise UnsupportedMediaType(f"{request.url.path} takes {' or '.join(accepted)}, not {given}")
    return kind


def json_only(request: Request) -> None:
    """The typed JSON routes' dependency (FastAPI would read ``media_type``'s ``accepted`` as a body field)."""
    with plane(request).refusals(None, "rest"):
        media_type(request)


def counted_deadline(request: Request) -> float | None:
    """``request_deadline``, counted when the header is refused."""
    with plane(request).refusals(None, "rest"):
        return request_deadline(request)


def upload_body(task: Task) -> dict:
    """The OpenAPI request body of a task that takes files: its JSON request, or a multipart upload of
    the files with the request's other fields as form fields."""
    files = task.files
    schema = task.request.model_json_schema(ref_template="#/components/schemas/{model}")
    fields: dict = {}
    for name, field in schema["properties"].items():
        if name == files.field:
            continue
        kind = next((t["type"] for t in field.get("anyOf", [field]) if t.get("type") not in (None, "null")), "string")
        fields[name] = {"type": kind, **({"default": field["default"]} if field.get("default") is not None else {})}
        if name in ("model", "version"):
            # An empty example: Swagger UI would otherwise pre-fill (and send) model=string.
            fields[name] |= {"example": "", "description": "Empty: the task's default model." if name == "model"
                             else "Empty: the newest ready version."}  # fmt: skip
    upload = {"type": "array", "items": {"type": "string", "format": "binary"}, "description": files.media}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema},
        "multipart/form-data": {"schema": {"type": "object", "required": [files.field],
                                           "properties": {files.field: upload, **fields}}},
    }}}  # fmt: skip


async def upload_request(task: Task, request: Request) -> TaskRequest:
    """JSON (base64 files), or a multipart upload (files under the task's files field, passed on as the
    bytes they are: ``task.files.request``)."""
    settings = plane(request).settings
    files = task.files
    if media_type(request, ("application/json", "multipart/form-data")) == "multipart/form-data":
        try:
            form = await request.form(max_files=settings.max_items_per_request, max_part_size=settings.max_image_bytes)
        except HTTPException as exc:  # Starlette's multipart refusals (no boundary, too many files): our error, counted
            raise InvalidInput(f"multipart body refused: {exc.detail}") from None
        uploads = form.getlist(files.field)
        if not uploads:
            raise InvalidInput(f"multipart body needs one or more files in the field {files.field!r}")
        data = []
        for upload in uploads:
            if isinstance(upload, str):
                raise InvalidInput(f"{files.field!r} must be file parts, not text fields")
            content = await upload.read()
            if len(content) > settings.max_image_bytes:
                raise PayloadTooLarge(f"image {upload.filename!r} has {len(content)} bytes, over the limit of "
                                      f"{settings.max_image_bytes} (DENDRITE_MAX_IMAGE_BYTES)")  # fmt: skip
            data.append(content)
        # An empty form field (as browsers and Swagger UI send one left blank) means "not given".
        fields = {k: form.get(k) for k in files.request.model_fields
                  if k != files.field and form.get(k) not in (None, "")}  # fmt: skip
        body = _validated(files.request.model_validate, {files.field: data, **fields})
        body._filenames = [upload.filename for upload in uploads]
        return body
    raw = await read_body(request, settings.max_request_bytes)
    # a big body (base64 files) is parsed off the loop
    return await workers.offload_if_large(len(raw), _validated, task.request.model_validate_json, raw)


def _validated(validate, data) -> TaskRequest:
    try:
        return validate(data)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def add_task_route(router: APIRouter, task: Task) -> None:
    """``POST /predict/<task>``: typed in the OpenAPI schema by the task's request and response models."""
    name = task.name
    if task.files is not None:
        async def endpoint(request: Request):
            deadline = counted_deadline(request)
            with plane(request).refusals(None, "rest"):
                body = await upload_request(task, request)
            return await plane(request).predict(name, body, protocol="rest", deadline=deadline)

        extra, dependencies = {"openapi_extra": upload_body(task)}, []
    else:
        async def endpoint(request: Request, body):
            return await plane(request).predict(name, body, protocol="rest", deadline=counted_deadline(request))

        # FastAPI reads the body's type from the signature: the task's request model
        endpoint.__signature__ = inspect.Signature([
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
            inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=task.request),
        ])  # fmt: skip
        extra, dependencies = {}, [Depends(json_only)]
    router.add_api_route(f"/{name}", endpoint, methods=["POST"], name=f"predict_{name}", summary=task.summary.capitalize(),
                         response_model=task.response, responses=answers(*INFER_ERRORS, 415),
                         dependencies=dependencies, **extra)  # fmt: skip


def task_router(tasks: list[Task]) -> APIRouter:
    """The /predict routes of every registered task, and the 404 for any other name."""
    router = APIRouter(prefix="/predict", tags=["Tasks"], route_class=CountedRoute)
    for task in tasks:
        add_task_route(router, task)
    known = ", ".join(t.name for t in tasks)

    @router.post("/{task}", include_in_schema=False)
    async def unknown_task(request: Request, task: str):
        with plane(request).refusals(None, "rest"):
            raise NotFound(f"no task {task!r}; the tasks are {known} (POST /predict/<task>)")

    return router
