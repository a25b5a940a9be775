"""``python -m app.training quantize``: smoke-trained models -> int8 versions that load, serve beside the fp32
version, and carry both versions' metrics on their card."""

import base64
import json

import httpx
import onnx
import pytest
import yaml

from app.training import __main__ as cli
from app.training.data.images import encode_png
from app.training.runner import run_recipe
from tests.support import live_server
from tests.training.data.test_images import write_idx_folder
from tests.training.recipes.test_image import synthetic_images


def _ops(path):
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def image_repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantize")
    write_idx_folder(root / "data", *synthetic_images(400, 0), prefix="train")
    write_idx_folder(root / "data", *synthetic_images(60, 1), prefix="t10k")
    assert cli.main(["image", "--profile", "smoke", "--data", str(root / "data"), "--repository", str(root / "models"),
                     "--quantize"]) == 0
    return root / "models"


def test_int8_image_version_has_a_card_with_both_versions_measured(image_repository):
    fp32_dir, int8_dir = image_repository / "fashion-cnn" / "1", image_repository / "fashion-cnn" / "2"
    assert sorted(p.name for p in int8_dir.iterdir()) == ["card.json", "labels.json", "model.onnx"]
    assert "QuantizeLinear" in _ops(int8_dir / "model.onnx") and "QuantizeLinear" not in _ops(fp32_dir / "model.onnx")
    card, fp32_card = (json.loads((d / "card.json").read_text()) for d in (int8_dir, fp32_dir))
    q = card["quantization"]
    assert q["from_version"] == 1 and q["method"].startswith("static")
    assert q["metrics"]["fp32"] == fp32_card["metrics"] and q["fp32_card_metrics_reproduced"]
    assert q["metrics"]["int8"] == card["metrics"]
    assert q["metrics"]["delta"]["accuracy"] == pytest.approx(card["metrics"]["accuracy"] - fp32_card["metrics"]["accuracy"])
    assert q["bytes"]["fp32"]["model"] == fp32_card["graphs"]["model"]["bytes"] > q["bytes"]["int8"]["model"]
    assert q["bytes"]["int8"]["model"] == card["graphs"]["model"]["bytes"] and q["bytes"]["ratio"] < 0.5
    assert q["throughput"]["fp32_items_per_s"] > 0 and q["throughput"]["int8_items_per_s"] > 0
    assert q["throughput"]["ratio"] == pytest.approx(
        q["throughput"]["int8_items_per_s"] / q["throughput"]["fp32_items_per_s"], rel=0.01)
    assert card["training"] == fp32_card["training"] and card["version"] == 2
    assert card["model_selection"]["test_reads"] == 2 and card["environment"]["cpu_count"] >= 1


def test_both_versions_serve_side_by_side_when_the_policy_keeps_two(image_repository):
    config_path = image_repository / "fashion-cnn" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config_path.write_text(yaml.safe_dump({**config, "version_policy": {"latest": 2}}))
    images, labels = synthetic_images(8, 5)
    body = {"images": [base64.b64encode(encode_png(i)).decode() for i in images], "model": "fashion-cnn", "top_k": 1}
    with live_server(image_repository) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        answers = {}
        for version in ("1", "2"):
            assert client.get(f"/v2/models/fashion-cnn/versions/{version}/ready").status_code == 200
            r = client.post("/predict/image", json={**body, "version": version})
            assert r.status_code == 200, r.text
            assert r.json()["version"] == version
            answers[version] = [p["labels"][0]["label"] for p in r.json()["predictions"]]
        latest = client.post("/predict/image", json=body).json()
    assert latest["version"] == "2"
    agree = sum(a == b for a, b in zip(answers["1"], answers["2"]))
    assert agree >= 6, answers  # int8 may flip a borderline image, not most of them


def test_text_models_get_dynamic_int8(tmp_path):
    run_recipe("sentiment", profile="smoke", repository=tmp_path)
    assert cli.main(["quantize", "sentiment-minilm", "--repository", str(tmp_path), "--calibration", "64"]) == 0
    int8_dir = tmp_path / "sentiment-minilm" / "2"
    assert "DynamicQuantizeLinear" in _ops(int8_dir / "model.onnx")
    card = json.loads((int8_dir / "card.json").read_text())
    assert card["quantization"]["method"].startswith("dynamic")
    assert set(card["quantization"]["metrics"]["delta"]) >= {"accuracy", "macro_f1"}
    assert (int8_dir / "tokenizer.json").read_bytes() == (tmp_path / "sentiment-minilm" / "1" / "tokenizer.json").read_bytes()


def test_refusals_name_the_problem(image_repository, tmp_path, capsys):
    def refused(*args):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["quantize", *args])
        assert exit_info.value.code == 2
        return capsys.readouterr().err

    assert "no version" in refused("fashion-cnn", "--repository", str(tmp_path))
    assert "no version 7" in refused("fashion-cnn", "--repository", str(image_repository), "--version", "7")
    assert "already int8 (from version 1)" in refused("fashion-cnn", "--repository", str(image_repository), "--version", "2")
    folder = tmp_path / "translation-de-en" / "1"
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(json.dumps({"model": "translation-de-en", "recipe": "app.training.recipes.translation"}))
    message = refused("translation-de-en", "--repository", str(tmp_path))
    assert "no int8 method" in message and "fashion-cnn" in message and "Error" not in message
    with pytest.raises(SystemExit):
        cli.main(["translation", "--profile", "smoke", "--repository", str(tmp_path), "--quantize"])
    assert "translation has no int8 method" in capsys.readouterr().err
