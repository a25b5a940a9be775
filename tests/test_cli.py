"""``dendrite predict`` and ``dendrite models`` against a live server (REST and gRPC) on
smoke-trained models: each task's human-readable output, ``--json`` equal to what the REST API
itself answers, the API's own error messages with exit code 1, and no torch in the client."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import httpx
import pytest
from PIL import Image

from app.cli import main
from testkit.models import affine_model, write_model
from tests.support import live_server

TRANSPORTS = ["rest", "grpc"]


@pytest.fixture(scope="module")
def server(smoke_repository):
    with live_server(smoke_repository, grpc=True) as s:
        yield s


@pytest.fixture(scope="module")
def china_jpg(tmp_path_factory):
    from sklearn.datasets import load_sample_image

    path = tmp_path_factory.mktemp("photos") / "china.jpg"
    Image.fromarray(load_sample_image("china.jpg")).save(path, "JPEG")
    return path


def dendrite(capsys, server, transport: str, *argv: str) -> tuple[int, str, str]:
    """Run ``dendrite <argv>`` in-process against ``server`` over ``transport``."""
    target = ["--grpc", "--grpc-target", server.grpc_target] if transport == "grpc" else ["--url", server.url]
    code = main([*argv, *target])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def api(server, task: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/predict/{task}", json=body, timeout=120)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_image(capsys, server, transport, china_jpg):
    code, out, _ = dendrite(capsys, server, transport, "predict", "image", str(china_jpg), "--top-k", "3")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "imagenet-efficientnet-lite0 v1" and lines[1] == str(china_jpg)
    labels = [line.split("  ")[1].strip() for line in lines[2:]]
    assert len(labels) == 3 and {"palace", "monastery", "temple", "pagoda", "bell tower"} & set(labels), out

    code, out, _ = dendrite(capsys, server, transport, "predict", "image", str(china_jpg), "--top-k", "3", "--json")
    expected = api(server, "image", {"images": [base64.b64encode(china_jpg.read_bytes()).decode()], "top_k": 3})
    assert code == 0 and json.loads(out) == expected.json()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sentiment(capsys, server, transport):
    texts = ["I loved this film.", "The food was cold and the staff rude."]
    code, out, _ = dendrite(capsys, server, transport, "predict", "sentiment", *texts)
    assert code == 0
    expected = api(server, "sentiment", {"texts": texts}).json()
    lines = out.splitlines()
    assert lines[0] == f"sentiment-minilm v{expected['version']}"
    for i, (text, prediction) in enumerate(zip(texts, expected["predictions"])):
        label_line, probabilities_line = lines[1 + 2 * i], lines[2 + 2 * i]
        assert label_line.split()[0] == prediction["label"] and label_line.endswith(text)
        assert all(label in probabilities_line for label in prediction["probabilities"])

    code, out, _ = dendrite(capsys, server, transport, "predict", "sentiment", *texts, "--json")
    assert code == 0 and json.loads(out) == expected


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_translation(capsys, server, transport):
    texts = ["Das ist ein gutes Buch.", "Wo ist der Bahnhof?"]
    code, out, _ = dendrite(capsys, server, transport, "predict", "translation", *texts, "--beam-size", "2", "--json")
    expected = api(server, "translation", {"texts": texts, "beam_size": 2}).json()
    assert code == 0 and json.loads(out) == expected

    code, out, _ = dendrite(capsys, server, transport, "predict", "translation", *texts, "--beam-size", "2")
    assert code == 0
    assert out.splitlines() == ["translation-de-en v1"] + [
        line for text, t in zip(texts, expected["translations"]) for line in (text, f"  -> {t['text']}")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_recommendation(capsys, server, transport):
    code, out, _ = dendrite(capsys, server, transport, "predict", "recommendation", "2", "-k", "4")
    expected = api(server, "recommendation", {"user_id": "2", "k": 4}).json()
    assert code == 0 and not expected["cold_start"]
    lines = out.splitlines()
    assert lines[0] == "recommendation-neumf v1, for user 2"
    assert [line.split(". ", 1)[1].rsplit("  (item", 1)[0] for line in lines[1:]] == [i["title"] for i in expected["items"]]

    code, out, _ = dendrite(capsys, server, transport, "predict", "recommendation", "2", "-k", "4", "--json")
    assert code == 0 and json.loads(out) == expected


@pytest.mark.parametrize("transport, status", [("rest", 404), ("grpc", "NOT_FOUND")])
def test_errors_carry_the_apis_message(capsys, server, transport, status):
    message = api(server, "sentiment", {"texts": ["hi"], "model": "nope"}).json()["error"]
    code, out, err = dendrite(capsys, server, transport, "predict", "sentiment", "hi", "--model", "nope")
    assert code == 1 and out == "" and message in err and str(status) in err

    code, out, _ = dendrite(capsys, server, transport, "predict", "sentiment", "hi", "--model", "nope", "--json")
    assert code == 1 and json.loads(out) == {"error": message, "status": status}


def test_invalid_request_is_worded_as_the_api_words_it(capsys, server):
    message = api(server, "recommendation", {"user_id": "2", "k": 0}).json()["error"]
    code, _, err = dendrite(capsys, server, "grpc", "predict", "recommendation", "2", "-k", "0")
    assert code == 1 and err.strip().endswith(message)


def test_unreachable_server_and_missing_photo(capsys, tmp_path):
    assert main(["predict", "sentiment", "hi", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["predict", "image", str(tmp_path / "missing.jpg"), "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_timeout_says_it_timed_out(capsys, server, transport, china_jpg):
    """The server is up: an answer later than ``--timeout`` is a timeout, not "cannot reach"."""
    code, out, err = dendrite(capsys, server, transport, "predict", "image", str(china_jpg), "--timeout", "0.001")
    assert code == 1 and out == ""
    assert "no answer within the 0.001 s timeout (--timeout)" in err and "cannot reach" not in err, err


def test_url_without_scheme_means_http(capsys, server):
    assert main(["models", "--url", f"127.0.0.1:{server.port}"]) == 0
    assert capsys.readouterr().out.startswith("MODEL")


def test_a_reader_that_stops_early_ends_it_quietly(server):
    """``dendrite models | head -2``: the pipe is closed before the table is written; exit 141 as for
    SIGPIPE, and no traceback or "Exception ignored" on stderr."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "app", "models", "--url", server.url], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == ""


def test_models_lists_the_repository(capsys, server):
    assert main(["models", "--url", server.url]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["MODEL", "VERSION", "STATE", "PROVIDERS", "REASON"]
    index = httpx.get(server.url + "/v2/repository/index").json()
    assert [line.split()[:3] for line in table[1:]] == [[r["name"], r["version"], r["state"]] for r in index]
    assert main(["models", "--url", server.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == index


def test_api_key(capsys, tmp_path):
    write_model(tmp_path, "affine", affine_model(), {"max_batch_size": 4})
    with live_server(tmp_path, api_keys=["s3cret"]) as keyed:
        message = httpx.get(keyed.url + "/v2/repository/index").json()["error"]
        assert main(["models", "--url", keyed.url]) == 1
        assert message in capsys.readouterr().err
        assert main(["models", "--url", keyed.url, "--api-key", "s3cret"]) == 0
        assert "affine" in capsys.readouterr().out


def test_the_client_imports_neither_torch_nor_onnxruntime(server):
    """``python -m app predict`` end to end in a fresh interpreter, which then lists what it imported."""
    script = (
        "import sys, runpy; sys.argv = ['dendrite', 'predict', 'sentiment', 'fine', '--json', '--url', sys.argv[1]];\n"
        "try: runpy.run_module('app', run_name='__main__')\n"
        "except SystemExit as e: print('EXIT', e.code, [m for m in ('torch', 'onnxruntime') if m in sys.modules])"
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, server.url], capture_output=True, text=True, timeout=120)
    body, _, exit_line = done.stdout.rpartition("EXIT")
    assert json.loads(body)["model"] == "sentiment-minilm"
    assert exit_line.strip() == "0 []", done.stderr
