"""A model whose version a trainer is still producing, against a live server (REST, gRPC, CLI,
metrics): PENDING with the trainer's progress, 503 + Retry-After saying it is training, strict
readiness 503 naming it until it is READY, then 200; non-strict ready throughout. The trainer is a
stub: this test process writes the progress report (``app.repository.training``) a real one writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.cli import main
from app.repository.training import STATUS_FILE, clear_status, read_status, write_status
from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc
from testkit.models import affine_model, save, write_model
from tests.support import live_server

TRAINEE = "trainee"
POLL = 0.2
BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
TRITONCLIENT_PYTHON = os.environ.get("DENDRITE_TRITONCLIENT_PYTHON")


def repository(root: Path) -> Path:
    write_model(root, "affine", affine_model(), {"max_batch_size": 4})
    write_model(root, TRAINEE, None, {"max_batch_size": 4}, versions=())  # config.yaml, no version yet
    write_status(root / TRAINEE, "training", phase="trainee epoch 1/2", step=1200, total=8000, eta_seconds=840)
    return root


def publish(root: Path) -> None:
    """What the trainer does at the end: the version folder appears, then the report goes."""
    staging = root / TRAINEE / ".staging"
    save(affine_model(), staging / "model.onnx")
    os.rename(staging, root / TRAINEE / "1")
    clear_status(root / TRAINEE)


def wait_for(check, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


def index_row(server, name: str) -> dict:
    (row,) = [r for r in httpx.get(f"{server.url}/v2/repository/index").json() if r["name"] == name]
    return {key: row[key] for key in ("name", "state", "reason")}


def test_the_report_is_atomic_and_describes_progress(tmp_path):
    status = write_status(tmp_path, "training", phase="x epoch 1/3", step=1200, total=8000, eta_seconds=840)
    assert read_status(tmp_path) == status and [p.name for p in tmp_path.iterdir()] == [STATUS_FILE]
    assert status.describe() == "training: x epoch 1/3, step 1200/8000, about 14 min left"
    assert write_status(tmp_path, "queued", message="sentiment-minilm").describe() == \
        "queued for training behind sentiment-minilm"  # fmt: skip
    assert write_status(tmp_path, "failed", message="out of memory").describe() == "training failed: out of memory"
    (tmp_path / STATUS_FILE).write_text("{half a rep")
    assert read_status(tmp_path) is None


def test_pending_model_then_ready_with_strict_readiness(tmp_path, capsys):
    root = repository(tmp_path)
    with live_server(root, grpc=True, model_control_mode="poll", repository_poll_seconds=POLL) as s, \
            grpc.insecure_channel(s.grpc_target) as channel:  # fmt: skip
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        progress = "training: trainee epoch 1/2, step 1200/8000, about 14 min left"

        # the index, the status panel's source and the CLI all say it is training, with progress
        assert index_row(s, TRAINEE) == {"name": TRAINEE, "state": "PENDING", "reason": progress}
        status = httpx.get(f"{s.url}/status").json()
        assert [(m["state"], m["reason"]) for m in status["models"] if m["name"] == TRAINEE] == [("PENDING", progress)]
        assert main(["models", "--url", s.url]) == 0
        (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(TRAINEE)]
        assert line.split()[:3] == [TRAINEE, "-", "PENDING"] and line.endswith(progress)

        index = stub.RepositoryIndex(pb.RepositoryIndexRequest())
        assert [(m.name, m.version, m.state, m.reason) for m in index.models] == [
            ("affine", "1", "READY", ""), (TRAINEE, "", "PENDING", progress)]
        assert [m.name for m in stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True)).models] == ["affine"]

        # a request to it: 503, Retry-After, and what is going on (not "not found")
        r = httpx.post(f"{s.url}/v2/models/{TRAINEE}/infer", json=BODY)
        assert r.status_code == 503 and r.json() == {"error": f"model '{TRAINEE}' is being trained ({progress})"}
        assert 1 <= int(r.headers["retry-after"]) <= 60
        with pytest.raises(grpc.RpcError) as err:
            tensor = pb.ModelInferRequest.InferInputTensor(
                name="x", datatype="FP32", shape=[1, 4], contents=pb.InferTensorContents(fp32_contents=[1, 2, 3, 4]))
            stub.ModelInfer(pb.ModelInferRequest(model_name=TRAINEE, inputs=[tensor]), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "is being trained" in err.value.details()
        assert httpx.post(f"{s.url}/v2/models/nope/infer", json=BODY).status_code == 404

        # per-model readiness is exact: ready false for a known model, NOT_FOUND only for an unknown one
        assert stub.ModelReady(pb.ModelReadyRequest(name=TRAINEE)).ready is False
        assert stub.ModelReady(pb.ModelReadyRequest(name="affine")).ready is True
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelReady(pb.ModelReadyRequest(name="nope"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        r = httpx.get(f"{s.url}/v2/models/{TRAINEE}/ready")
        assert r.status_code == 503 and "being trained" in r.json()["error"]

        # strict readiness: not ready while it trains, naming it
        r = httpx.get(f"{s.url}/v2/health/ready")
        assert r.status_code == 503 and r.json() == {
            "ready": False, "error": f"waiting for 1 of 2 model(s) to be READY: {TRAINEE} (PENDING: {progress})"}
        assert stub.ServerReady(pb.ServerReadyRequest()).ready is False
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == not_serving
        assert httpx.get(f"{s.url}/").status_code == 200  # the playground still works

        # every answer counted, the unknown model under model=""
        metrics = httpx.get(f"{s.url}/metrics").text
        counted = f'dendrite_requests_total{{model="{TRAINEE}",outcome="training",protocol="rest",version=""}} 1.0'
        assert counted in metrics
        assert 'dendrite_requests_total{model="",outcome="not_found",protocol="rest",version=""} 1.0' in metrics
        assert f'dendrite_model_state{{model="{TRAINEE}",state="PENDING"}} 1.0' in metrics

        # the trainer publishes: READY, and the server with it
        publish(root)
        assert wait_for(lambda: httpx.get(f"{s.url}/v2/health/ready").status_code == 200), index_row(s, TRAINEE)
        assert httpx.get(f"{s.url}/v2/health/ready").json() == {"ready": True}
        assert index_row(s, TRAINEE)["state"] == "READY"
        assert stub.ServerReady(pb.ServerReadyRequest()).ready is True
        serving = health_pb2.HealthCheckResponse.SERVING
        assert wait_for(lambda: health.Check(health_pb2.HealthCheckRequest(service="")).status == serving, 5)
        assert httpx.post(f"{s.url}/v2/models/{TRAINEE}/infer", json=BODY).status_code == 200


def test_non_strict_readiness_is_ready_throughout(tmp_path):
    root = repository(tmp_path)
    with live_server(root, model_control_mode="poll", repository_poll_seconds=POLL, strict_readiness=False) as s:
        assert httpx.get(f"{s.url}/v2/health/ready").json() == {"ready": True}
        assert httpx.get(f"{s.url}/v2/models/{TRAINEE}/ready").status_code == 503
        publish(root)
        assert wait_for(lambda: index_row(s, TRAINEE)["state"] == "READY")
        assert httpx.get(f"{s.url}/v2/health/ready").status_code == 200


def test_queued_failed_and_vanished_trainers(tmp_path):
    root = repository(tmp_path)
    write_model(root, "broken", b"not onnx", {"max_batch_size": 4})
    with live_server(root, model_control_mode="poll", repository_poll_seconds=POLL) as s:
        write_status(root / TRAINEE, "queued", message="sentiment-minilm")
        assert index_row(s, TRAINEE) == {"name": TRAINEE, "state": "PENDING",
                                         "reason": "queued for training behind sentiment-minilm"}  # fmt: skip
        write_status(root / TRAINEE, "failed", message="CUDA out of memory")
        assert index_row(s, TRAINEE) == {"name": TRAINEE, "state": "UNAVAILABLE",
                                         "reason": "training failed: CUDA out of memory"}  # fmt: skip
        r = httpx.post(f"{s.url}/v2/models/{TRAINEE}/infer", json=BODY)
        assert r.status_code == 503 and "retry-after" not in r.headers
        assert r.json() == {"error": f"model '{TRAINEE}' is not available: training failed: CUDA out of memory"}

        gone = subprocess.Popen(["true"])
        gone.wait()
        write_status(root / TRAINEE, "training", step=5, total=10)
        report = read_status(root / TRAINEE)
        report.pid = gone.pid  # a trainer that was killed without a word
        (root / TRAINEE / STATUS_FILE).write_text(json.dumps(report.__dict__))
        assert index_row(s, TRAINEE)["reason"] == f"training stopped: trainer process {gone.pid} has ended"
        assert index_row(s, TRAINEE)["state"] == "UNAVAILABLE"

        # a real failure keeps the strict server not ready and is named
        ready = httpx.get(f"{s.url}/v2/health/ready").json()
        assert ready["ready"] is False and "broken (UNAVAILABLE" in ready["error"] and TRAINEE in ready["error"]


@pytest.mark.skipif(not TRITONCLIENT_PYTHON, reason="set DENDRITE_TRITONCLIENT_PYTHON to a Python that has "
                    "tritonclient[grpc,http] (its own venv: it needs protobuf < 7); make test makes one")  # fmt: skip
def test_tritonclient_is_model_ready(tmp_path):
    root = repository(tmp_path)
    probe = Path(__file__).parent / "transports" / "grpc" / "tritonclient_ready_probe.py"
    with live_server(root, grpc=True) as s:
        done = subprocess.run([TRITONCLIENT_PYTHON, str(probe), s.grpc_target, f"127.0.0.1:{s.port}", "affine",
                               TRAINEE], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr



def test_predict_to_a_default_model_in_training_says_so(tmp_path, capsys):
    """What `make serve` starts with: the committed config.yaml, no version, the trainer at work."""
    root = Path(__file__).resolve().parents[1]
    model = tmp_path / "sentiment-minilm"
    model.mkdir()
    shutil.copy(root / "models" / "sentiment-minilm" / "config.yaml", model / "config.yaml")
    write_status(model, "queued", message="fashion-cnn")
    with live_server(tmp_path, grpc=True, model_control_mode="poll", repository_poll_seconds=POLL) as s:
        r = httpx.post(f"{s.url}/predict/sentiment", json={"texts": ["great"]})
        message = "model 'sentiment-minilm' is being trained (queued for training behind fashion-cnn)"
        assert r.status_code == 503 and r.json() == {"error": message} and int(r.headers["retry-after"]) >= 1
        for transport in (["--url", s.url], ["--grpc", "--grpc-target", s.grpc_target]):
            assert main(["predict", "sentiment", "great", *transport]) == 1
            assert message in capsys.readouterr().err


def test_strict_readiness_counts_the_models_of_the_control_mode(tmp_path):
    """none: the models found at start; poll: the repository as it is now (a new folder counts at once)."""
    write_model(tmp_path, "affine", affine_model(), {"max_batch_size": 4})
    with live_server(tmp_path) as s:
        write_model(tmp_path, "late", None, {"max_batch_size": 4}, versions=())
        assert httpx.get(f"{s.url}/v2/health/ready").status_code == 200  # not served in none mode: not awaited
    with live_server(tmp_path, model_control_mode="poll", repository_poll_seconds=60) as s:
        (tmp_path / "later").mkdir()
        (tmp_path / "later" / "config.yaml").write_text("max_batch_size: 4\n")
        r = httpx.get(f"{s.url}/v2/health/ready")
        waiting = r.json()["error"]
        assert r.status_code == 503 and "late (UNAVAILABLE" in waiting and "later (UNAVAILABLE: not loaded)" in waiting
