"""Dendrite's typed task service (``dendrite.v1.Predict``): one RPC per task, each a thin
translation onto ``DataPlane.predict``, the same call REST ``POST /predict/{task}`` makes.

The messages mirror the tasks' pydantic models field for field (protos/dendrite/v1/predict.proto),
so one generic translation serves every task: a request goes through protobuf's JSON mapping
into the task's pydantic request, validated as REST validates it (image files skip the mapping,
which would base64-encode them, and arrive as bytes, as a REST multipart upload does); the answer goes back through the task's pydantic
response model, as REST's ``response_model`` does, so both transports return the same values.
"""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from app.dataplane import DataPlane
from app.tasks.base import Pipeline, TaskRequest, TaskResponse
from app.tasks.image.pipeline import ImageFiles, ImagePipeline
from app.tasks.recommendation.pipeline import RecommendationPipeline
from app.tasks.sentiment.pipeline import SentimentPipeline
from app.tasks.translation.pipeline import TranslationPipeline
from app.transports.grpc.generated.dendrite.v1 import predict_pb2 as pb
from app.transports.grpc.generated.dendrite.v1 import predict_pb2_grpc as pb_grpc
from app.runtime import workers
from app.transports.grpc.rpc import deadline_of, received_size, rpc_handler

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Predict"].full_name

Reply = TypeVar("Reply", bound=Message)


class PredictServicer(pb_grpc.PredictServicer):
    def __init__(self, dataplane: DataPlane):
        self.dataplane = dataplane

    @rpc_handler
    async def Image(self, request: pb.ImageRequest, context) -> pb.ImageResponse:
        # the files as the bytes they are (no base64 round trip)
        return await self.predict(ImagePipeline, request, pb.ImageResponse, context, ImageFiles, ("images",))

    @rpc_handler
    async def Sentiment(self, request: pb.SentimentRequest, context) -> pb.SentimentResponse:
        return await self.predict(SentimentPipeline, request, pb.SentimentResponse, context)

    @rpc_handler
    async def Translation(self, request: pb.TranslationRequest, context) -> pb.TranslationResponse:
        return await self.predict(TranslationPipeline, request, pb.TranslationResponse, context)

    @rpc_handler
    async def Recommendation(self, request: pb.RecommendationRequest, context) -> pb.RecommendationResponse:
        return await self.predict(RecommendationPipeline, request, pb.RecommendationResponse, context)

    async def predict(self, pipeline: type[Pipeline], request: Message, reply: type[Reply], context,
                      request_type: type[TaskRequest] | None = None, raw_fields: tuple[str, ...] = ()) -> Reply:
        deadline = deadline_of(context)
        with self.dataplane.refusals(None, "grpc"):  # model "": as REST, where it is in the unvalidated body
            task_request = await workers.offload_if_large(received_size(request), to_task_request, request,
                                                          request_type or pipeline.request_type, raw_fields)
        result = await self.dataplane.predict(pipeline.task, task_request, protocol="grpc", deadline=deadline)
        return to_reply(result, pipeline.response_type, reply)


def to_task_request(message: Message, request_type: type[TaskRequest], raw_fields: tuple[str, ...] = ()) -> TaskRequest:
    """The message as the task's pydantic request. Unset ``optional`` fields are left out (the
    model's default applies); other fields are always present, so an empty list or user id fails
    validation with the same message as over REST. ``raw_fields`` are taken as they are (bytes
    stay bytes instead of JSON mapping's base64) and cleared from ``message``."""
    raw = {name: list(getattr(message, name)) for name in raw_fields}
    for name in raw_fields:  # taken out above; cleared in place (the handler is done with the message) rather
        message.ClearField(name)  # than deep-copying every image into a second message first
    data = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)  # fmt: skip
    return request_type.validated({**data, **raw})


def to_reply(result: dict[str, Any], response_type: type[TaskResponse], reply: type[Reply]) -> Reply:
    """The data plane's answer, typed by the task's response model (as REST serialises it), as the reply message."""
    return json_format.ParseDict(response_type.model_validate(result).model_dump(mode="json"), reply())
