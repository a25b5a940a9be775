"""Open Inference Protocol gRPC service (``inference.GRPCInferenceService``): thin
translations onto the data plane; the wire format lives in ``app.transports.grpc.codec``."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import grpc
from google.protobuf.message import DecodeError

from app.transports.grpc import codec
from app.dataplane import DataPlane
from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc
from app.runtime import workers
from app.transports.grpc.rpc import deadline_of, received_size, rpc_handler, status_of

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class Failure(NamedTuple):
    """Reading a stream failed: the call ends with this status."""

    code: grpc.StatusCode
    message: str


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane):
        self.dataplane = dataplane

    @rpc_handler
    async def ServerLive(self, request: pb.ServerLiveRequest, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.dataplane.live())

    @rpc_handler
    async def ServerReady(self, request: pb.ServerReadyRequest, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    @rpc_handler
    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.dataplane.model_ready(request.name, request.version or None))

    @rpc_handler
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    @rpc_handler
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        return codec.encode_model_metadata(self.dataplane.model_metadata(request.name, request.version or None))

    @rpc_handler
    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        return await self.infer(request, deadline_of(context))

    async def ModelStreamInfer(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        """Triton's streaming extension: each request of the stream runs as its own task (so the
        batcher can batch a stream's requests together), at most DENDRITE_GRPC_STREAM_MAX_IN_FLIGHT
        at once (counted until the answer is sent, so a client that does not read is held back
        too); each answer is written as soon as it is ready, a failed request as
        ``error_message``. The call's deadline is every request's deadline; when the call ends
        early (client cancel, deadline), the outstanding requests are cancelled."""
        deadline = deadline_of(context)
        slots = asyncio.Semaphore(self.dataplane.settings.grpc_stream_max_in_flight)
        # answers in completion order, then None (the client half-closed) or a Failure, once every
        # request read is answered
        answers: asyncio.Queue[pb.ModelStreamInferResponse | Failure | None] = asyncio.Queue()
        running: set[asyncio.Task] = set()

        async def answer(request: pb.ModelInferRequest) -> None:
            try:
                response = pb.ModelStreamInferResponse(infer_response=await self.infer(request, deadline))
            except Exception as exc:
                _, message, _ = status_of(exc, "ModelStreamInfer")
                echo = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version,
                                             id=request.id)  # fmt: skip
                response = pb.ModelStreamInferResponse(error_message=message, infer_response=echo)
            answers.put_nowait(response)

        async def read() -> None:
            # context.read()/write() rather than the request iterator: one style per call.
            end: Failure | None = None  # how the call ends once every request read is answered
            try:
                while (request := await context.read()) is not grpc.aio.EOF:
                    await slots.acquire()
                    task = asyncio.create_task(answer(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
            except DecodeError as exc:  # no id to answer it by: the call ends with it
                end = Failure(grpc.StatusCode.INVALID_ARGUMENT,
                              f"a request on the stream is not a valid ModelInferRequest: {exc}")  # fmt: skip
            except Exception as exc:
                end = Failure(*status_of(exc, "ModelStreamInfer")[:2])
            if running:
                await asyncio.wait(set(running))
            answers.put_nowait(end)

        reader = asyncio.create_task(read())
        try:
            while (item := await answers.get()) is not None:
                if isinstance(item, Failure):
                    await context.abort(item.code, item.message)
                await context.write(item)
                slots.release()
        finally:  # normal end: nothing left; cancelled or aborted: withdraw what is still queued or running
            reader.cancel()
            for task in list(running):
                task.cancel()

    @rpc_handler
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context) -> pb.RepositoryIndexResponse:
        rows = [r for r in self.dataplane.repository_index() if not request.ready or r["state"] == "READY"]
        return pb.RepositoryIndexResponse(models=[
            pb.RepositoryIndexResponse.ModelIndex(name=r["name"], version=r.get("version") or "", state=r["state"],
                                                  reason=r.get("reason") or "")
            for r in rows])  # fmt: skip

    async def infer(self, request: pb.ModelInferRequest, deadline: float | None) -> pb.ModelInferResponse:
        """Decode, infer, encode one request: ModelInfer's whole body and each request of a stream."""
        max_elements = self.dataplane.settings.max_tensor_elements
        with self.dataplane.refusals(request.model_name, "grpc"):
            infer_request = await workers.offload_if_large(received_size(request), codec.decode_request, request,
                                                           max_elements=max_elements)  # fmt: skip
        response = await self.dataplane.infer(request.model_name, request.model_version or None, infer_request,
                                              protocol="grpc", deadline=deadline)  # fmt: skip
        size = sum(out.data.nbytes for out in response.outputs)
        return await workers.offload_if_large(size, codec.encode_response, response,
                                                 raw=codec.uses_raw_inputs(request))  # fmt: skip
