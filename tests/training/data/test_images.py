import gzip
import io
import struct

import numpy as np
import pytest
from PIL import Image

from app.tasks.image.processing import ImagePreprocessing
from app.training.data.images import ImageSplit, is_idx_folder, load_idx_split, load_image_folder, read_idx


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding written independently of the reader: magic 00 00 08 <ndim>, big-endian sizes, data."""
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_folder(folder, images, labels, prefix="train", compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(array.astype(np.uint8))
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_split_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 1, 0], dtype=np.uint8)
    write_idx_folder(tmp_path, images, labels, compress=compress)
    split = load_idx_split(tmp_path, "train")
    assert is_idx_folder(tmp_path)
    assert np.array_equal(split.images, images) and split.labels.tolist() == labels.tolist()
    assert split.labels.dtype == np.int64


def test_idx_rejects_bad_magic_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((2, 3), np.uint8))[:-1])
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "short")


def test_idx_split_needs_matching_counts(tmp_path):
    write_idx_folder(tmp_path, np.zeros((3, 4, 4)), np.zeros(2))
    with pytest.raises(ValueError):
        load_idx_split(tmp_path, "train")


def test_image_folder_decodes_resizes_and_labels_by_sorted_folder(tmp_path):
    for cls, value, fmt in (("cat", 200, "PNG"), ("ant", 30, "JPEG"), ("ant", 40, "GIF")):
        (tmp_path / cls).mkdir(exist_ok=True)
        buffer = io.BytesIO()
        Image.new("RGB", (50, 40), (value, value, value)).save(buffer, format=fmt)
        (tmp_path / cls / f"{value}.{fmt.lower()}").write_bytes(buffer.getvalue())
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    spec = ImagePreprocessing(color_mode="L", size=(28, 28), mean=(0.0,), std=(1.0,))
    split, classes = load_image_folder(tmp_path, spec)
    assert classes == ["ant", "cat"]
    assert split.images.shape == (3, 28, 28) and split.images.dtype == np.uint8
    assert split.labels.tolist() == [0, 0, 1]
    assert abs(int(split.images[2].mean()) - 200) <= 2


def test_carve_holds_out_a_seeded_share_of_each_class_without_overlap():
    labels = np.repeat(np.arange(3), [120, 60, 12])
    images = np.arange(len(labels), dtype=np.uint32).reshape(-1, 1, 1)  # each image's value is its row
    split = ImageSplit(images, labels)
    rest, held = split.carve(1 / 12, seed=0)
    assert np.bincount(held.labels).tolist() == [10, 5, 1] and len(rest) + len(held) == len(split)
    assert not set(rest.images.ravel()) & set(held.images.ravel())
    again, other = split.carve(1 / 12, seed=0)[1], split.carve(1 / 12, seed=1)[1]
    assert np.array_equal(again.images, held.images) and not np.array_equal(other.images, held.images)
