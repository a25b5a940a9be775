"""/predict/{task} over real HTTP against models trained by the smoke profile."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from tests.support import live_server


def photo(name: str = "china.jpg", fmt: str = "JPEG") -> bytes:
    from sklearn.datasets import load_sample_image

    buf = io.BytesIO()
    Image.fromarray(load_sample_image(name)).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(smoke_repository):
    with live_server(smoke_repository, max_image_pixels=2_000_000, max_items_per_request=8,
                     max_image_bytes=1_000_000) as s:
        yield s


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_image_json_and_multipart_give_the_same_answer(client):
    data = photo()
    as_json = client.post("/predict/image", json={"images": [base64.b64encode(data).decode()], "top_k": 3})
    as_form = client.post("/predict/image", files=[("images", ("china.jpg", data, "image/jpeg"))], data={"top_k": "3"})
    assert as_json.status_code == as_form.status_code == 200, as_json.text
    assert as_json.json() == as_form.json()
    body = as_json.json()
    assert body["model"] == "imagenet-efficientnet-lite0"  # the configured default for photos
    (prediction,) = body["predictions"]
    labels = [p["label"] for p in prediction["labels"]]
    assert len(labels) == 3 and {"palace", "monastery", "temple", "pagoda", "bell tower"} & set(labels)
    probs = [p["probability"] for p in prediction["labels"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-9


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "GIF"])
def test_image_formats_and_several_items_per_request(client, fmt):
    images = [base64.b64encode(photo("flower.jpg", fmt)).decode(), base64.b64encode(photo("china.jpg", fmt)).decode()]
    r = client.post("/predict/image", json={"images": images, "model": "fashion-cnn", "top_k": 2})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert r.json()["model"] == "fashion-cnn" and len(preds) == 2 and all(len(p["labels"]) == 2 for p in preds)


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"json": {"images": [base64.b64encode(b"not an image").decode()]}}, 415, "not an image"),
        ({"json": {"images": ["@@@"]}}, 400, "not valid base64"),
        ({"json": {"images": []}}, 400, "images"),
        ({"json": {"images": ["aGk="], "top_k": 0}}, 400, "top_k"),
        ({"files": [("images", ("x.txt", b"hello", "text/plain"))]}, 415, "not an image"),
        ({"content": b"raw bytes", "headers": {"Content-Type": "image/jpeg"}}, 415, "multipart/form-data"),
        ({"json": {"images": ["aGk="] * 9}}, 413, "DENDRITE_MAX_ITEMS_PER_REQUEST"),
        ({"json": {"images": ["A" * 1_500_000]}}, 413, "DENDRITE_MAX_IMAGE_BYTES"),
        ({"json": {"images": ["aGk="], "model": "recommendation-neumf"}}, 400, "serves task 'recommendation'"),
        ({"json": {"images": ["aGk="], "model": "nope"}}, 404, "nope"),
    ],
)
def test_image_errors(client, kwargs, status, message):
    r = client.post("/predict/image", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_truncated_image_is_400_and_decompression_bomb_is_413(client):
    data = photo(fmt="PNG")
    r = client.post("/predict/image", json={"images": [base64.b64encode(data[: len(data) // 3]).decode()]})
    assert r.status_code == 400 and "cannot decode" in r.json()["error"]
    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, "PNG")  # small file, 9 Mpixel > the 2 Mpixel limit set above
    r = client.post("/predict/image", json={"images": [base64.b64encode(buf.getvalue()).decode()]})
    assert r.status_code == 413 and "DENDRITE_MAX_IMAGE_PIXELS" in r.json()["error"]


def test_an_image_error_names_the_file_among_several(client):
    data = photo(fmt="PNG")
    files = [("images", ("a.png", data, "image/png")), ("images", ("b.png", data[: len(data) // 3], "image/png"))]
    r = client.post("/predict/image", files=files)
    assert r.status_code == 400
    assert r.json() == {"error": "images[1] ('b.png'): cannot decode the PNG image: its pixel data is damaged or truncated"}


def test_recommendation_known_and_cold_start_users(client, smoke_repository):
    import json

    users = json.loads((smoke_repository / "recommendation-neumf" / "1" / "users.json").read_text())
    user, seen = users["ids"][0], set(users["seen"][0])
    items = json.loads((smoke_repository / "recommendation-neumf" / "1" / "items.json").read_text())
    seen_ids = {str(items[i]["id"]) for i in seen}
    r = client.post("/predict/recommendation", json={"user_id": user, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cold_start"] is False and len(body["items"]) == 5
    assert not seen_ids & {i["item_id"] for i in body["items"]}  # exclude_seen by default
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(i["title"] for i in body["items"])
    cold = client.post("/predict/recommendation", json={"user_id": "no-such-user", "k": 3}).json()
    assert cold["cold_start"] is True and len(cold["items"]) == 3
    for k in (0, 101):
        r = client.post("/predict/recommendation", json={"user_id": user, "k": k})
        assert r.status_code == 400 and "k" in r.json()["error"]


def test_recommendation_model_refuses_user_indices_outside_its_range(client, smoke_repository):
    """The recipe writes the user index range into config.yaml: OIP infer refuses ids the model has no row for
    (a negative one would otherwise be another user's answer) and the metadata shows the range."""
    import json

    last = len(json.loads((smoke_repository / "recommendation-neumf" / "1" / "users.json").read_text())["ids"]) - 1
    meta = client.get("/v2/models/recommendation-neumf").json()
    assert meta["inputs"] == [{"name": "user", "datatype": "INT64", "shape": [-1], "min": 0, "max": last}]
    for value in (-5, last + 1, 99999999):
        r = client.post("/v2/models/recommendation-neumf/infer",
                        json={"inputs": [{"name": "user", "shape": [1], "datatype": "INT64", "data": [value]}]})
        assert r.status_code == 400
        assert r.json() == {"error": f"input 'user': value {value} is outside the valid range 0..{last}"}


def test_sentiment_labels_probabilities_and_truncation(client):
    long_text = "great " * 400
    r = client.post("/predict/sentiment", json={"texts": ["I love this!", "", long_text]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 3
    for p in preds:
        assert set(p["probabilities"]) == {"negative", "neutral", "positive"}
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-6 and p["label"] in p["probabilities"]
    assert [p["truncated"] for p in preds] == [False, False, True]
    r = client.post("/predict/sentiment", json={"texts": ["x" * 30_000]})
    assert r.status_code == 413 and "DENDRITE_MAX_TEXT_CHARS" in r.json()["error"]
    assert client.post("/predict/sentiment", json={"texts": []}).status_code == 400
    assert client.post("/predict/sentiment", json={"text": "wrong field"}).status_code == 400


def test_translation_greedy_and_beam(client):
    r = client.post("/predict/translation", json={"texts": ["Guten Morgen.", "Wie geht es dir?"]})
    assert r.status_code == 200, r.text
    out = r.json()["translations"]
    assert len(out) == 2 and all(isinstance(t["text"], str) for t in out)
    beam = client.post("/predict/translation", json={"texts": ["Guten Morgen."], "beam_size": 3, "max_length": 5})
    assert beam.status_code == 200, beam.text
    assert client.post("/predict/translation", json={"texts": ["a"], "beam_size": 0}).status_code == 400


def test_openapi_documents_typed_task_routes(client):
    spec = client.get("/openapi.json").json()
    for task in ("image", "sentiment", "translation", "recommendation"):
        op = spec["paths"][f"/predict/{task}"]["post"]
        assert "200" in op["responses"] and "requestBody" in op
    assert "multipart/form-data" in spec["paths"]["/predict/image"]["post"]["requestBody"]["content"]
    # every operation under exactly one tag, so the docs page lists it once
    tags = {f"{method.upper()} {path}": op.get("tags", []) for path, ops in spec["paths"].items() for method, op in ops.items()}
    assert {op: t for op, t in tags.items() if len(t) != 1} == {}
    assert tags["POST /v2/repository/models/{model}/load"] == ["Model repository"]


def test_processing_time_is_measured_per_task_request(client):
    def processed() -> float:
        prefix = 'dendrite_processing_duration_seconds_count{model="fashion-cnn"'
        line = next(line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix))
        return float(line.split()[-1])

    client.post("/predict/image", json={"images": [base64.b64encode(photo()).decode()], "model": "fashion-cnn"})
    before = processed()
    for _ in range(3):
        client.post("/predict/image", json={"images": [base64.b64encode(photo()).decode()], "model": "fashion-cnn"})
    assert processed() - before == 3
