"""The typed task service's protobuf side without the server (the client imports this: no data plane,
no ONNX Runtime): its service name, and a message class by its full protobuf name."""

from __future__ import annotations

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from app.transports.grpc.generated.dendrite.v1 import predict_pb2  # registers the built-in tasks' messages

PREDICT_SERVICE = predict_pb2.DESCRIPTOR.services_by_name["Predict"].full_name


def message_class(full_name: str) -> type[Message]:
    """The generated class of a protobuf message by its full name (its module must have been imported)."""
    try:
        return message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(full_name))
    except KeyError:
        raise LookupError(f"no protobuf message {full_name!r}: import its generated module first") from None
