"""The typed task service ``dendrite.v1.Predict`` over a real gRPC channel against models trained by
the smoke profile, next to REST ``POST /predict/{task}`` on the same server: every task, the same
answers as REST for the same input, the same errors with their status codes, health and reflection.

Each case is written once as plain fields (images as raw bytes) and sent both ways: as the proto
message over gRPC and as the JSON body (images base64) over REST.
"""

from __future__ import annotations

import base64
import io
import json

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2, json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from app.transports.grpc.generated.dendrite.v1 import predict_pb2 as pb
from app.transports.grpc.generated.dendrite.v1 import predict_pb2_grpc as pb_grpc
from tests.support import live_server

MiB = 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * MiB), ("grpc.max_send_message_length", 64 * MiB)]
SERVICE = "dendrite.v1.Predict"
# task -> (RPC name, request message)
RPCS = {
    "image": ("Image", pb.ImageRequest),
    "sentiment": ("Sentiment", pb.SentimentRequest),
    "translation": ("Translation", pb.TranslationRequest),
    "recommendation": ("Recommendation", pb.RecommendationRequest),
}


def photo(name: str = "china.jpg", fmt: str = "JPEG") -> bytes:
    from sklearn.datasets import load_sample_image

    buf = io.BytesIO()
    Image.fromarray(load_sample_image(name)).save(buf, fmt)
    return buf.getvalue()


def blank_png(size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (size, size)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(smoke_repository):
    with live_server(smoke_repository, grpc=True, max_image_pixels=2_000_000, max_items_per_request=8) as s:
        yield s


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target, options=CHANNEL_OPTIONS) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.PredictStub(channel)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def known_user(smoke_repository) -> tuple[str, set[str]]:
    """A user of the training data and the ids of the items they have seen."""
    folder = smoke_repository / "recommendation-neumf" / "1"
    users = json.loads((folder / "users.json").read_text())
    items = json.loads((folder / "items.json").read_text())
    return users["ids"][0], {str(items[i]["id"]) for i in users["seen"][0]}


def over_grpc(stub, task: str, fields: dict):
    method, message = RPCS[task]
    return getattr(stub, method)(message(**fields), timeout=120)


def over_rest(client, task: str, fields: dict) -> httpx.Response:
    body = {k: [base64.b64encode(i).decode() for i in v] if k == "images" else v for k, v in fields.items()}
    return client.post(f"/predict/{task}", json=body)


def as_json(reply) -> dict:
    """The reply with every field written out, in protobuf's JSON mapping (keys as in the .proto)."""
    return json_format.MessageToDict(reply, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)  # fmt: skip


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


# ---------------------------------------------------------------------- answers: gRPC == REST
@pytest.mark.parametrize(
    "task, fields, items",
    [
        ("image", {"images": [photo()], "top_k": 3}, 1),
        # ~1 MB of PNGs: the request is translated on a worker thread (offload path)
        ("image", {"images": [photo("flower.jpg", "PNG"), photo("china.jpg", "PNG")], "model": "fashion-cnn",
                   "top_k": 2}, 2),
        ("sentiment", {"texts": ["I love this!", "", "great " * 400]}, 3),
        ("translation", {"texts": ["Guten Morgen.", "Wie geht es dir?"]}, 2),
        ("translation", {"texts": ["Guten Morgen."], "beam_size": 3, "max_length": 5}, 1),
        ("recommendation", {"user_id": "no-such-user", "k": 3}, 3),
    ],
    ids=["image-default-model", "image-fashion-two-png", "sentiment", "translation-greedy", "translation-beam",
         "recommendation-cold-start"],
)  # fmt: skip
def test_each_task_answers_over_grpc_exactly_as_over_rest(stub, client, task, fields, items):
    reply = over_grpc(stub, task, fields)
    rest = over_rest(client, task, fields)
    assert rest.status_code == 200, rest.text
    assert as_json(reply) == rest.json()  # same model, same version, same numbers and texts
    (results,) = [value for key, value in as_json(reply).items() if isinstance(value, list)]
    assert reply.model and reply.version and len(results) == items


def test_image_labels_are_ranked_probabilities(stub):
    reply = stub.Image(pb.ImageRequest(images=[photo()], top_k=3), timeout=120)
    assert reply.model == "imagenet-efficientnet-lite0"  # the configured default for photos
    (prediction,) = reply.predictions
    assert {"palace", "monastery", "temple", "pagoda", "bell tower"} & {p.label for p in prediction.labels}
    probs = [p.probability for p in prediction.labels]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-9


def test_sentiment_probabilities_and_truncation(stub):
    reply = stub.Sentiment(pb.SentimentRequest(texts=["I love this!", "great " * 400]), timeout=120)
    for p in reply.predictions:
        assert set(p.probabilities) == {"negative", "neutral", "positive"} and p.label in p.probabilities
        assert abs(sum(p.probabilities.values()) - 1) < 1e-6
    assert [p.truncated for p in reply.predictions] == [False, True]


def test_recommendation_known_user_and_exclude_seen_match_rest(stub, client, known_user):
    user, seen = known_user
    default = over_grpc(stub, "recommendation", {"user_id": user, "k": 5})
    assert default.cold_start is False and len(default.items) == 5
    assert not seen & {i.item_id for i in default.items}  # exclude_seen unset: the model's default (true)
    scores = [i.score for i in default.items]
    assert scores == sorted(scores, reverse=True) and all(i.title for i in default.items)
    # exclude_seen=false is sent (optional field), not mistaken for "unset"
    for fields in ({"user_id": user, "k": 5}, {"user_id": user, "k": 100, "exclude_seen": False}):
        assert as_json(over_grpc(stub, "recommendation", fields)) == over_rest(client, "recommendation", fields).json()
    everything = over_grpc(stub, "recommendation", {"user_id": user, "k": 100, "exclude_seen": False})
    assert seen & {i.item_id for i in everything.items}


# ---------------------------------------------------------------------- errors: same message, mapped code
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "task, fields, code, message",
    [
        ("image", {"images": []}, INVALID, "images"),
        ("image", {"images": [b"not an image"]}, INVALID, "not an image"),  # REST: 415
        ("image", {"images": [photo(fmt="PNG")[:100_000]]}, INVALID, "cannot decode"),
        ("image", {"images": [blank_png(3000)]}, INVALID, "DENDRITE_MAX_IMAGE_PIXELS"),  # REST: 413
        ("image", {"images": [b"x"], "top_k": 0}, INVALID, "top_k"),
        ("image", {"images": [b"x"] * 9}, INVALID, "DENDRITE_MAX_ITEMS_PER_REQUEST"),  # REST: 413
        ("image", {"images": [b"x"], "model": "recommendation-neumf"}, INVALID, "serves task 'recommendation'"),
        ("image", {"images": [b"x"], "model": "nope"}, NOT_FOUND, "nope"),
        ("sentiment", {"texts": []}, INVALID, "texts"),
        ("sentiment", {"texts": ["x" * 30_000]}, INVALID, "DENDRITE_MAX_TEXT_CHARS"),  # REST: 413
        ("sentiment", {"texts": ["x"], "version": "99"}, NOT_FOUND, "99"),
        ("translation", {"texts": ["a"], "beam_size": 0}, INVALID, "beam_size"),  # 0 is sent, not "unset"
        ("translation", {"texts": ["a"], "max_length": 257}, INVALID, "max_length"),
        ("recommendation", {"user_id": "1", "k": 0}, INVALID, "k"),
        ("recommendation", {"user_id": "1", "k": 101}, INVALID, "k"),
        ("recommendation", {"user_id": ""}, INVALID, "user_id"),
    ],
)  # fmt: skip
def test_errors_have_the_rest_message_and_the_mapped_status_code(stub, client, task, fields, code, message):
    method, request = RPCS[task]
    err = rpc_error(getattr(stub, method), request(**fields), timeout=120)
    assert err.code() == code and message in err.details(), err.details()
    rest = over_rest(client, task, fields)
    assert 400 <= rest.status_code < 500 and rest.json()["error"] == err.details()


def test_task_requests_are_counted_under_protocol_grpc(server, stub):
    def successes() -> float:
        labels = {"model": "sentiment-minilm", "version": "1", "protocol": "grpc", "outcome": "success"}
        return server.service.metrics.registry.get_sample_value("dendrite_requests_total", labels) or 0.0

    before = successes()
    stub.Sentiment(pb.SentimentRequest(texts=["fine"], model="sentiment-minilm"), timeout=120)
    assert successes() - before == 1


# ---------------------------------------------------------------------- discovery
def test_health_and_reflection_know_the_task_service(channel):
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=SERVICE)).status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)]  # fmt: skip
    listing, described = list(reflect.ServerReflectionInfo(iter(requests), timeout=10))
    assert SERVICE in {s.name for s in listing.list_services_response.service}
    (proto,) = described.file_descriptor_response.file_descriptor_proto
    file = descriptor_pb2.FileDescriptorProto.FromString(proto)
    assert file.package == "dendrite.v1"
    assert [m.name for m in file.service[0].method] == ["Image", "Sentiment", "Translation", "Recommendation"]


def test_image_files_arrive_as_bytes_without_a_base64_round_trip():
    from app.tasks.image.pipeline import ImageFiles
    from app.transports.grpc.predict import to_task_request

    files = [photo(), b"\x00\xff not even an image"]
    request = to_task_request(pb.ImageRequest(images=files, top_k=3), ImageFiles, ("images",))
    assert isinstance(request, ImageFiles) and request.images == files and request.top_k == 3
