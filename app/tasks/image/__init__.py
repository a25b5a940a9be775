"""Image classification: bytes -> normalised tensor and logits -> labelled top-k (``processing``)."""

from app.tasks.base import Task, Files
from app.tasks.image import client
from app.tasks.image.pipeline import ImageFiles, ImagePipeline

TASK = Task(
    pipeline=ImagePipeline,
    summary="classify photos: top labels with probabilities",
    rpc="Image",
    grpc_request="dendrite.v1.ImageRequest",
    grpc_response="dendrite.v1.ImageResponse",
    add_arguments=client.add_arguments,
    request_fields=client.request_fields,
    format=client.format_answer,
    samples=client.samples,
    files=Files("images", ImageFiles, media="JPEG, PNG, WebP, BMP or GIF files"),
)
