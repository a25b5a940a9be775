"""The pretrained EfficientNet-Lite0 export, and what it says about scikit-learn's sample photos."""

import json

import numpy as np
import pytest

from app.protocol.model_config import load_config
from app.tasks.image.processing import load_labels, top_k
from app.tasks.image.processing import ImagePreprocessing, preprocess
from app.training.export import ort_session
from app.training.recipes.imagenet import SAMPLE_PHOTOS, sample_photo
from app.training.runner import run_recipe

pytest.importorskip("efficientnet_lite_pytorch", reason="the train extra is not installed")


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    repository = tmp_path_factory.mktemp("models")
    return run_recipe("image-imagenet", profile="smoke", repository=repository)


def test_export_loads_with_1000_labels_and_a_valid_config(version):
    config = load_config(version.parent / "config.yaml", "imagenet-efficientnet-lite0")
    assert load_labels(version / config.parameters["labels_file"])[985] == "daisy"
    card = json.loads((version / "card.json").read_text())
    assert card["parity"][0]["max_abs_diff"] <= 1e-4 and card["parameter_count"] == 4_652_008
    (logits,) = ort_session(version / "model.onnx").run(None, {"image": np.zeros((3, 3, 224, 224), np.float32)})
    assert logits.shape == (3, 1000)


@pytest.mark.parametrize("photo, expected", [("china.jpg", SAMPLE_PHOTOS["china.jpg"]), ("flower.jpg", {"daisy"})])
def test_sample_photos_are_labelled_sensibly(version, photo, expected):
    """Through the serving path: app.tasks.image preprocessing, ONNX Runtime, app.tasks.image postprocessing."""
    parameters = load_config(version.parent / "config.yaml", version.parent.name).parameters
    spec = ImagePreprocessing.from_parameters(parameters)
    labels = load_labels(version / parameters["labels_file"])
    (logits,) = ort_session(version / "model.onnx").run(None, {"image": preprocess([sample_photo(photo)], spec)})
    best = top_k(logits, labels, k=5)[0]
    assert best[0].label in expected, [p.label for p in best]
