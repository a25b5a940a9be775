"""The outermost REST middleware (app.transports.rest.guard): API keys on every route kind,
including the infer fast path, and a client disconnect removing its queued work."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import numpy as np
import pytest

from app import auth
from app.config import Settings
from app.transports.rest.guard import access_of
from testkit.oip import binary_body
from testkit.models import affine_model, matmul_chain_model, write_model
from tests.support import live_server

BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def test_required_keys_per_route():
    s = Settings(api_keys=["k"], repository_api_keys=["r"])
    assert auth.required_keys(s, access_of("/v2/health/ready"))[0] == ()
    assert auth.required_keys(s, access_of("/v2/health/live"))[0] == ()
    assert auth.required_keys(s, access_of("/metrics"))[0] == ()
    assert auth.required_keys(Settings(api_keys=["k"], metrics_require_key=True), access_of("/metrics"))[0] == ["k"]
    for path in ("/v2", "/v2/models/m/infer", "/predict/image", "/v2/repository/index", "/v2/models/m/ready"):
        assert auth.required_keys(s, access_of(path))[0] == ["k"], path
    for path in ("/v2/repository/models/m/load", "/v2/repository/models/m/unload"):
        keys, message = auth.required_keys(s, access_of(path))
        assert keys == ["r"] and "DENDRITE_REPOSITORY_API_KEYS" in message
    keys, message = auth.required_keys(Settings(api_keys=["k"]), access_of("/v2/repository/models/m/load"))
    assert keys == ["k"] and "DENDRITE_API_KEYS" in message
    assert auth.required_keys(Settings(), access_of("/v2/repository/models/m/unload"))[0] == []


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    write_model(root, "affine", affine_model(), {"max_batch_size": 8})
    write_model(root, "slow", matmul_chain_model(width=1024, depth=16),
                {"max_batch_size": 512, "dynamic_batching": {"max_queue_size": 64}})  # fmt: skip
    return root


@pytest.fixture(scope="module")
def keyed(repo):
    with live_server(repo, api_keys=["k-one", "k-two"], repository_api_keys=["admin"], repository_api_enabled=True,
                     metrics_require_key=True) as s:  # fmt: skip
        yield s


def test_inference_routes_need_a_key_incl_the_fast_path(keyed):
    url = keyed.url
    for path in ("/v2/models/affine/infer", "/v2/models/affine/versions/1/infer"):  # the fast path
        r = httpx.post(url + path, json=BODY)
        assert r.status_code == 401 and "DENDRITE_API_KEYS" in r.json()["error"]
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert httpx.post(url + path, json=BODY, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(url + path, json=BODY, headers={"Authorization": "Bearer k-two"}).status_code == 200
        assert httpx.post(url + path, json=BODY, headers={"X-API-Key": "k-one"}).status_code == 200
    assert httpx.post(url + "/predict/sentiment", json={"texts": ["hi"]}).status_code == 401
    for path in ("/v2", "/v2/models/affine", "/v2/models/affine/ready", "/v2/repository/index", "/metrics"):
        assert httpx.get(url + path).status_code == 401, path
        assert httpx.get(url + path, headers={"X-API-Key": "k-one"}).status_code == 200, path
    for path in ("/v2/health/live", "/v2/health/ready", "/openapi.json"):  # probes and the schema stay open
        assert httpx.get(url + path).status_code == 200, path


def test_repository_routes_take_their_own_keys(keyed):
    url = keyed.url + "/v2/repository/models/affine/load"
    r = httpx.post(url, headers={"X-API-Key": "k-one"})  # an inference key is not enough
    assert r.status_code == 401 and "DENDRITE_REPOSITORY_API_KEYS" in r.json()["error"]
    assert httpx.post(url, headers={"Authorization": "Bearer admin"}).status_code == 200
    # ...and the repository key is not an inference key
    assert httpx.post(keyed.url + "/v2/models/affine/infer", json=BODY, headers={"X-API-Key": "admin"}).status_code == 401


def test_repository_routes_take_the_api_keys_when_they_have_none_of_their_own(repo):
    with live_server(repo, api_keys=["k"], repository_api_enabled=True) as s:
        for action in ("load", "unload"):
            url = f"{s.url}/v2/repository/models/affine/{action}"
            r = httpx.post(url)
            assert r.status_code == 401 and "DENDRITE_API_KEYS" in r.json()["error"], action
            assert httpx.post(url, headers={"X-API-Key": "wrong"}).status_code == 401, action
            assert httpx.post(url, headers={"X-API-Key": "k"}).status_code == 200, action


def test_exposure_settings(repo):
    with live_server(repo, metrics_enabled=False, docs_enabled=False) as s:
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert httpx.get(s.url + path).status_code == 404, path
        assert httpx.post(s.url + "/v2/models/affine/infer", json=BODY).status_code == 200  # no keys configured


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_client_disconnect_removes_its_queued_work(repo):
    with live_server(repo) as s:
        big, big_headers = binary_body(np.ones((512, 1024), np.float32))
        small, headers = binary_body(np.ones((1, 1024), np.float32))
        batcher = s.service.repository.get("slow").default_graph.batcher

        def queued_small() -> int:  # 1-row requests waiting in the batcher's queue
            return sum(1 for q in list(batcher._queues.values()) for r in list(q) if r.rows == 1)

        def raw_request(body: bytes, hdrs: dict) -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", s.port))
            head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
            sock.sendall(f"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n"
                         .encode() + body)  # fmt: skip
            return sock

        async def scenario():
            async with httpx.AsyncClient(base_url=s.url, timeout=120) as client:
                blockers = [asyncio.create_task(client.post("/v2/models/slow/infer", content=big, headers=big_headers))
                            for _ in range(3)]  # fmt: skip
                while not batcher.busy:  # one computing, the others queued behind it
                    await asyncio.sleep(0.01)
                gone = [raw_request(small, headers) for _ in range(5)]
                deadline = time.monotonic() + 60
                while queued_small() < 5:
                    assert time.monotonic() < deadline, f"requests never queued ({queued_small()})"
                    await asyncio.sleep(0.01)
                for sock in gone:  # the clients give up while their requests are still queued
                    sock.close()
                while queued_small():
                    assert time.monotonic() < deadline, "queued work was not withdrawn"
                    await asyncio.sleep(0.01)
                answers = await asyncio.gather(*blockers)
                return [a.status_code for a in answers], (await client.get("/metrics")).text

        codes, text = asyncio.run(scenario())
    assert codes == [200, 200, 200]
    assert metric(text, "dendrite_rejected_requests_total", model="slow", reason="cancelled") == 5
    assert metric(text, "dendrite_requests_total", model="slow", outcome="cancelled") == 5
    # only the three 512-row blockers were computed; the 5 abandoned rows never were
    assert metric(text, "dendrite_inference_count_total", model="slow") == 3 * 512
