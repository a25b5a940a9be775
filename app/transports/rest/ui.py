"""What people open in a browser: the playground page at ``/`` (static HTML, JS and CSS from
``static/``, no CDN, no build step), the JSON route its status panel polls (``GET /status``), and
``/docs`` / ``/redoc`` with Swagger UI and ReDoc assets served from the ``fastapi-offline``
package, so all of it works on a network without internet access."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from app.metrics import Metrics
from app.traffic import TrafficWindow, model_status
from app.transports.rest.oip import plane
from app.transports.rest.schemas import RepositoryModel

PLAYGROUND = Path(__file__).parent / "static"
DOCS_ASSETS_URL = "/docs-assets"
# Swagger UI sends the spec to validator.swagger.io for its badge unless told not to.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None, "tryItOutEnabled": True}

router = APIRouter(tags=["Observability"])


class ModelStatus(RepositoryModel):
    task: str | None = Field(None, description="The task the model serves (image, sentiment, translation, "
                                               "recommendation), or None for a plain tensor model.")  # fmt: skip
    requests_per_second: float = Field(description="Requests over the window (all protocols and outcomes).")
    client_error_ratio: float | None = Field(description="Share of those requests refused as the caller's error "
                                             "(4xx: client_error, not_found); null without requests.")  # fmt: skip
    server_error_ratio: float | None = Field(description="Share of those requests that failed on the server's side "
                                             "(unavailable, training, timeout, rejected, server_error); null without "
                                             "requests.")  # fmt: skip
    p99_seconds: float | None = Field(description="99th percentile request latency (histogram_quantile over the "
                                                  "window's buckets); null without requests.")  # fmt: skip
    window_seconds: float


class StatusBody(BaseModel):
    window_seconds: float = Field(description="Length of the window the rates cover: one minute, or the time "
                                              "since the server started when that is shorter.")  # fmt: skip
    models: list[ModelStatus]


@router.get("/status", response_model=StatusBody)
async def status(request: Request):
    """Every model version of the repository with its state, provider and recent traffic (the
    playground's status panel). Rates and p99 are computed from the server's own metrics."""
    window: TrafficWindow = request.app.state.traffic_window
    repository = plane(request).repository
    seconds, traffic = window.traffic()
    tasks = {name: entry.config.task for name, entry in repository.models.items() if entry.config is not None}
    return {"window_seconds": seconds, "models": model_status(repository.index(), tasks, traffic, seconds)}


@router.get("/", include_in_schema=False)
async def playground() -> FileResponse:
    return FileResponse(PLAYGROUND / "index.html", media_type="text/html")


def install(app: FastAPI, metrics: Metrics) -> None:
    """Playground, status route and offline API docs. The app must be built with
    ``docs_url=None, redoc_url=None`` (FastAPI's own pages load their assets from a CDN)."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.state.traffic_window = TrafficWindow(metrics)
    app.mount("/playground", StaticFiles(directory=PLAYGROUND), name="playground")
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")
    app.include_router(router)
    if app.openapi_url is None:  # DENDRITE_DOCS_ENABLED=false: no schema, so no pages that render it
        return
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )  # fmt: skip

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png", with_google_fonts=False,
        )  # fmt: skip
