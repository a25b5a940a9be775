"""What every task pipeline is: pre-processing -> batched inference -> post-processing.

A pipeline is built once per model version when the version loads (``load`` reads labels,
tokenizers, catalogues from the version folder; a failure makes that version UNAVAILABLE), and
``predict`` is called by the data plane with an ``Infer`` bound to that version's batchers.
Heavy pre/post-processing (image decoding, tokenisation, decode loops) runs on worker threads
so the event loop keeps serving.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Generic, Protocol, Self, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.batching.batcher import BatchObserver
from app.config import Settings
from app.errors import InvalidInput, PayloadTooLarge
from app.protocol.model_config import ModelConfig


class Infer(Protocol):
    """Run inputs through one graph of the model version's dynamic batcher; returns its outputs.
    ``waited``: seconds this request has spent waiting on batched inference so far."""

    waited: float
    deadline: float | None

    async def __call__(self, inputs: dict[str, np.ndarray], graph: str | None = None) -> dict[str, np.ndarray]: ...

    def with_deadline(self, deadline: float | None) -> "Infer":
        """The same graphs under another deadline (a coalesced group runs under its callers' latest)."""
        ...


# A body's room for what is not an item (model, version, options, JSON punctuation).
BODY_ROOM_BYTES = 64 * 1024
# The most JSON bytes one character of text can take: a surrogate pair escaped as \uXXXX\uXXXX.
JSON_BYTES_PER_CHAR = 12


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(None, description="Model to use; default: the task's default model (settings).")
    version: str | None = Field(None, description="Model version; default: the newest ready version.")

    @classmethod
    def validated(cls, data: dict[str, Any]) -> Self:
        """``data`` (a transport's decoded request) as this request type; invalid -> InvalidInput."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise invalid_input(exc) from None

    def free_texts(self) -> list[str]:
        """The free texts of the request (checked against DENDRITE_MAX_TEXT_CHARS)."""
        return []

    def item_count(self) -> int:
        return 1

    @classmethod
    def body_limit(cls, settings: Settings) -> tuple[int, str]:
        """The largest body a request within the item limits can have, and the settings that make it: the
        transport refuses a bigger body before parsing it (never more than DENDRITE_MAX_REQUEST_BYTES)."""
        return settings.max_request_bytes, "DENDRITE_MAX_REQUEST_BYTES"

    @staticmethod
    def capped_body_limit(settings: Settings, limit: int, reason: str) -> tuple[int, str]:
        if limit >= settings.max_request_bytes:
            return settings.max_request_bytes, "DENDRITE_MAX_REQUEST_BYTES"
        return limit, reason

    @classmethod
    def texts_body_limit(cls, settings: Settings) -> tuple[int, str]:
        """``body_limit`` of a request carrying up to DENDRITE_MAX_ITEMS_PER_REQUEST texts."""
        limit = BODY_ROOM_BYTES + settings.max_items_per_request * settings.max_text_chars * JSON_BYTES_PER_CHAR
        return cls.capped_body_limit(settings, limit, "DENDRITE_MAX_ITEMS_PER_REQUEST texts of DENDRITE_MAX_TEXT_CHARS")

    def check_limits(self, settings: Settings) -> None:
        """Size limits that depend on settings; each error names the limit and its setting."""
        if self.item_count() > settings.max_items_per_request:
            raise PayloadTooLarge(f"{self.item_count()} items in one request, over the limit of "
                                  f"{settings.max_items_per_request} (DENDRITE_MAX_ITEMS_PER_REQUEST)")  # fmt: skip
        for i, text in enumerate(self.free_texts()):
            if len(text) > settings.max_text_chars:
                raise PayloadTooLarge(f"texts[{i}] has {len(text)} characters, over the limit of "
                                      f"{settings.max_text_chars} (DENDRITE_MAX_TEXT_CHARS)")  # fmt: skip


def invalid_input(exc: ValidationError) -> InvalidInput:
    """A request model's validation errors as one InvalidInput, worded alike on every transport."""
    return InvalidInput("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))


class TaskResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    version: str


Req = TypeVar("Req", bound=TaskRequest)
Resp = TypeVar("Resp", bound=TaskResponse)


class Pipeline(ABC, Generic[Req, Resp]):
    task: ClassVar[str]
    request_type: ClassVar[type[TaskRequest]]
    response_type: ClassVar[type[TaskResponse]]
    # Graphs of config.yaml that a version may lack (versions exported before the graph existed): loaded
    # when the file is there, skipped when not; the pipeline sees which in ``inputs``.
    optional_graphs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, version_dir: Path, config: ModelConfig, settings: Settings, inputs: dict[str, list[str]]):
        """``inputs``: the input names of each graph, as loaded."""
        self.version_dir = version_dir
        self.config = config
        self.settings = settings
        self.inputs = inputs
        self.parameters: dict[str, Any] = config.parameters

    def only_input(self, graph: str | None = None) -> str:
        names = self.inputs[graph or next(iter(self.inputs))]
        if len(names) != 1:
            raise ValueError(f"a {self.task} model takes one input, this one takes {names}")
        return names[0]

    def output(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The output named by ``parameters.outputs``, else the graph's first."""
        return outputs.get(self.parameters.get("outputs", ""), next(iter(outputs.values())))

    def file(self, key: str, default: str) -> Path:
        """A file named by ``parameters[key]`` inside the version folder (plain names only)."""
        name = str(self.parameters.get(key, default))
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"parameters.{key}: {name!r} must be a plain file name inside the version folder")
        path = self.version_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (parameters.{key})")
        return path

    def observe(self, observer: BatchObserver) -> None:
        """Report to the version's batcher metric hooks (a pipeline with a queue of its own)."""

    @abstractmethod
    async def predict(self, request: Req, infer: Infer) -> dict[str, Any]:
        """The task-specific fields of the response (the data plane adds model and version)."""


Write = Callable[[str], Any]
BAR_WIDTH = 24


class ArgumentError(Exception):
    """A ``dendrite predict`` argument the task cannot turn into a request (a photo that cannot be read)."""


def answer_header(body: dict[str, Any]) -> str:
    """The first line every task's CLI answer starts with."""
    return f"{body['model']} v{body['version']}\n"


def bar(p: float) -> str:
    """A probability as a bar of BAR_WIDTH cells, in eighths."""
    eighths = round(max(0.0, min(1.0, p)) * BAR_WIDTH * 8)
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


@dataclass(frozen=True)
class Files:
    """A request field that carries files (images): REST takes them as a multipart upload and gRPC as
    ``bytes``, both validated as ``request`` (the same request with bytes where JSON has base64)."""

    field: str
    request: type[TaskRequest]
    media: str = "files"  # what the upload's parts are, for the OpenAPI description


class TaskClient(Protocol):
    """A task's client side: its package's ``client.py`` module."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The ``dendrite predict <task>`` arguments (the common ones are added for every task)."""

    def request_fields(self, args: argparse.Namespace) -> dict[str, Any]:
        """The request's fields from the arguments (ArgumentError: an argument that cannot be one)."""

    def format_answer(self, args: argparse.Namespace, body: dict[str, Any], write: Write) -> None:
        """The answer for a person (``--json`` prints ``body`` as it is)."""

    def samples(self, version_dir: Path) -> list[dict[str, Any]]:
        """bench.tasks: realistic single-item request bodies (without "model") for a trained version."""


# The protobuf package of the task service; a task's messages are <rpc>Request and <rpc>Response in it.
GRPC_PACKAGE = "dendrite.v1"


@dataclass(frozen=True)
class Task:
    """Everything the server, the client, the CLI and the bench know of one task, declared once in its
    package's ``__init__.py`` and listed in ``app.tasks.registry``. REST ``POST /predict/<name>``, the
    gRPC method ``dendrite.v1.Predict/<rpc>``, ``dendrite predict <name>`` and bench.tasks are all built
    from it (docs/adding-a-task.md)."""

    pipeline: type[Pipeline]
    summary: str  # one line: CLI help and the OpenAPI summary
    rpc: str  # the method of dendrite.v1.Predict (protos/dendrite/v1/predict.proto)
    client: TaskClient
    files: Files | None = None

    @property
    def name(self) -> str:
        return self.pipeline.task

    @property
    def request(self) -> type[TaskRequest]:
        return self.pipeline.request_type

    @property
    def response(self) -> type[TaskResponse]:
        return self.pipeline.response_type

    @property
    def grpc_request(self) -> str:
        """The full protobuf name of the method's request message."""
        return f"{GRPC_PACKAGE}.{self.rpc}Request"

    @property
    def grpc_response(self) -> str:
        return f"{GRPC_PACKAGE}.{self.rpc}Response"
