"""Task routes: ``POST /predict/{task}`` with plain inputs and answers, typed in the OpenAPI schema."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from app.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from app.runtime import workers
from app.tasks.base import invalid_input
from app.tasks.registry import PIPELINES
from app.tasks.image.pipeline import ImageFiles, ImageRequest, ImageResponse
from app.tasks.recommendation.pipeline import RecommendationRequest, RecommendationResponse
from app.tasks.sentiment.pipeline import SentimentRequest, SentimentResponse
from app.tasks.translation.pipeline import TranslationRequest, TranslationResponse
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


router = APIRouter(prefix="/predict", tags=["Tasks"], route_class=CountedRoute)

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ImageRequest.model_json_schema(ref_template="#/components/schemas/{model}")},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["images"],
                "properties": {
                    "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "top_k": {"type": "integer", "default": 5},
                    # An empty example: Swagger UI would otherwise pre-fill (and send) model=string.
                    "model": {"type": "string", "example": "", "description": "Empty: the task's default model."},
                    "version": {"type": "string", "example": "", "description": "Empty: the newest ready version."},
                }}},  # fmt: skip
        },
    }
}


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


async def _image_request(request: Request) -> ImageRequest:
    """JSON (base64 images) or a multipart upload (files under `images`, passed on as the bytes
    they are: ``ImageFiles``)."""
    settings = plane(request).settings
    if media_type(request, ("application/json", "multipart/form-data")) == "multipart/form-data":
        try:
            form = await request.form(max_files=settings.max_items_per_request, max_part_size=settings.max_image_bytes)
        except HTTPException as exc:  # Starlette's multipart refusals (no boundary, too many files): our error, counted
            raise InvalidInput(f"multipart body refused: {exc.detail}") from None
        uploads = form.getlist("images")
        if not uploads:
            raise InvalidInput("multipart body needs one or more files in the field 'images'")
        images = []
        for upload in uploads:
            if isinstance(upload, str):
                raise InvalidInput("'images' must be file parts, not text fields")
            data = await upload.read()
            if len(data) > settings.max_image_bytes:
                raise PayloadTooLarge(f"image {upload.filename!r} has {len(data)} bytes, over the limit of "
                                      f"{settings.max_image_bytes} (DENDRITE_MAX_IMAGE_BYTES)")  # fmt: skip
            images.append(data)
        # An empty form field (as browsers and Swagger UI send one left blank) means "not given".
        fields = {k: form.get(k) for k in ("top_k", "model", "version") if form.get(k) not in (None, "")}
        body = _validated(ImageFiles.model_validate, {"images": images, **fields})
        body._filenames = [upload.filename for upload in uploads]
        return body
    body = await read_body(request, settings.max_request_bytes)
    # a big body (base64 images) is parsed off the loop
    return await workers.offload_if_large(len(body), _validated, ImageRequest.model_validate_json, body)


def _validated(validate, data) -> ImageRequest:
    try:
        return validate(data)
    except ValidationError as exc:
        raise invalid_input(exc) from None


@router.post("/image", response_model=ImageResponse, responses=answers(*INFER_ERRORS, 415), openapi_extra=_IMAGE_BODY)
async def predict_image(request: Request):
    deadline = counted_deadline(request)
    with plane(request).refusals(None, "rest"):
        body = await _image_request(request)
    return await plane(request).predict("image", body, protocol="rest", deadline=deadline)


@router.post("/sentiment", response_model=SentimentResponse, responses=answers(*INFER_ERRORS, 415),
             dependencies=[Depends(json_only)])
async def predict_sentiment(request: Request, body: SentimentRequest):
    return await plane(request).predict("sentiment", body, protocol="rest", deadline=counted_deadline(request))


@router.post("/translation", response_model=TranslationResponse, responses=answers(*INFER_ERRORS, 415),
             dependencies=[Depends(json_only)])
async def predict_translation(request: Request, body: TranslationRequest):
    return await plane(request).predict("translation", body, protocol="rest", deadline=counted_deadline(request))


@router.post("/recommendation", response_model=RecommendationResponse, responses=answers(*INFER_ERRORS, 415),
             dependencies=[Depends(json_only)])
async def predict_recommendation(request: Request, body: RecommendationRequest):
    return await plane(request).predict("recommendation", body, protocol="rest", deadline=counted_deadline(request))


@router.post("/{task}", include_in_schema=False)
async def unknown_task(request: Request, task: str):
    with plane(request).refusals(None, "rest"):
        raise NotFound(f"no task {task!r}; the tasks are {', '.join(PIPELINES)} (POST /predict/<task>)")
