"""The task registry: a toy task added through exactly the steps of docs/adding-a-task.md (its package,
tests/tasks/toy_task/; one line in ``registry.BUILTIN``; its messages, compiled from toy.proto as
`make protos` compiles predict.proto) is served over REST and gRPC, reached by the client and the CLI,
validated in config.yaml and given bench payloads, with no other code changed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import httpx
import pytest

from app.cli import main
from app.client import ClientError, GrpcClient, RestClient, build_request
from app.protocol.model_config import ConfigError
from app.tasks import registry
from testkit.models import affine_model, write_model
from tests.support import live_server

TOY = Path(__file__).parent / "toy_task"
TOY_MODEL = {"task": "toy", "max_batch_size": 8, "parameters": {"outputs": "y"}}  # y = 2x + 1


def compile_toy_proto(out: Path) -> None:
    """Step 3: protoc on the task's messages, and their module imported (as messages.py imports predict_pb2)."""
    from grpc_tools import protoc

    assert protoc.main(["grpc_tools.protoc", f"-I{TOY}", f"--python_out={out}", "toy.proto"]) == 0
    if "toy_pb2" not in sys.modules:  # the default descriptor pool takes a file once per process
        spec = importlib.util.spec_from_file_location("toy_pb2", out / "toy_pb2.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["toy_pb2"] = module


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy-repo")
    write_model(root, "toy-affine", affine_model(width=1), TOY_MODEL)
    return root


@pytest.fixture(scope="module")
def toy_server(repo, tmp_path_factory):
    compile_toy_proto(tmp_path_factory.mktemp("toy-generated"))
    with pytest.MonkeyPatch.context() as mp:
        # Step 2: the registry line. _tasks starts empty so that BUILTIN is read again; the original
        # (the built-in tasks only) comes back after the module.
        mp.setattr(registry, "BUILTIN", (*registry.BUILTIN, "tests.tasks.toy_task"))
        mp.setattr(registry, "_tasks", {})
        with live_server(repo, grpc=True) as server:
            yield server


def test_config_names_registered_tasks_only(repo, monkeypatch):
    # without the registry line, the toy model's config.yaml names a task this server does not have
    monkeypatch.setattr(registry, "BUILTIN", tuple(m for m in registry.BUILTIN if m != "tests.tasks.toy_task"))
    monkeypatch.setattr(registry, "_tasks", {})
    config = repo / "toy-affine" / "config.yaml"
    with pytest.raises(ConfigError, match="'toy' is not a task of this server .*tasks: generic, image, sentiment"):
        registry.load_model_config(config, "toy-affine")
    from tests.tasks.toy_task import TASK

    registry.register(TASK)  # the other way in (a plug-in): the same declaration
    assert registry.load_model_config(config, "toy-affine").task == "toy"


def test_rest(toy_server):
    models = httpx.get(f"{toy_server.url}/v2/repository/index", timeout=30).json()
    assert [(m["name"], m["state"]) for m in models] == [("toy-affine", "READY")]
    r = httpx.post(f"{toy_server.url}/predict/toy", json={"values": [1, 2.5, -3]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"model": "toy-affine", "version": "1", "results": [3.0, 6.0, -5.0]}

    # validated by the task's own request model, worded as for every task
    r = httpx.post(f"{toy_server.url}/predict/toy", json={"values": []}, timeout=30)
    assert r.status_code == 400 and "values" in r.json()["error"], r.text
    r = httpx.post(f"{toy_server.url}/predict/toy", json={"values": ["x"]}, timeout=30)
    assert r.status_code == 400 and "values.0" in r.json()["error"], r.text
    r = httpx.post(f"{toy_server.url}/predict/toy", content=b"values=1", timeout=30,
                   headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 415 and "/predict/toy takes application/json" in r.json()["error"], r.text
    # the other tasks' routes exist; this repository just has no model for them
    r = httpx.post(f"{toy_server.url}/predict/sentiment", json={"texts": ["hi"]}, timeout=30)
    assert r.status_code == 404 and "no model for task 'sentiment'" in r.json()["error"], r.text
    r = httpx.post(f"{toy_server.url}/predict/nope", json={}, timeout=30)
    assert r.status_code == 404 and "the tasks are image, sentiment, translation, recommendation, toy" in r.text

    # typed in the OpenAPI schema by the task's models
    schema = httpx.get(f"{toy_server.url}/openapi.json", timeout=30).json()
    operation = schema["paths"]["/predict/toy"]["post"]
    assert operation["summary"] == "The toy model's value of each number"
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ToyRequest"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ToyResponse"}


def test_client_rest_and_grpc(toy_server):
    request = build_request("toy", values=[0.5, 4])
    rest = RestClient(toy_server.url).predict("toy", request)
    grpc_client = GrpcClient(toy_server.grpc_target)
    try:
        answer = grpc_client.predict("toy", request)
        assert answer == rest and answer.results == [2.0, 9.0] and answer.model == "toy-affine"
        with pytest.raises(ClientError) as refused:
            grpc_client.predict("toy", build_request("toy", values=[0.0] * 1000))  # over the item limit
        assert refused.value.status == "INVALID_ARGUMENT", refused.value  # REST: 413
        assert refused.value.message.startswith("1000 items in one request, over the limit of 64")
    finally:
        grpc_client.close()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_cli(capsys, toy_server, transport):
    target = ["--grpc", "--grpc-target", toy_server.grpc_target] if transport == "grpc" else ["--url", toy_server.url]
    assert main(["predict", "toy", "1", "2.5", *target]) == 0
    assert capsys.readouterr().out == "toy-affine v1\n1 -> 3\n2.5 -> 6\n"
    assert main(["predict", "toy", "--json", "7", *target]) == 0
    assert '"results": [\n    15.0\n  ]' in capsys.readouterr().out


def test_bench_payloads(toy_server, repo):
    from bench.tasks import check_task, task_payloads

    rest, method, grpc_bodies = task_payloads("toy", {"name": "toy-affine", "dir": repo / "toy-affine", "version": "1"})
    assert method == "/dendrite.v1.Predict/Toy" and len(rest) == len(grpc_bodies) == 8
    assert rest[3] == {"model": "toy-affine", "values": [3.0]}
    assert check_task(toy_server, "toy", rest[3], method, grpc_bodies[3]) == '{"results": [7.0]}'
