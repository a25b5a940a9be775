"""Dendrite's typed task service (``dendrite.v1.Predict``): one RPC per task, each a thin
translation onto ``DataPlane.predict``, the same call REST ``POST /predict/{task}`` makes.

The methods are built from the task registry (``app.tasks.registry``), so a task needs no
hand-written method here. The messages mirror the tasks' pydantic models field for field (protos/dendrite/v1/predict.proto),
so one generic translation serves every task: a request goes through protobuf's JSON mapping
into the task's pydantic request, validated as REST validates it (image files skip the mapping,
which would base64-encode them, and arrive as bytes, as a REST multipart upload does); the answer goes back through the task's pydantic
response model, as REST's ``response_model`` does, so both transports return the same values.
"""

from __future__ import annotations

import functools
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from app.dataplane import DataPlane
from app.runtime import workers
from app.tasks.base import Task, TaskRequest, TaskResponse
from app.transports.grpc.messages import PREDICT_SERVICE as SERVICE_NAME
from app.transports.grpc.messages import message_class
from app.transports.grpc.rpc import deadline_of, received_size, rpc_handler


class PredictServicer:
    """One method per registered task: ``/dendrite.v1.Predict/<task.rpc>``."""

    def __init__(self, dataplane: DataPlane, tasks: list[Task]):
        self.dataplane = dataplane
        self.tasks = tasks

    def handler(self) -> grpc.GenericRpcHandler:
        methods = {}
        for task in self.tasks:
            request, reply = message_class(task.grpc_request), message_class(task.grpc_response)
            methods[task.rpc] = grpc.unary_unary_rpc_method_handler(
                self.method(task, reply), request_deserializer=request.FromString,
                response_serializer=reply.SerializeToString)  # fmt: skip
        return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)

    def method(self, task: Task, reply: type[Message]):
        async def call(servicer: PredictServicer, request: Message, context) -> Message:
            return await servicer.predict(task, request, reply, context)

        call.__name__ = task.rpc  # the server log names the method
        return functools.partial(rpc_handler(call), self)  # a partial of a coroutine function: grpc.aio awaits it

    async def predict(self, task: Task, request: Message, reply: type[Message], context) -> Message:
        deadline = deadline_of(context)
        # the files as the bytes they are (no base64 round trip)
        request_type, raw_fields = (task.files.request, (task.files.field,)) if task.files else (task.request, ())
        with self.dataplane.refusals(None, "grpc"):  # model "": as REST, where it is in the unvalidated body
            task_request = await workers.offload_if_large(received_size(request), to_task_request, request,
                                                          request_type, raw_fields)  # fmt: skip
        result = await self.dataplane.predict(task.name, task_request, protocol="grpc", deadline=deadline)
        return to_reply(result, task.response, reply)


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


def to_reply(result: dict[str, Any], response_type: type[TaskResponse], reply: type[Message]) -> Message:
    """The data plane's answer, typed by the task's response model (as REST serialises it), as the reply message."""
    return json_format.ParseDict(response_type.model_validate(result).model_dump(mode="json"), reply())
