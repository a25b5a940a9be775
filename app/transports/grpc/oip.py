"""Open Inference Protocol gRPC service (``inference.GRPCInferenceService``): thin
translations onto the data plane; the wire format lives in ``app.codecs.oip_grpc``."""

from __future__ import annotations

from app.codecs import oip_grpc
from app.dataplane import DataPlane
from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc
from app.transports.grpc.rpc import deadline_of, offload_if_large, rpc_handler

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


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
        return oip_grpc.encode_model_metadata(self.dataplane.model_metadata(request.name, request.version or None))

    @rpc_handler
    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        deadline = deadline_of(context)
        max_elements = self.dataplane.settings.max_tensor_elements
        infer_request = await offload_if_large(request.ByteSize(), oip_grpc.decode_request, request,
                                               max_elements=max_elements)  # fmt: skip
        response = await self.dataplane.infer(request.model_name, request.model_version or None, infer_request,
                                              protocol="grpc", deadline=deadline)  # fmt: skip
        size = sum(out.data.nbytes for out in response.outputs)
        return await offload_if_large(size, oip_grpc.encode_response, response,
                                      raw=oip_grpc.uses_raw_inputs(request))  # fmt: skip
