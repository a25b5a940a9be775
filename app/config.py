"""All runtime configuration in one place.

Every knob has a default, an environment variable (prefix ``DENDRITE_``) and a line of
documentation. ``python -m app settings`` prints the effective values. Per-model settings
(batching, instances, warm-up) live in each model's ``config.yaml``; the values here are
server-wide defaults and limits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DENDRITE_", env_file=None, extra="ignore")

    # --- server -------------------------------------------------------------------------
    host: str = Field("0.0.0.0", description="Interface the REST and gRPC servers bind to.")
    http_port: int = Field(8000, ge=0, le=65535, description="REST (FastAPI) port.")
    grpc_port: int = Field(8001, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    grpc_enabled: bool = Field(True, description="Start the gRPC server beside REST.")
    grpc_max_message_bytes: int = Field(
        64 * 1024 * 1024, ge=4 * 1024 * 1024, description="Max gRPC message size in both directions."
    )
    grpc_stream_max_in_flight: int = Field(
        64, ge=1, description="ModelStreamInfer: most requests of one stream in progress at once (they batch "
        "together), each counted until its answer is sent; past it the server reads no further request of the "
        "stream, so gRPC flow control holds the client back.",
    )
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1, description="Serving processes sharing the REST and gRPC ports (SO_REUSEPORT), each with its own "
        "sessions and batchers, under a supervisor that restarts one that dies. `auto` = one per two cores. "
        "With more than one, each session's intra-op threads are capped at cores / workers and /metrics merges "
        "every worker (docs/deploy.md).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    server_name: str = Field("dendrite", description="Name reported by GET /v2 (server metadata).")
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="On SIGTERM: how long REST and gRPC let accepted requests finish before exiting."
    )
    shutdown_delay_seconds: float = Field(
        0.0, ge=0, description="On SIGTERM: keep serving this long while readiness reports 503 / NOT_SERVING "
        "(lets load balancers stop sending), then stop accepting. Kubernetes: a few seconds.",
    )

    # --- model repository -----------------------------------------------------------------
    model_repository: Path = Field(Path("models"), description="Folder holding <model>/config.yaml and <model>/<version>/.")
    model_control_mode: Literal["none", "poll", "explicit"] = Field(
        "none",
        description="none: load everything at start. poll: also rescan the repository every "
        "repository_poll_seconds. explicit: load only on the repository API (plus startup_models).",
    )
    repository_poll_seconds: float = Field(5.0, gt=0, description="Rescan period in poll mode.")
    startup_models: list[str] = Field(
        default_factory=list, description='explicit mode: models loaded at start (a JSON list, e.g. ["a","b"]).'
    )
    repository_api_enabled: bool = Field(
        False, description="Expose POST /v2/repository/models/{m}/load and /unload (off unless enabled)."
    )
    strict_readiness: bool = Field(
        True, description="true: the server is ready (GET /v2/health/ready 200, gRPC ServerReady and health "
        "SERVING) only when every model it is configured to serve is READY, as Triton does. false: ready once the "
        "server is up and the startup models (explicit mode: DENDRITE_STARTUP_MODELS) are READY; per-model "
        "readiness is exact either way. What each means for Kubernetes probes: docs/deploy.md.",
    )
    unload_drain_seconds: float = Field(30.0, ge=0, description="How long unloading waits for in-flight requests.")

    default_models: dict[str, str] = Field(
        default_factory=lambda: {
            "image": "imagenet-efficientnet-lite0", "sentiment": "sentiment-minilm",
            "translation": "translation-de-en", "recommendation": "recommendation-neumf",
        },
        description="Model /predict/{task} uses when the request names none (JSON object task -> model); "
        "a task whose default is absent uses the first model of that task in the repository.",
    )  # fmt: skip

    # --- runtime (ONNX Runtime) defaults, overridable per model in config.yaml ---------------
    instance_kind: Literal["config", "cpu", "cuda"] = Field(
        "config", description="Execution device for every model: as each config.yaml says, or cpu/cuda for all "
        "(the GPU image sets cuda; each model's fallback policy still applies).",
    )
    intra_op_threads: int = Field(1, ge=0, description="Default intra-op threads per session (0 = ORT decides).")
    allow_spinning: bool = Field(
        False, description="ORT thread spin-wait. Off: spinning burns idle cores and hurts p99 beside the event loop."
    )
    cpu_mem_arena: bool = Field(
        True, description="ORT CPU memory arena. Keep it on: with varying batch sizes it stays at the largest "
        "shape seen, while off (plain malloc) or shrunk after each run RSS keeps growing (bench/arena.py).",
    )

    # --- worker threads (app.runtime.workers) -------------------------------------------------
    decode_threads: int = Field(4, ge=1, description="Threads for translation decode loops; a translation model "
                                "runs at most this many decode groups at once, more wait in its bounded queue.")
    preprocess_threads: int = Field(0, ge=0, description="Threads for image decoding/pre-processing, tokenisation "
                                    "and parsing of big requests (0 = one per usable core, divided among the workers).")
    load_threads: int = Field(2, ge=1, description="Threads that load and close models.")

    # --- batching defaults ------------------------------------------------------------------
    default_max_queue_size: int = Field(1024, ge=1, description="Per-model queue bound when config.yaml sets none.")
    retry_after_seconds: int = Field(1, ge=0, description="Retry-After sent with 503 when a queue is full.")

    # --- security ---------------------------------------------------------------------------
    api_keys: list[str] = Field(
        default_factory=list, description="Keys for the inference routes (REST infer, /predict, metadata; gRPC "
        "except health and readiness): clients send `Authorization: Bearer <key>` or `X-API-Key: <key>` (gRPC: "
        'the same as metadata). A JSON list; empty = no key needed. Compared in constant time.',
    )
    repository_api_keys: list[str] = Field(
        default_factory=list, description="Keys for the repository load/unload routes, separate from api_keys "
        "(a JSON list). Empty = those routes take one of api_keys (no key at all when api_keys is empty too).",
    )
    metrics_enabled: bool = Field(True, description="Serve GET /metrics (Prometheus).")
    metrics_require_key: bool = Field(False, description="GET /metrics needs one of api_keys (when any are set).")
    docs_enabled: bool = Field(True, description="Serve /docs, /redoc and /openapi.json.")

    # --- limits -----------------------------------------------------------------------------
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    max_tensor_elements: int = Field(50_000_000, ge=1, description="Largest element count of one input tensor.")
    max_text_chars: int = Field(20_000, ge=1, description="Longest text accepted by the text tasks.")
    max_items_per_request: int = Field(64, ge=1, description="Most images/texts in one /predict request.")
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest encoded image accepted.")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Largest decoded image (width x height): refuses decompression bombs."
    )

    def worker_count(self) -> int:
        return max(1, usable_cores() // 2) if self.workers == "auto" else self.workers

    def intra_op_thread_cap(self) -> int:
        """Most intra-op threads per session (0 = no cap): workers x threads stay within the cores."""
        n = self.worker_count()
        return 0 if n == 1 else max(1, usable_cores() // n)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def settings_table(settings: Settings | None = None) -> str:
    """Markdown table of every setting: environment variable, value, meaning.
    docs/configuration.md is this table for the defaults (a test keeps it current)."""
    settings = settings or Settings()
    prefix = Settings.model_config["env_prefix"]
    rows = ["| environment variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        shown = value if not isinstance(value, Path) else str(value)
        rows.append(f"| `{prefix}{name.upper()}` | `{shown!s}` | {field.description} |")
    return "\n".join(rows) + "\n"
