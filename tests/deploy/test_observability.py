"""End to end: the real server, a real Prometheus on the shipped config and rules, known
traffic, then every PromQL expression of the shipped dashboard and alert rules evaluated
against that Prometheus.

- `python -m app serve` on free 127.0.0.1 ports, repository: one tiny ONNX model built here.
- Prometheus (Debian's binary) on deploy/prometheus/prometheus.yml with only the dendrite
  job's discovery replaced by a static 127.0.0.1 target and the intervals shortened; the rule
  files are the shipped ones, loaded as they are.
- Two models never become ready: one whose ONNX file is corrupt and one whose version a trainer
  (a stub: a progress report written here) is still producing. The rule files are rendered with
  DendriteModelNotReady's `for:` shortened so it can fire within the test.
- Traffic: REST successes (concurrent, so batches form), bad requests (400 -> client_error),
  requests with an already-expired deadline (504 -> timeout, rejected{reason="deadline"}),
  gRPC ModelInfer successes (protocol="grpc"), and requests to an unknown model (not_found), the
  corrupt one (unavailable) and the one in training (training).
- Checks: Prometheus' counts equal the traffic sent, every outcome sent is there and no `_created`
  series exists; DendriteModelNotReady fires for both never-ready models, and only for them;
  every dashboard query (template variables
  substituted) is valid, returns series, and its legend / table columns name labels those
  series have; every variable query finds the model and instance; every alert expression is
  valid, Prometheus evaluated every rule without error, and every alert's signals return series;
  every query the KEDA ScaledObject scales on gives one unlabelled value and its signals series.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy import promql
from tests.deploy.tools import DEPLOY, ROOT, python_module, tool

pytestmark = pytest.mark.timeout(180)

MODEL = "tiny"
BROKEN, TRAINEE = "broken", "trainee"  # never READY: a corrupt ONNX file; a version still being trained
N_OK, N_BAD, N_LATE, N_GRPC = 120, 7, 5, 10
N_UNKNOWN, N_BROKEN, N_TRAINEE = 3, 2, 4
NOT_READY_FOR = "2s"  # DendriteModelNotReady's `for:` in the rendered rules (shipped: 5m)
RATE_WINDOW = "1m"  # stands in for $__rate_interval: covers every sample of this short test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_repository(root: Path) -> Path:
    python_module("onnx")
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])], MODEL,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array(2.0, np.float32), "k")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    repo = root / "models"
    (repo / MODEL / "1").mkdir(parents=True)
    onnx.save(model, str(repo / MODEL / "1" / "model.onnx"))
    (repo / MODEL / "config.yaml").write_text(yaml.safe_dump({
        "max_batch_size": 8,
        "dynamic_batching": {"max_queue_delay_microseconds": 5000},
    }))  # fmt: skip
    for name in (BROKEN, TRAINEE):
        (repo / name).mkdir()
        (repo / name / "config.yaml").write_text(yaml.safe_dump({"max_batch_size": 8}))
    (repo / BROKEN / "1").mkdir()
    (repo / BROKEN / "1" / "model.onnx").write_bytes(b"not an onnx file")
    from app.repository.training import write_status

    # this test process stands in for the trainer: its pid is alive for the server's whole life
    write_status(repo / TRAINEE, "training", phase="trainee epoch 1/1", step=10, total=100, eta_seconds=600)
    return repo


def _render_rules(tmp: Path) -> Path:
    """The shipped rule files with DendriteModelNotReady's `for:` shortened (nothing else changed)."""
    out = tmp / "rules"
    out.mkdir()
    for path in (DEPLOY / "prometheus" / "rules").glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == "DendriteModelNotReady":
                    rule["for"] = NOT_READY_FOR
        (out / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _wait(url: str, proc: subprocess.Popen, what: str, log: Path, timeout: float = 40) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} not ready at {url} after {timeout}s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _prometheus_config(tmp: Path, target: str, prom_port: int) -> Path:
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(_render_rules(tmp) / "*.yml")]
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    assert "dendrite" in jobs, "the shipped config has no dendrite job (the rules and dashboard select it)"
    job = jobs["dendrite"]
    for key in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
        del job[key]
    job.update(static_configs=[{"targets": [target]}], scrape_interval="1s", scrape_timeout="1s")
    if "prometheus" in jobs:
        jobs["prometheus"]["static_configs"] = [{"targets": [f"127.0.0.1:{prom_port}"]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prometheus = tool("prometheus")
    tmp = tmp_path_factory.mktemp("observability")
    repo = _write_repository(tmp)
    http_port, grpc_port, prom_port = _free_port(), _free_port(), _free_port()
    target = f"127.0.0.1:{http_port}"

    env = {k: v for k, v in os.environ.items() if not k.startswith("DENDRITE_")}
    env.update(DENDRITE_HOST="127.0.0.1", DENDRITE_HTTP_PORT=str(http_port), DENDRITE_GRPC_PORT=str(grpc_port),
               DENDRITE_MODEL_REPOSITORY=str(repo), DENDRITE_MODEL_CONTROL_MODE="none",
               DENDRITE_LOG_LEVEL="warning")  # fmt: skip
    server_log = tmp / "server.log"
    prom_log = tmp / "prometheus.log"
    procs: list[subprocess.Popen] = []
    try:
        with server_log.open("w") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env,
                                          stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
        config = _prometheus_config(tmp, target, prom_port)
        with prom_log.open("w") as out:
            procs.append(subprocess.Popen([
                prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
            ], cwd=tmp, stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
        base = f"http://{target}"
        # strict readiness: the server as a whole never turns ready here, the tiny model does
        _wait(f"{base}/v2/models/{MODEL}/ready", procs[0], "dendrite", server_log)
        prom = f"http://127.0.0.1:{prom_port}"
        _wait(f"{prom}/-/ready", procs[1], "prometheus", prom_log)
        _send_traffic(base, grpc_port)
        _wait_for_scrape(prom, target)
        yield {"prom": prom, "target": target, "server_log": server_log, "base": base}
    finally:
        for p in reversed(procs):
            _stop(p)


def _infer(client: httpx.Client, base: str, body: dict) -> int:
    return client.post(f"{base}/v2/models/{MODEL}/infer", json=body).status_code


def _send_grpc(grpc_port: int) -> None:
    import grpc

    from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
    from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc

    tensor = pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP32", shape=[1, 4], contents=pb.InferTensorContents(fp32_contents=[1, 2, 3, 4]))
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(N_GRPC):
            reply = stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL, inputs=[tensor]), timeout=10)
            assert reply.model_name == MODEL


def _send_traffic(base: str, grpc_port: int) -> None:
    """Known traffic over ~5 s (several scrapes, so rates are not zero)."""
    ok = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    bad = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    late = {"parameters": {"timeout": 1}, **ok}  # 1 us deadline: expired before it is queued
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(8) as pool:
        statuses: list[int] = []
        for wave in range(5):
            statuses += pool.map(lambda _i: _infer(client, base, ok), range(N_OK // 5))
            if wave < N_BAD:
                statuses.append(_infer(client, base, bad))
            if wave < N_LATE:
                statuses.append(_infer(client, base, late))
            time.sleep(1)
        _send_grpc(grpc_port)
        for _ in range(N_BAD - 5):
            statuses.append(_infer(client, base, bad))
        for name, n in (("no-such-model", N_UNKNOWN), (BROKEN, N_BROKEN), (TRAINEE, N_TRAINEE)):
            statuses += [client.post(f"{base}/v2/models/{name}/infer", json=ok).status_code for _ in range(n)]
    assert statuses.count(200) == N_OK, statuses
    assert statuses.count(400) == N_BAD, statuses
    assert statuses.count(504) == N_LATE, statuses
    assert statuses.count(404) == N_UNKNOWN and statuses.count(503) == N_BROKEN + N_TRAINEE, statuses


def _query(prom: str, expr: str) -> list[dict]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body.get("status") == "success", f"invalid PromQL {expr!r}: {body}"
    return body["data"]["result"]


def _wait_for_scrape(prom: str, target: str, timeout: float = 20) -> None:
    """Until Prometheus holds the final counter values (and at least one rule evaluation ran)."""
    expr = f'sum(dendrite_requests_total{{instance="{target}"}})'
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            result = _query(prom, expr)
        except (httpx.HTTPError, AssertionError):
            result = []
        if result and float(result[0]["value"][1]) >= N_OK + N_BAD + N_LATE + N_GRPC + N_UNKNOWN + N_BROKEN + N_TRAINEE:
            time.sleep(2)  # two more scrapes and rule evaluations
            return
        time.sleep(0.5)
    pytest.fail(f"Prometheus never saw the traffic: {expr} -> {_query(prom, expr)}")


def _variables(target: str) -> dict[str, str]:
    return {"model": MODEL, "instance": target, "datasource": "prometheus", "__rate_interval": RATE_WINDOW,
            "__interval": "5s", "__range": RATE_WINDOW}  # fmt: skip


def test_target_is_up_and_counts_match_traffic(stack):
    prom, target = stack["prom"], stack["target"]
    up = _query(prom, f'up{{job="dendrite", instance="{target}"}}')
    assert up and up[0]["value"][1] == "1", up
    by_outcome = {r["metric"]["outcome"]: float(r["value"][1]) for r in
                  _query(prom, f'sum by (outcome) (dendrite_requests_total{{model="{MODEL}"}})')}  # fmt: skip
    assert by_outcome == {"success": N_OK + N_GRPC, "client_error": N_BAD, "timeout": N_LATE}
    by_protocol = {r["metric"]["protocol"]: float(r["value"][1]) for r in _query(
        prom, f'sum by (protocol) (dendrite_requests_total{{model="{MODEL}", outcome="success"}})')}  # fmt: skip
    assert by_protocol == {"rest": N_OK, "grpc": N_GRPC}
    rejected = {r["metric"]["reason"]: float(r["value"][1]) for r in
                _query(prom, f'sum by (reason) (dendrite_rejected_requests_total{{model="{MODEL}"}})')}  # fmt: skip
    assert rejected == {"deadline": N_LATE}
    rows = _query(prom, f'sum(dendrite_inference_count_total{{model="{MODEL}"}})')
    assert float(rows[0]["value"][1]) == N_OK + N_GRPC  # every successful request computed exactly one row


def test_every_answer_is_counted_with_its_outcome_and_there_are_no_created_series(stack):
    prom, target = stack["prom"], stack["target"]
    by_model_outcome = {(r["metric"].get("model", ""), r["metric"]["outcome"]): float(r["value"][1]) for r in _query(
        prom, f'sum by (model, outcome) (dendrite_requests_total{{instance="{target}"}})')}  # fmt: skip
    assert by_model_outcome == {
        (MODEL, "success"): N_OK + N_GRPC, (MODEL, "client_error"): N_BAD, (MODEL, "timeout"): N_LATE,
        ("", "not_found"): N_UNKNOWN,  # model="" (Prometheus drops empty labels): unknown names add no series
        (BROKEN, "unavailable"): N_BROKEN, (TRAINEE, "training"): N_TRAINEE,
    }  # fmt: skip
    names = {r["metric"]["__name__"] for r in _query(prom, f'{{instance="{target}", __name__=~"dendrite_.+"}}')}
    assert not [n for n in names if n.endswith("_created")], sorted(names)
    assert not httpx.get(f"{stack['base']}/metrics", timeout=10).text.count("_created")


def test_model_state_covers_every_model_and_not_ready_fires_for_those_that_never_load(stack):
    prom, target = stack["prom"], stack["target"]
    states = {r["metric"]["model"]: r["metric"]["state"] for r in
              _query(prom, f'dendrite_model_state{{instance="{target}"}} == 1')}  # fmt: skip
    assert states == {MODEL: "READY", BROKEN: "UNAVAILABLE", TRAINEE: "PENDING"}
    end = time.monotonic() + 30
    while True:
        alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        firing = {a["labels"]["model"] for a in alerts
                  if a["labels"]["alertname"] == "DendriteModelNotReady" and a["state"] == "firing"}  # fmt: skip
        if firing == {BROKEN, TRAINEE} or time.monotonic() > end:
            break
        time.sleep(0.5)
    assert firing == {BROKEN, TRAINEE}, alerts
    ready = httpx.get(f"{stack['base']}/v2/health/ready", timeout=10)
    assert ready.status_code == 503 and BROKEN in ready.json()["error"] and TRAINEE in ready.json()["error"]


DASHBOARD = DEPLOY / "grafana" / "dashboards" / "dendrite.json"


@pytest.mark.parametrize("q", promql.dashboard_queries(DASHBOARD), ids=lambda q: f"{q.panel}/{q.ref}")
def test_dashboard_query_returns_series(stack, q: promql.PanelQuery):
    expr = promql.substitute(q.expr, _variables(stack["target"]))
    assert "$" not in expr, f"unsubstituted variable in {expr!r}"
    result = _query(stack["prom"], expr)
    assert result, f"panel {q.panel!r} {q.ref}: no series for {expr!r}"
    labels = set().union(*(r["metric"].keys() for r in result))
    for name in promql.re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", q.legend):
        assert name in labels, f"panel {q.panel!r}: legend uses {{{{{name}}}}} but the series have {sorted(labels)}"
    for column in q.table_columns:
        assert column in labels, f"table {q.panel!r}: column {column!r} is not a label of {sorted(labels)}"


@pytest.mark.parametrize("name,query", sorted(promql.dashboard_variables(DASHBOARD).items()))
def test_dashboard_variable_finds_values(stack, name: str, query: str):
    expr, label = promql.label_values_query(promql.substitute(query, {"model": MODEL}))
    values = {r["metric"].get(label) for r in _query(stack["prom"], expr)}
    expected = {"model": MODEL, "instance": stack["target"]}[name]
    assert expected in values, f"variable {name}: {expr} -> {values}"


RULES = promql.alert_rules(DEPLOY / "prometheus" / "rules")


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_alert_expression_valid_and_signals_present(stack, rule: promql.AlertRule):
    _query(stack["prom"], rule.expr)  # valid (may be empty: healthy)
    parts = promql.signals(rule.expr)
    assert parts, f"{rule.name}: no signal found in {rule.expr!r}"
    for part in parts:
        assert _query(stack["prom"], part), f"{rule.name}: signal {part!r} returned no series after traffic"


def test_prometheus_evaluated_every_rule_without_error(stack):
    body = httpx.get(f"{stack['prom']}/api/v1/rules", timeout=10).json()
    rules = [r for g in body["data"]["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} == {r.name for r in RULES}
    for r in rules:
        assert r["health"] == "ok", f"{r['name']}: {r.get('lastError')}"
        assert r.get("lastEvaluation", "").startswith("20"), f"{r['name']} never evaluated"
    firing = {r["name"] for r in rules if r.get("state") == "firing"}
    assert not firing & {"DendriteTargetDown", "DendriteNoTargets"}, firing


SCALING = promql.scaling_queries(DEPLOY / "k8s" / "keda" / "scaledobject.yaml")


@pytest.mark.parametrize("name,query", sorted(SCALING.items()))
def test_scaling_query_gives_keda_one_value(stack, name: str, query: str):
    result = _query(stack["prom"], query)
    assert len(result) == 1 and result[0]["metric"] == {}, f"{name}: KEDA needs exactly one unlabelled value: {result}"
    value = float(result[0]["value"][1])
    for part in promql.signals(query):
        assert _query(stack["prom"], part), f"{name}: {part!r} returned no series after traffic"
    if "rate(" in query:  # requests were in progress during the last minute
        assert value > 0, f"{name}: {query} -> {value}"
    else:
        assert value >= 0, f"{name}: {query} -> {value}"
