"""Decode an image and turn it into the float32 NCHW tensor a model expects.

The settings come from ``parameters.preprocess`` of the model's ``config.yaml``::

    preprocess:
      color_mode: RGB            # Pillow mode the image is converted to: "L" (1 channel) or "RGB" (3)
      size: [224, 224]           # height, width fed to the model
      resize: center_crop        # "stretch": resize straight to size;
                                 # "center_crop": shorter side to size/crop_fraction, then centre crop
      crop_fraction: 0.875
      mean: [127.0, 127.0, 127.0]  # per channel, in 0..255 pixel units: x' = (x - mean) / std
      std: [128.0, 128.0, 128.0]

Only numpy and Pillow: this module runs inside the server.

Post-processing: logits -> the top-k labels with probabilities (numpy only).
"""


from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

# Formats we promise to decode; Pillow would open more, but these are the ones tested.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
# Refuse decompression bombs before decoding the pixels (a 40-megapixel photo is plenty);
# the server passes DENDRITE_MAX_IMAGE_PIXELS.
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class ImagePreprocessing:
    color_mode: Literal["L", "RGB"]
    size: tuple[int, int]  # (height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: Literal["stretch", "center_crop"] = "stretch"
    crop_fraction: float = 0.875

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "L" else 3

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> "ImagePreprocessing":
        """Read ``parameters["preprocess"]`` of a model config; raises ValueError on a bad setting."""
        raw = parameters["preprocess"]
        spec = cls(
            color_mode=raw["color_mode"],
            size=(int(raw["size"][0]), int(raw["size"][1])),
            mean=tuple(float(m) for m in raw["mean"]),
            std=tuple(float(s) for s in raw["std"]),
            resize=raw.get("resize", "stretch"),
            crop_fraction=float(raw.get("crop_fraction", 0.875)),
        )
        if spec.color_mode not in ("L", "RGB"):
            raise ValueError(f"preprocess.color_mode must be L or RGB, not {spec.color_mode!r}")
        if spec.resize not in ("stretch", "center_crop"):
            raise ValueError(f"preprocess.resize must be stretch or center_crop, not {spec.resize!r}")
        if len(spec.mean) != spec.channels or len(spec.std) != spec.channels:
            raise ValueError(f"preprocess.mean/std need {spec.channels} values for color_mode {spec.color_mode}")
        if not 0 < spec.crop_fraction <= 1:
            raise ValueError("preprocess.crop_fraction must be in (0, 1]")
        return spec

    def to_parameters(self) -> dict[str, Any]:
        return {
            "color_mode": self.color_mode,
            "size": list(self.size),
            "resize": self.resize,
            "crop_fraction": self.crop_fraction,
            "mean": list(self.mean),
            "std": list(self.std),
        }


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode JPEG/PNG/WebP/BMP/GIF bytes (a GIF's first frame).

    Not an image or another format: UnsupportedMediaType (415). A recognised but corrupt or
    truncated file: InvalidInput (400). More pixels than ``max_pixels``: PayloadTooLarge (413),
    checked from the header before any pixel is decoded.
    """
    formats = ", ".join(SUPPORTED_FORMATS)
    # Pillow's own texts name its exception classes and its own limit, so every error here is ours.
    too_large = f"exceeds the limit of {max_pixels} pixels (DENDRITE_MAX_IMAGE_PIXELS)"
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnsupportedMediaType(f"not an image this server decodes (send {formats})") from None
    except Image.DecompressionBombError:  # Pillow's own ceiling (about 179 Mpixel), met in the header
        raise PayloadTooLarge(f"image {too_large}") from None
    except Exception:  # noqa: BLE001 - a damaged header (PIL raises OSError, SyntaxError, struct.error...)
        raise InvalidInput("cannot read the image header: the file is damaged or truncated") from None
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedMediaType(f"unsupported image format {image.format}; send one of {formats}")
    if image.width * image.height > max_pixels:
        raise PayloadTooLarge(f"image of {image.width}x{image.height} pixels {too_large}")
    try:
        image.seek(0)  # first frame of an animation
        image.load()
    except Image.DecompressionBombError:  # a later frame or tile larger than the header said
        raise PayloadTooLarge(f"image {too_large}") from None
    except Exception:  # noqa: BLE001 - corrupt or truncated pixel data (OSError, SyntaxError, EOFError...)
        raise InvalidInput(f"cannot decode the {image.format} image: its pixel data is damaged or truncated") from None
    return image


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode == mode:
        return image
    # Transparent pixels become white rather than whatever colour hides under alpha 0.
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode)


def resize_image(image: Image.Image, spec: ImagePreprocessing) -> Image.Image:
    height, width = spec.size
    if spec.resize == "stretch":
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        return image
    # center_crop: scale the shorter side to size / crop_fraction, then cut the centre.
    scale = max(height, width) / spec.crop_fraction / min(image.size)
    scaled = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(scaled, Image.Resampling.BILINEAR)
    left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


def image_to_tensor(image: Image.Image, spec: ImagePreprocessing) -> np.ndarray:
    """One decoded image -> float32 array (channels, height, width), normalised."""
    image = resize_image(_to_mode(image, spec.color_mode), spec)
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1).copy()


def preprocess(images: Sequence[bytes], spec: ImagePreprocessing, max_pixels: int = MAX_PIXELS,
               names: Sequence[str] | None = None) -> np.ndarray:  # fmt: skip
    """Encoded images -> one float32 NCHW batch. A decode error names its image (``names[i]``,
    default ``images[i]``), since a request may carry several."""
    if not images:
        raise InvalidInput("no images")
    tensors = []
    for i, data in enumerate(images):
        try:
            tensors.append(image_to_tensor(decode_image(data, max_pixels), spec))
        except (InvalidInput, PayloadTooLarge, UnsupportedMediaType) as exc:
            raise type(exc)(f"{names[i] if names else f'images[{i}]'}: {exc.message}") from None
    return np.stack(tensors)


# ---------------------------------------------------------------------- post-processing
@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits cannot overflow."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first; ties go to the lower index (stable)."""
    k = min(k, scores.shape[-1])
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def top_k(logits: np.ndarray, labels: list[str], k: int = 5) -> list[list[Prediction]]:
    """(batch, classes) logits -> for each row the k most probable classes, best first."""
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise ValueError(f"logits of shape {logits.shape} do not match {len(labels)} labels")
    probabilities = softmax(logits.astype(np.float64))
    return [
        [Prediction(int(i), labels[i], float(row[i])) for i in indices]
        for row, indices in zip(probabilities, top_k_indices(probabilities, k))
    ]


def load_labels(path: Path) -> list[str]:
    """A labels file: a JSON list of class names, index = class id."""
    labels = json.loads(Path(path).read_text())
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{path}: expected a JSON list of strings")
    return labels
