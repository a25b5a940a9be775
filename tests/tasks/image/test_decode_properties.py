"""Property tests (hypothesis) on the image decoder: random bytes, and real images of every
supported format with bytes flipped, cut or spliced, either decode into the model's tensor or
fail with 415/400/413 (UnsupportedMediaType / InvalidInput / PayloadTooLarge), never anything
else; declared sizes past the pixel limit are refused before decoding."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.tasks.image.processing import SUPPORTED_FORMATS, ImagePreprocessing, decode_image, preprocess

EXPECTED = (UnsupportedMediaType, InvalidInput, PayloadTooLarge)
SETTINGS = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
SPEC = ImagePreprocessing("RGB", (16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), resize="center_crop")


def encode(fmt: str, width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


SAMPLES = {fmt: encode(fmt, 23, 17, i) for i, fmt in enumerate(SUPPORTED_FORMATS)}


@st.composite
def damaged_images(draw):
    data = bytearray(SAMPLES[draw(st.sampled_from(SUPPORTED_FORMATS))])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "splice"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[pos:]
            if not data:
                break
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def decode_or_expected_error(data: bytes, max_pixels: int = 10_000) -> None:
    try:
        image = decode_image(data, max_pixels=max_pixels)
    except EXPECTED:
        return
    assert image.width * image.height <= max_pixels
    try:
        tensor = preprocess([data], SPEC, max_pixels=max_pixels)
    except EXPECTED:
        return
    assert tensor.shape == (1, 3, 16, 16) and np.isfinite(tensor).all()


@SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes(data):
    decode_or_expected_error(data)


@SETTINGS
@given(damaged_images())
def test_damaged_real_images(data):
    decode_or_expected_error(data)


@settings(SETTINGS, max_examples=60)
@given(fmt=st.sampled_from(["PNG", "BMP", "GIF"]), width=st.integers(1, 300), height=st.integers(1, 300))
def test_pixel_limit_is_checked_from_the_header(fmt, width, height):
    data = encode(fmt, width, height, 0)
    try:
        image = decode_image(data, max_pixels=10_000)
    except PayloadTooLarge:
        assert width * height > 10_000
    else:
        assert width * height <= 10_000 and image.size == (width, height)
