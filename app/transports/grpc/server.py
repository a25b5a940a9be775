"""The grpc.aio server: Open Inference Protocol, the typed task service (``dendrite.v1.Predict``),
``grpc.health.v1`` and server reflection, started on the running event loop (the one uvicorn
serves REST on)."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from app import auth
from app.config import Settings
from app.dataplane import DataPlane
from app.errors import InvalidInput
from app.runtime import workers
from app.tasks import registry
from app.transports.grpc import oip, predict
from app.transports.grpc.rpc import RECEIVED_BYTES
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as oip_grpc

log = logging.getLogger(__name__)

# The empty name is the server as a whole (what `grpc_health_probe` and Kubernetes ask by default).
HEALTH_SERVICES = ("", oip.SERVICE_NAME, predict.SERVICE_NAME)
READINESS_POLL_SECONDS = 1.0


# gRPC methods that never need a key (probes, discovery); every other method serves or describes models.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
OPEN_METHODS = frozenset({"/inference.GRPCInferenceService/ServerLive",
                          "/inference.GRPCInferenceService/ServerReady"})  # fmt: skip


def access_of(method: str) -> auth.Access:
    """What a call of ``method`` needs (``app.auth`` says which keys that takes)."""
    return auth.Access.OPEN if method in OPEN_METHODS or method.startswith(OPEN_PREFIXES) else auth.Access.SERVING


class KeyInterceptor(grpc.aio.ServerInterceptor):
    """API keys (``app.auth``) from the ``authorization: Bearer <key>`` or ``x-api-key`` metadata;
    health, reflection, ServerLive and ServerReady stay open."""

    def __init__(self, settings: Settings):
        self.settings = settings

        async def deny(request_or_iterator, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, auth.MISSING)

        # One per kind of method, keyed (request_streaming, response_streaming): a unary handler on a
        # streaming call would first wait for a request message (a client that opens the stream and
        # waits would hang instead of hearing UNAUTHENTICATED).
        self._deny = {
            (False, False): grpc.unary_unary_rpc_method_handler(deny),
            (False, True): grpc.unary_stream_rpc_method_handler(deny),
            (True, False): grpc.stream_unary_rpc_method_handler(deny),
            (True, True): grpc.stream_stream_rpc_method_handler(deny),
        }

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        keys, _ = auth.required_keys(self.settings, access_of(details.method))
        if keys:
            metadata = dict(details.invocation_metadata or ())
            if not auth.authorized(auth.presented_key(metadata.get("authorization"), metadata.get("x-api-key")), keys):
                handler = await continuation(details)
                kind = (False, False) if handler is None else (handler.request_streaming, handler.response_streaming)
                return self._deny[kind]
        return await continuation(details)


class DecodeGuard(grpc.aio.ServerInterceptor):
    """A request that does not parse is INVALID_ARGUMENT. (grpc.aio answers UNKNOWN and logs a
    traceback when a request deserializer raises.) Unary methods get the raw bytes and parse
    them here; the wrapped handlers are built once per method. Streaming methods pass through
    unchanged: their handler reads each message itself and ends the call with
    INVALID_ARGUMENT on one that does not parse (``oip.InferenceServicer.ModelStreamInfer``)."""

    # Inference methods: a request to them that does not parse is counted like a REST body that does not decode.
    INFERENCE = ("/inference.GRPCInferenceService/ModelInfer", "/dendrite.v1.Predict/")

    def __init__(self, dataplane: DataPlane):
        self.dataplane = dataplane
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        wrapped = self._wrapped.get(details.method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        parse, behavior = handler.request_deserializer, handler.unary_unary
        method = details.method

        counted = method.startswith(self.INFERENCE)

        async def guarded(raw: bytes, context: grpc.aio.ServicerContext):
            start = time.perf_counter()
            try:  # a big message (an image batch, a raw tensor) is parsed off the loop
                request = await workers.offload_if_large(len(raw), parse, raw)
            except Exception as exc:  # noqa: BLE001 - DecodeError and friends
                refusal = InvalidInput(f"the request is not a valid message for {method}: {exc}")
                if counted:
                    self.dataplane.refused(None, "grpc", refusal, time.perf_counter() - start)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal.message)
            RECEIVED_BYTES.set(len(raw))  # this call's own context: the handler reads it
            return await behavior(request, context)

        wrapped = grpc.unary_unary_rpc_method_handler(guarded, response_serializer=handler.response_serializer)
        self._wrapped[method] = wrapped
        return wrapped


class GrpcServer:
    def __init__(self, dataplane: DataPlane, settings: Settings):
        self.dataplane = dataplane
        self.settings = settings
        limit = settings.grpc_max_message_bytes
        # gRPC's default receive limit is 4 MB, too small for image batches and raw tensors.
        interceptors = ([KeyInterceptor(settings)] if settings.api_keys else []) + [DecodeGuard(dataplane)]
        self.server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            # gRPC sets SO_REUSEPORT by default: a second server on a taken port would start
            # "fine" and silently share it. Fail at startup instead, unless the sharing is ours: workers.
            ("grpc.so_reuseport", int(settings.worker_count() > 1)),
        ])  # fmt: skip
        oip_grpc.add_GRPCInferenceServiceServicer_to_server(oip.InferenceServicer(dataplane), self.server)
        self.server.add_generic_rpc_handlers((predict.PredictServicer(dataplane, list(registry.tasks().values())).handler(),))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        # Reflection lets grpcurl and Postman discover the API without the .proto files.
        services = (oip.SERVICE_NAME, predict.SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, self.server)
        self.port: int | None = None
        self._serving: int | None = None  # the health status last published
        self._watch: asyncio.Task | None = None

    async def start(self) -> int:
        """Bind (port 0 = a free port), serve, and return the bound port."""
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise RuntimeError(f"gRPC cannot bind {address} (DENDRITE_HOST / DENDRITE_GRPC_PORT): {exc}") from None
        await self.server.start()
        await self.refresh_health()
        self._watch = asyncio.get_running_loop().create_task(self._watch_readiness(), name="grpc-health")
        log.info("gRPC on %s:%d (max message %d bytes)", self.settings.host, self.port,
                 self.settings.grpc_max_message_bytes)  # fmt: skip
        return self.port

    async def refresh_health(self) -> None:
        """Publish ``dataplane.ready()`` to the health service when it changed (after a graceful-shutdown
        start the service stays NOT_SERVING whatever is set)."""
        status = health_pb2.HealthCheckResponse
        serving = status.SERVING if self.dataplane.ready() else status.NOT_SERVING
        if serving != self._serving:
            self._serving = serving
            for name in HEALTH_SERVICES:
                await self.health.set(name, serving)

    async def _watch_readiness(self) -> None:
        """Readiness changes without an RPC (a model finishes training or loading, another worker
        starts): the health service, which clients may Watch, follows it within READINESS_POLL_SECONDS."""
        while True:
            await asyncio.sleep(READINESS_POLL_SECONDS)
            try:
                await self.refresh_health()
            except Exception:  # noqa: BLE001 - a failed check must not end the watch
                log.exception("gRPC health update failed")

    async def not_serving(self) -> None:
        """Report NOT_SERVING (load balancers stop sending) while still serving."""
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new RPCs, let running ones finish within ``grace`` seconds
        (default DENDRITE_SHUTDOWN_GRACE_SECONDS, the same bound uvicorn gets)."""
        if self._watch is not None:
            self._watch.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.shutdown_grace_seconds if grace is None else grace)
