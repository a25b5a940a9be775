"""The fashion-cnn recipe end to end on a tiny IDX data set the test writes (and on an image folder)."""

import io
import json

import numpy as np
from PIL import Image

from app.protocol.model_config import load_config
from app.training.export import ort_session
from app.training.recipes.image import FashionCNNRecipe, augment
from app.training.reproducibility import torch_generator
from app.training.runner import run_recipe
from tests.training.data.test_images import write_idx_folder


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three easy classes: a bright left half, a bright right half, a dark image."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 40, (n, 28, 28))
    images[labels == 0, :, :14] += 200
    images[labels == 1, :, 14:] += 200
    return images.astype(np.uint8), labels.astype(np.uint8)


def test_smoke_profile_end_to_end_on_idx_files(tmp_path):
    data = tmp_path / "data"
    write_idx_folder(data, *synthetic_images(300, 0), prefix="train")
    write_idx_folder(data, *synthetic_images(60, 1), prefix="t10k")
    version = run_recipe("image", profile="smoke", data_path=data, repository=tmp_path / "models")

    assert version == tmp_path / "models" / "fashion-cnn" / "1"
    config = load_config(tmp_path / "models" / "fashion-cnn" / "config.yaml", "fashion-cnn")
    assert config.task == "image" and config.parameters["labels_file"] == "labels.json"
    card = json.loads((version / "card.json").read_text())
    splits = card["data"]["splits"]
    assert splits["test"] == 60 and splits["train"] + splits["validation"] == 300 and 20 <= splits["validation"] <= 30
    # chosen on validation; the test split read once, by the final evaluation
    assert card["model_selection"] == {"selected_on": "validation", "how": FashionCNNRecipe.selection, "test_reads": 1}
    assert card["training"]["selected_epoch"] == 1 and len(card["training"]["validation_accuracy_by_epoch"]) == 1
    assert 0.0 <= card["metrics"]["accuracy"] <= 1.0 and "nearest_class_mean_pixels" in card["baselines"]
    assert card["parity"][0]["max_abs_diff"] <= 1e-4
    labels = json.loads((version / "labels.json").read_text())
    assert labels == ["0", "1", "2"]
    session = ort_session(version / "model.onnx")
    (logits,) = session.run(None, {"image": np.zeros((3, 1, 28, 28), np.float32)})
    assert logits.shape == (3, 3)


def test_smoke_profile_on_an_image_folder(tmp_path):
    images, labels = synthetic_images(40, 2)
    names = ["left", "right", "dark"]
    for split, rows in (("train", range(30)), ("test", range(30, 40))):
        for i in rows:
            folder = tmp_path / "data" / split / names[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            Image.fromarray(images[i]).resize((56, 56)).save(buffer, format="PNG")
            (folder / f"{i}.png").write_bytes(buffer.getvalue())
    version = run_recipe("image", profile="smoke", data_path=tmp_path / "data", repository=tmp_path / "models")
    assert json.loads((version / "labels.json").read_text()) == sorted(names)


def test_augmentation_shifts_and_flips_without_changing_shape():
    import torch

    batch = torch.zeros(64, 1, 28, 28)
    batch[:, :, 10:18, 4:8] = 1.0  # a bar left of centre
    for flip in (False, True):
        out = augment(batch, torch_generator(0), flip=flip)
        assert out.shape == batch.shape
        moved = (out != batch).flatten(1).any(1)
        assert int(moved.sum()) > 48  # all but the few drawn with no shift (and no flip)
        assert torch.allclose(out.sum((1, 2, 3)), batch.sum((1, 2, 3)))  # 2-pixel shifts keep the bar inside
    flipped = augment(batch, torch_generator(0), shift=0, flip=True)
    assert 0 < int((flipped != batch).flatten(1).any(1).sum()) < 64  # about half mirrored
