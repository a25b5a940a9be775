"""Greedy translation decoded inside ONNX Runtime (the ``greedy`` graph) answers what the Python decode
loop answers, through a live server, with one batched graph run per request instead of one per token."""

from __future__ import annotations

import httpx
import pytest

from testkit.metrics import metric, parse_metrics
from testkit.models import COPY_WORDS, write_copying_translation
from tests.support import live_server

TEXTS = [" ".join(COPY_WORDS[i : i + n]) for i, n in ((0, 3), (5, 1), (10, 7), (20, 12))]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("greedy")
    write_copying_translation(repo, "in-graph", greedy=True, max_output_length=16)
    write_copying_translation(repo, "loop", greedy=True, decoding="python", max_output_length=16)
    write_copying_translation(repo, "no-graph", max_output_length=16)
    # a version exported before greedy.onnx existed, under a config that lists the graph
    (write_copying_translation(repo, "older", greedy=True, max_output_length=16) / "1" / "greedy.onnx").unlink()
    with live_server(repo) as s:
        yield s


def translate(server, model: str, **body) -> dict:
    r = httpx.post(f"{server.url}/predict/translation", json={"model": model, **body}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def rows(server, model: str) -> float:
    return metric(parse_metrics(httpx.get(f"{server.url}/metrics", timeout=10).text),
                  "dendrite_inference_count_total", model=model)  # fmt: skip


@pytest.mark.parametrize("options", [{}, {"max_length": 2}, {"max_length": 16}])
def test_same_translations_as_the_decode_loop(server, options):
    models = ("in-graph", "loop", "no-graph", "older")
    answers = {m: translate(server, m, texts=TEXTS, **options)["translations"] for m in models}
    assert answers["in-graph"] == answers["loop"] == answers["no-graph"] == answers["older"]
    limit = options.get("max_length")
    expected = [" ".join(t.split()[:limit]) if limit else t for t in TEXTS]
    assert [a["text"] for a in answers["in-graph"]] == expected


def test_one_graph_run_per_request(server):
    before = {m: rows(server, m) for m in ("in-graph", "loop", "older")}
    for model in before:
        translate(server, model, texts=TEXTS)
    # in the graph: the four sources are four rows of one run; the loop runs the encoder, then the
    # decoder step once per output position (13 for the longest source) over the rows still running
    assert rows(server, "in-graph") - before["in-graph"] == len(TEXTS)
    assert rows(server, "loop") - before["loop"] > 4 * len(TEXTS)
    assert rows(server, "older") - before["older"] > 4 * len(TEXTS)  # no greedy.onnx: the loop


def test_a_version_without_the_graph_loads(server):
    assert httpx.get(f"{server.url}/v2/models/older", timeout=30).json()["state"] == "READY"
    assert set(server.service.repository.get("older", None).graphs) == {"encoder", "decoder_step"}
    assert set(server.service.repository.get("in-graph", None).graphs) == {"encoder", "decoder_step", "greedy"}


def test_beam_search_still_takes_the_loop(server):
    beam = translate(server, "in-graph", texts=TEXTS[:2], beam_size=3)["translations"]
    assert [t["text"] for t in beam] == TEXTS[:2]


def test_a_bad_decoding_parameter_fails_the_load(tmp_path):
    write_copying_translation(tmp_path, "bad", greedy=True, decoding="quantum")
    with live_server(tmp_path) as s:
        index = httpx.post(f"{s.url}/v2/repository/index", timeout=30).json()
    (row,) = index
    assert row["state"] == "UNAVAILABLE" and "parameters.decoding must be one of ('graph', 'python')" in row["reason"]
