"""Image data loaders: IDX files (the MNIST family's format) and class-per-folder image trees."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.tasks.image.processing import SUPPORTED_FORMATS, ImagePreprocessing, decode_image, resize_image

# IDX type codes (third header byte) -> numpy dtype (big-endian for multi-byte types).
IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}  # fmt: skip
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


@dataclass
class ImageSplit:
    images: np.ndarray  # uint8 (n, height, width) for grey, (n, height, width, 3) for RGB
    labels: np.ndarray  # int64 (n,)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int) -> "ImageSplit":
        return ImageSplit(self.images[:n], self.labels[:n])

    def carve(self, fraction: float, seed: int) -> tuple["ImageSplit", "ImageSplit"]:
        """(rest, held out): ``fraction`` of each class drawn with ``seed``, e.g. a validation split."""
        rng = np.random.default_rng(seed)
        held = np.zeros(len(self), dtype=bool)
        for label in np.unique(self.labels):
            rows = np.flatnonzero(self.labels == label)
            held[rng.choice(rows, size=int(round(fraction * len(rows))), replace=False)] = True
        return ImageSplit(self.images[~held], self.labels[~held]), ImageSplit(self.images[held], self.labels[held])


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic ``00 00 <type> <ndim>``, ndim big-endian uint32 sizes, data."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4].hex()})")
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes), file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{folder}: missing {stem}[.gz]")


def load_idx_split(folder: Path, prefix: str) -> ImageSplit:
    """``<prefix>-images-idx3-ubyte[.gz]`` + ``<prefix>-labels-idx1-ubyte[.gz]`` (prefix: train or t10k)."""
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}/{prefix}: expected uint8 (n, h, w) images and n labels, got {images.shape} / {labels.shape}")
    return ImageSplit(images, labels)


def is_idx_folder(folder: Path) -> bool:
    return any(Path(folder).glob("train-images-idx3-ubyte*"))


def load_image_folder(root: Path, spec: ImagePreprocessing, classes: list[str] | None = None) -> tuple[ImageSplit, list[str]]:
    """``root/<class>/<image>``: every image decoded (first frame), converted and resized as ``spec`` says,
    kept as uint8 pixels. Classes are the sorted sub-folder names unless given (so train and test agree)."""
    root = Path(root)
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root}: no class folders")
    images, labels = [], []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if (root / name).is_dir() else []
        for file in files:
            image = decode_image(file.read_bytes())
            image = resize_image(image.convert(spec.color_mode), spec)
            images.append(np.asarray(image, dtype=np.uint8))
            labels.append(index)
    if not images:
        raise ValueError(f"{root}: no images ({', '.join(SUPPORTED_FORMATS)}) under the class folders")
    return ImageSplit(np.stack(images), np.asarray(labels, dtype=np.int64)), classes


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 pixels -> PNG bytes (lossless), as a client would send them."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
