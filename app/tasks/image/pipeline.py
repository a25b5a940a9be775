"""Image classification: photos in, top-k labels with probabilities out."""

from __future__ import annotations

import base64
import binascii

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from app.config import Settings
from app.errors import InvalidInput, PayloadTooLarge
from app.runtime import workers
from app.tasks.base import Infer, Pipeline, TaskRequest, TaskResponse
from app.tasks.image.processing import load_labels, top_k
from app.tasks.image.processing import ImagePreprocessing, preprocess


# An 8x8 PNG: the documented example request, small enough to read.
EXAMPLE_IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mOssJFjwAaYGHCAwSkBAKnOAOJ8i0BSAAAAAElFTkSuQmCC"


class ImageRequest(TaskRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [{"images": [EXAMPLE_IMAGE], "top_k": 3}]})

    images: list[str] = Field(..., min_length=1, description="Base64-encoded JPEG, PNG, WebP, BMP or GIF files.")
    top_k: int | None = Field(None, ge=1, le=1000, description="How many labels per image (default: the model's).")
    # File names of a multipart upload, so that an error names the file as well as its position.
    _filenames: list[str | None] = PrivateAttr(default_factory=list)

    def item_count(self) -> int:
        return len(self.images)

    def item_names(self) -> list[str]:
        names = self._filenames + [None] * (len(self.images) - len(self._filenames))
        return [f"images[{i}]" + (f" ({name!r})" if name else "") for i, name in enumerate(names)]

    def check_limits(self, settings: Settings) -> None:
        super().check_limits(settings)
        for i, item in enumerate(self.images):
            size = len(item) if isinstance(item, bytes) else len(item) * 3 // 4  # base64: give or take padding
            if size > settings.max_image_bytes:
                raise PayloadTooLarge(f"images[{i}] has about {size} bytes, over the limit of "
                                      f"{settings.max_image_bytes} (DENDRITE_MAX_IMAGE_BYTES)")  # fmt: skip


class ImageFiles(ImageRequest):
    """An image request whose files arrived as bytes (multipart upload, gRPC): nothing to
    base64-encode on the way in and decode again here."""

    images: list[bytes] = Field(..., min_length=1)  # type: ignore[assignment]


class Label(BaseModel):
    index: int
    label: str
    probability: float


class ImageResult(BaseModel):
    labels: list[Label] = Field(description="Most probable first.")


class ImageResponse(TaskResponse):
    predictions: list[ImageResult]


def decode_base64(items: list[str]) -> list[bytes]:
    out = []
    for i, item in enumerate(items):
        if item.startswith("data:") and "," in item:  # data URLs from browsers
            item = item.split(",", 1)[1]
        try:
            out.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput(f"images[{i}] is not valid base64") from None
    return out


class ImagePipeline(Pipeline[ImageRequest, ImageResponse]):
    task = "image"
    request_type = ImageRequest
    response_type = ImageResponse

    def __init__(self, version_dir, config, settings, inputs):
        super().__init__(version_dir, config, settings, inputs)
        self.labels = load_labels(self.file("labels_file", "labels.json"))
        self.spec = ImagePreprocessing.from_parameters(self.parameters)
        self.input_name = self.only_input()
        self.default_top_k = int(self.parameters.get("top_k", 5))

    async def classify(self, images: list[bytes], k: int, infer: Infer, names: list[str] | None = None) -> dict:
        batch = await workers.preprocess(preprocess, images, self.spec, self.settings.max_image_pixels, names)
        outputs = await infer({self.input_name: batch})
        logits = self.output(outputs)
        ranked = top_k(logits, self.labels, k)
        return {"predictions": [{"labels": [p.__dict__ for p in row]} for row in ranked]}

    async def predict(self, request: ImageRequest, infer: Infer) -> dict:
        if isinstance(request, ImageFiles):
            files = request.images
        else:  # base64 text: decoded off the loop when big
            files = await workers.offload_if_large(sum(map(len, request.images)), decode_base64, request.images)
        return await self.classify(files, request.top_k or self.default_top_k, infer, request.item_names())
