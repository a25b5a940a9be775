"""The grpc.aio server: Open Inference Protocol, the typed task service (``dendrite.v1.Predict``),
``grpc.health.v1`` and server reflection, started on the running event loop (the one uvicorn
serves REST on)."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from app.config import Settings
from app.dataplane import DataPlane
from app.transports.grpc import oip, predict
from app.transports.grpc.generated.dendrite.v1 import predict_pb2_grpc
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as oip_grpc

log = logging.getLogger(__name__)

# How long stop() lets in-flight RPCs finish; the same as uvicorn's timeout_graceful_shutdown.
GRACE_SECONDS = 30.0
# The empty name is the server as a whole (what `grpc_health_probe` and Kubernetes ask by default).
HEALTH_SERVICES = ("", oip.SERVICE_NAME, predict.SERVICE_NAME)


class GrpcServer:
    def __init__(self, dataplane: DataPlane, settings: Settings):
        self.dataplane = dataplane
        self.settings = settings
        limit = settings.grpc_max_message_bytes
        # gRPC's default receive limit is 4 MB, too small for image batches and raw tensors.
        self.server = grpc.aio.server(options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            # gRPC sets SO_REUSEPORT by default: a second server on a taken port would start
            # "fine" and silently share it. Fail at startup instead.
            ("grpc.so_reuseport", 0),
        ])  # fmt: skip
        oip_grpc.add_GRPCInferenceServiceServicer_to_server(oip.InferenceServicer(dataplane), self.server)
        predict_pb2_grpc.add_PredictServicer_to_server(predict.PredictServicer(dataplane), self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        # Reflection lets grpcurl and Postman discover the API without the .proto files.
        services = (oip.SERVICE_NAME, predict.SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, self.server)
        self.port: int | None = None

    async def start(self) -> int:
        """Bind (port 0 = a free port), serve, and return the bound port."""
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise RuntimeError(f"gRPC cannot bind {address} (DENDRITE_HOST / DENDRITE_GRPC_PORT): {exc}") from None
        await self.server.start()
        status = health_pb2.HealthCheckResponse
        for name in HEALTH_SERVICES:
            await self.health.set(name, status.SERVING if self.dataplane.ready() else status.NOT_SERVING)
        log.info("gRPC on %s:%d (max message %d bytes)", self.settings.host, self.port,
                 self.settings.grpc_max_message_bytes)  # fmt: skip
        return self.port

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Report NOT_SERVING (load balancers stop sending), refuse new RPCs, let running ones finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
