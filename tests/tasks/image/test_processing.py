import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.tasks.image.processing import ImagePreprocessing, decode_image, image_to_tensor, load_labels, preprocess, softmax, top_k

GREY = ImagePreprocessing(color_mode="L", size=(28, 28), mean=(0.0,), std=(1.0,))
RGB_CROP = ImagePreprocessing(color_mode="RGB", size=(8, 8), mean=(127.0,) * 3, std=(128.0,) * 3, resize="center_crop")


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_every_promised_format_decodes_to_the_model_shape(fmt):
    image = Image.new("RGB", (40, 30), (200, 100, 50))
    batch = preprocess([encode(image, fmt)], RGB_CROP)
    assert batch.shape == (1, 3, 8, 8) and batch.dtype == np.float32
    # JPEG/WebP are lossy: compare loosely; the red channel is (200 - 127) / 128.
    assert abs(float(batch[0, 0].mean()) - (200 - 127) / 128) < 0.05


def test_gif_uses_the_first_frame():
    frames = [Image.new("L", (28, 28), 10), Image.new("L", (28, 28), 250)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    tensor = preprocess([buffer.getvalue()], GREY)
    assert tensor.shape == (1, 1, 28, 28)
    assert float(tensor.max()) < 50


def test_transparent_pixels_become_white_not_black():
    image = Image.new("RGBA", (28, 28), (0, 0, 0, 0))
    tensor = preprocess([encode(image, "PNG")], GREY)
    assert np.allclose(tensor, 255.0)


def test_normalisation_is_per_channel_in_pixel_units():
    image = Image.new("RGB", (8, 8), (127, 255, 0))
    tensor = image_to_tensor(image, RGB_CROP)
    assert np.allclose(tensor[0], 0.0) and np.allclose(tensor[1], 1.0) and np.allclose(tensor[2], -127 / 128)


def test_center_crop_keeps_the_middle_of_a_wide_image():
    pixels = np.zeros((100, 300), dtype=np.uint8)
    pixels[:, 100:200] = 255  # a white middle third
    spec = ImagePreprocessing(color_mode="L", size=(10, 10), mean=(0.0,), std=(255.0,), resize="center_crop", crop_fraction=1.0)
    tensor = image_to_tensor(Image.fromarray(pixels), spec)
    # Only the white third survives (bilinear resampling softens the outermost columns a little).
    assert tensor.shape == (1, 10, 10) and float(tensor.mean()) > 0.95 and float(tensor[:, :, 1:-1].min()) == 1.0


def test_stretch_resizes_to_exact_size():
    tensor = image_to_tensor(Image.new("L", (50, 20), 0), GREY)
    assert tensor.shape == (1, 28, 28)


@pytest.mark.parametrize("data", [b"", b"not an image"])
def test_non_images_are_unsupported_media(data):
    with pytest.raises(UnsupportedMediaType, match="not an image"):
        decode_image(data)


def test_truncated_image_is_invalid_input():
    data = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "PNG")
    with pytest.raises(InvalidInput, match="cannot decode the PNG image"):
        decode_image(data[: len(data) // 2])


def test_unsupported_format_is_refused():
    with pytest.raises(UnsupportedMediaType, match="unsupported image format"):
        decode_image(encode(Image.new("RGB", (4, 4)), "TIFF"))


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encode(Image.new("L", (3000, 3000), 0), "PNG")  # ~9 kB on the wire, 9 Mpixel decoded
    assert len(bomb) < 50_000
    with pytest.raises(PayloadTooLarge, match="DENDRITE_MAX_IMAGE_PIXELS"):
        decode_image(bomb, max_pixels=1_000_000)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and carries none: what a decompression bomb's header says."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [8000, 20000])  # 20000^2 is past Pillow's own ceiling, which it raises in open()
def test_any_oversized_header_is_413_naming_our_setting(side):
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(png_header(side, side), max_pixels=40_000_000)
    assert info.value.message.endswith("exceeds the limit of 40000000 pixels (DENDRITE_MAX_IMAGE_PIXELS)")
    assert "Error" not in info.value.message and "178956970" not in info.value.message


def test_truncated_files_are_400_in_our_words():
    jpeg = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    for data in (jpeg[:30], jpeg[: len(jpeg) // 2]):
        with pytest.raises(InvalidInput) as info:
            decode_image(data)
        assert info.value.message in ("cannot read the image header: the file is damaged or truncated",
                                      "cannot decode the JPEG image: its pixel data is damaged or truncated")  # fmt: skip


def test_an_error_names_its_image_among_several():
    good = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)), "PNG")
    with pytest.raises(InvalidInput, match=r"^images\[2\]: cannot decode the PNG image"):
        preprocess([good, good, good[: len(good) // 2]], GREY)
    with pytest.raises(PayloadTooLarge, match=r"^b.png: image of 3000x3000"):
        preprocess([good, encode(Image.new("L", (3000, 3000)), "PNG")], GREY, 1_000_000, names=["a.png", "b.png"])


def test_parameters_round_trip_and_validation():
    assert ImagePreprocessing.from_parameters({"preprocess": RGB_CROP.to_parameters()}) == RGB_CROP
    bad = {**GREY.to_parameters(), "mean": [1.0, 2.0, 3.0]}
    with pytest.raises(ValueError, match="mean/std"):
        ImagePreprocessing.from_parameters({"preprocess": bad})
    with pytest.raises(ValueError, match="color_mode"):
        ImagePreprocessing.from_parameters({"preprocess": {**GREY.to_parameters(), "color_mode": "CMYK"}})


# ---------------------------------------------------------------------- post-processing
def test_softmax_is_stable_for_huge_logits():
    p = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    assert np.allclose(p, [[0.5, 0.5, 0.0]])


def test_top_k_orders_by_probability_with_labels():
    logits = np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]], dtype=np.float32)
    result = top_k(logits, ["a", "b", "c"], k=2)
    assert [[p.label for p in row] for row in result] == [["b", "c"], ["a", "b"]]
    assert result[0][0].probability == pytest.approx(np.exp(3) / (1 + np.exp(3) + np.exp(1)))


def test_top_k_caps_k_at_the_class_count_and_checks_labels():
    assert len(top_k(np.zeros((1, 2)), ["a", "b"], k=10)[0]) == 2
    with pytest.raises(ValueError):
        top_k(np.zeros((1, 3)), ["a", "b"], k=1)


def test_labels_file_must_be_a_list_of_strings(tmp_path):
    (tmp_path / "ok.json").write_text(json.dumps(["x", "y"]))
    (tmp_path / "bad.json").write_text(json.dumps({"0": "x"}))
    assert load_labels(tmp_path / "ok.json") == ["x", "y"]
    with pytest.raises(ValueError):
        load_labels(tmp_path / "bad.json")
