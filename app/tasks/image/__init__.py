"""Image classification: bytes -> normalised tensor and logits -> labelled top-k (``processing``)."""

from app.tasks.base import Files, Task
from app.tasks.image import client
from app.tasks.image.pipeline import ImageFiles, ImagePipeline

TASK = Task(
    pipeline=ImagePipeline,
    summary="classify photos: top labels with probabilities",
    rpc="Image",
    client=client,
    files=Files("images", ImageFiles, media="JPEG, PNG, WebP, BMP or GIF files"),
)
