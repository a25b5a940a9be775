"""Thin clients for Dendrite's task routes, one per transport, typed by the tasks' own pydantic
models (``app.tasks.<task>.pipeline``): REST ``POST /predict/<task>`` (standard library HTTP, no
extra dependency) and gRPC ``dendrite.v1.Predict``. Both return the task's response model and
raise ``ClientError`` carrying the server's own message. Used by ``dendrite predict`` and
``dendrite models`` (``app.client_cli``); importing this module imports no torch and no ONNX Runtime.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from app.tasks.base import Task

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_GRPC_TARGET = "127.0.0.1:8001"


class ClientError(Exception):
    """A failed call: ``message`` is the server's own (``{"error": ...}`` / gRPC details) when
    there is one; ``status`` the HTTP status or the gRPC status code name (None: not sent)."""

    def __init__(self, message: str, status: int | str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


class ClientTimeout(ClientError):
    """No answer within the client's own timeout (the server may well be up)."""

    def __init__(self, timeout: float):
        super().__init__(f"no answer within the {timeout:g} s timeout", "timeout")
        self.timeout = timeout


def task(name: str) -> "Task":
    """The task's declaration (``app.tasks.registry``, imported on first use: no torch, no ONNX Runtime)."""
    from app.tasks import registry

    try:
        return registry.tasks()[name]
    except KeyError:
        raise ClientError(f"unknown task {name!r} (tasks: {', '.join(registry.tasks())})") from None


def build_request(name: str, **fields: Any) -> BaseModel:
    """The task's request model from ``fields`` (None values left out, so the server's defaults
    apply); invalid -> ClientError worded exactly as the server words it."""
    from app.tasks.base import invalid_input

    try:
        return task(name).request.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise ClientError(invalid_input(exc).message) from None  # never sent


def _wire(request: BaseModel) -> dict[str, Any]:
    return request.model_dump(mode="json", exclude_none=True)


class RestClient:
    def __init__(self, url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 120.0):
        # "localhost:8000" is how people write it; urllib would read "localhost" as the scheme
        self.url = (url if "://" in url else f"http://{url}").rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def predict(self, name: str, request: BaseModel) -> BaseModel:
        return task(name).response.model_validate(self._call("POST", f"/predict/{name}", _wire(request)))

    def models(self) -> list[dict[str, Any]]:
        """The repository index: every model version with its state, reason and providers."""
        return self._call("GET", "/v2/repository/index")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = f"{exc.code} {exc.reason}: {raw[:200].decode(errors='replace')}"
            raise ClientError(message, exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):  # on connect (inside URLError) or while reading
                raise ClientTimeout(self.timeout) from None
            raise ClientError(f"cannot reach {self.url}: {reason}") from None


class GrpcClient:
    def __init__(self, target: str = DEFAULT_GRPC_TARGET, *, api_key: str | None = None, timeout: float = 120.0):
        import grpc

        self.target = target
        self.timeout = timeout
        self.metadata = (("x-api-key", api_key),) if api_key else ()
        self._grpc = grpc
        self.channel = grpc.insecure_channel(target)

    def predict(self, name: str, request: BaseModel) -> BaseModel:
        from google.protobuf import json_format

        from app.transports.grpc.messages import PREDICT_SERVICE, message_class

        declared = task(name)
        reply_type = message_class(declared.grpc_response)
        # protobuf's JSON mapping reads bytes as base64: exactly the REST body's images
        message = json_format.ParseDict(_wire(request), message_class(declared.grpc_request)())
        call = self.channel.unary_unary(f"/{PREDICT_SERVICE}/{declared.rpc}", request_serializer=type(message).SerializeToString,
                                        response_deserializer=reply_type.FromString)  # fmt: skip
        try:
            reply = call(message, timeout=self.timeout, metadata=self.metadata)
        except self._grpc.RpcError as exc:
            code = exc.code()
            # the server words its own deadline errors; gRPC's bare "Deadline Exceeded" is this client's timeout
            if code is self._grpc.StatusCode.DEADLINE_EXCEEDED and exc.details() in (None, "", "Deadline Exceeded"):
                raise ClientTimeout(self.timeout) from None
            if code is self._grpc.StatusCode.UNAVAILABLE and "connect" in (exc.details() or "").lower():
                raise ClientError(f"cannot reach {self.target}: {exc.details()}", code.name) from None
            raise ClientError(exc.details() or code.name, code.name) from None
        data = json_format.MessageToDict(reply, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)  # fmt: skip
        return declared.response.model_validate(data)

    def close(self) -> None:
        self.channel.close()
