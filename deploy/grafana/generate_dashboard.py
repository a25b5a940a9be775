"""Generate deploy/grafana/dashboards/dendrite.json (stdlib only).

    python deploy/grafana/generate_dashboard.py          # rewrite the JSON
    python deploy/grafana/generate_dashboard.py --check  # exit 1 if the JSON is stale

The dashboard is plain Grafana JSON (schemaVersion 39, Grafana 10/11); this script only keeps
the 20-odd panels consistent (ids, grid layout, datasource, filters). tests/deploy checks the
committed JSON is what this script writes, and tests/deploy/test_observability.py runs every
PromQL expression in it against a real Prometheus that scraped a real server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "dendrite.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
# Every dendrite_* selector carries these filters (template variables below).
F = 'model=~"$model", instance=~"$instance"'
RATE = "$__rate_interval"
SERVER_SIDE = 'outcome!~"success|client_error|not_found|cancelled"'
CLIENT_SIDE = 'outcome=~"client_error|not_found"'


def _req_rate(extra: str = "", by: str = "model") -> str:
    sel = f"{F}, {extra}" if extra else F
    return f"sum by ({by}) (rate(dendrite_requests_total{{{sel}}}[{RATE}]))"


def _ratio(outcomes: str) -> str:
    # `or ... * 0` keeps a 0 series for models that had traffic but no such outcome yet
    # (a labelled counter child only exists after its first increment).
    return f"({_req_rate(outcomes)} or {_req_rate()} * 0) / {_req_rate()}"


def _quantile(q: float, metric: str, by: str = "model") -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{F}}}[{RATE}])))"
    )


def _mean(metric: str, by: str = "model") -> str:
    return (
        f"sum by ({by}) (rate({metric}_sum{{{F}}}[{RATE}])) / sum by ({by}) (rate({metric}_count{{{F}}}[{RATE}]))"
    )


def target(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> dict:
    t: dict = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "range": not instant}
    if instant:
        t["instant"] = True
    if table:
        t["format"] = "table"
    return t


def timeseries(title: str, description: str, targets: list[dict], unit: str, *, stack: bool = False,
               min0: bool = True) -> dict:  # fmt: skip
    custom: dict = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                    "spanNulls": False}  # fmt: skip
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
        custom["fillOpacity"] = 40
    defaults: dict = {"unit": unit, "custom": custom}
    if min0:
        defaults["min"] = 0
    return {
        "type": "timeseries", "title": title, "description": description, "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }  # fmt: skip


def stat(title: str, description: str, expr: str, unit: str, thresholds: list[tuple[float | None, str]]) -> dict:
    return {
        "type": "stat", "title": title, "description": description, "targets": [target(expr, title)],
        "fieldConfig": {"defaults": {
            "unit": unit, "decimals": 2,
            "thresholds": {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in thresholds]},
        }, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "area", "textMode": "value"},
    }  # fmt: skip


def table(title: str, description: str, expr: str, columns: list[str], value_name: str,
          rename: dict[str, str] | None = None) -> dict:
    keep = {c: True for c in columns} | {"Value": True}
    return {
        "type": "table", "title": title, "description": description,
        "targets": [target(expr, instant=True, table=True)],
        "fieldConfig": {"defaults": {"custom": {"align": "auto"}}, "overrides": []},
        "options": {"showHeader": True, "sortBy": [{"displayName": columns[0], "desc": False}]},
        "transformations": [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "__name__": True, "job": True},
            "includeByName": keep,
            "indexByName": {c: i for i, c in enumerate([*columns, "Value"])},
            "renameByName": {"Value": value_name, **(rename or {})},
        }}],
    }  # fmt: skip


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def panels() -> list[tuple[dict, int, int]]:
    """(panel, width, height) in reading order; rows are full width."""
    p: list[tuple[dict, int, int]] = []
    add = lambda panel, w=12, h=8: p.append((panel, w, h))  # noqa: E731

    add(row("Overview"), 24, 1)
    add(stat("Requests/s", "All inference requests per second, every model and protocol.",
             f"sum(rate(dendrite_requests_total{{{F}}}[{RATE}]))", "reqps", [(None, "blue")]), 5, 4)
    add(stat("Server-side error ratio",
             "Share of requests that failed on the server side (server_error, timeout, unavailable, rejected). "
             "Client errors (4xx) are excluded. Alert DendriteHighErrorRatio fires above 5%.",
             f"(sum(rate(dendrite_requests_total{{{F}, {SERVER_SIDE}}}[{RATE}])) or vector(0))"
             f" / sum(rate(dendrite_requests_total{{{F}}}[{RATE}]))",
             "percentunit", [(None, "green"), (0.01, "orange"), (0.05, "red")]), 5, 4)
    add(stat("p99 latency", "99th percentile of end-to-end request latency inside the server, all models. "
             "SLO: 500 ms (alert DendriteLatencyP99OverSLO).",
             f"histogram_quantile(0.99, sum by (le) (rate(dendrite_request_duration_seconds_bucket{{{F}}}[{RATE}])))",
             "s", [(None, "green"), (0.25, "orange"), (0.5, "red")]), 5, 4)
    add(stat("Models not ready", "Models of the repository that do not serve: PENDING (being trained), "
             "LOADING, UNAVAILABLE (failed load or warm-up, no version). Should be 0; alert DendriteModelNotReady "
             "after 5 minutes.",
             f'count(max by (instance, model) (dendrite_model_state{{{F}, state="READY"}}) == 0) or vector(0)',
             "none", [(None, "green"), (1, "red")]), 5, 4)
    add(stat("Pending requests (total)", "Requests queued and not yet computed, all models and instances.",
             f"sum(dendrite_pending_requests{{{F}}})", "none", [(None, "green"), (100, "orange"), (500, "red")]), 4, 4)

    add(row("Traffic and errors"), 24, 1)
    add(timeseries("Requests/s by model and protocol", "Inference requests per second (any outcome), per model "
                   "and transport (rest, grpc).",
                   [target(_req_rate(by="model, protocol"), "{{model}} {{protocol}}")], "reqps", stack=True))
    add(timeseries("Requests/s by outcome", "success; client_error = bad request (4xx, the caller's fault); "
                   "not_found = unknown model or version (404); rejected = queue full or deadline (503/429); "
                   "timeout; unavailable = model not ready; training = model still being trained (503); "
                   "cancelled = the client went away first; server_error = a bug or runtime failure (500).",
                   [target(_req_rate(by="outcome"), "{{outcome}}")], "reqps", stack=True))
    add(timeseries("Error ratio by model", "Server-side errors (everything but success, client_error, not_found and "
                   "cancelled) and client errors (client_error, not_found), each as a share of the model's requests. "
                   "The alert threshold is 5% server-side. Requests to unknown models count under model \"\".",
                   [target(_ratio(SERVER_SIDE), "{{model}} server-side"),
                    target(_ratio(CLIENT_SIDE), "{{model}} client")], "percentunit"), 24, 8)

    add(row("Latency"), 24, 1)
    add(timeseries("Request latency p50 / p95 / p99", "End-to-end latency inside the server per model, from the "
                   "dendrite_request_duration_seconds histogram (aggregatable across replicas). "
                   "The red line to watch is p99 against the 500 ms SLO.",
                   [target(_quantile(q, "dendrite_request_duration_seconds"), f"{{{{model}}}} p{int(q * 100)}")
                    for q in (0.5, 0.95, 0.99)], "s"))
    add(timeseries("Queue time vs compute time (mean)", "Mean time a request waits in the batcher queue vs mean "
                   "ONNX Runtime time per executed batch. Queue time much larger than compute time: instances "
                   "are saturated (scale out); compute time growing: batches grew or the device slowed.",
                   [target(_mean("dendrite_queue_duration_seconds"), "{{model}} queue"),
                    target(_mean("dendrite_compute_duration_seconds"), "{{model}} compute")], "s"))
    add(timeseries("Queue time vs compute time (p99)", "99th percentile of the same two histograms.",
                   [target(_quantile(0.99, "dendrite_queue_duration_seconds"), "{{model}} queue p99"),
                    target(_quantile(0.99, "dendrite_compute_duration_seconds"), "{{model}} compute p99")], "s"))
    add(timeseries("Latency by protocol (p99)", "p99 per model and transport: a gap between rest and grpc points at "
                   "encoding cost (JSON vs binary).",
                   [target(_quantile(0.99, "dendrite_request_duration_seconds", by="model, protocol"),
                           "{{model}} {{protocol}}")], "s"))

    add(row("Batching and queue"), 24, 1)
    add(timeseries("Mean batch size", "Rows computed per session run: rate(inference_count) / rate(execution_count). "
                   "1 means dynamic batching is not combining requests (low load, or max_queue_delay 0).",
                   [target(f"sum by (model) (rate(dendrite_inference_count_total{{{F}}}[{RATE}])) / "
                           f"sum by (model) (rate(dendrite_execution_count_total{{{F}}}[{RATE}]))", "{{model}}")],
                   "none"), 8, 8)
    add(timeseries("Pending requests", "Requests queued and not yet computed, per model and instance. A steady "
                   "climb means arrivals outpace compute; rejections start at max_queue_size.",
                   [target(f"sum by (model, instance) (dendrite_pending_requests{{{F}}})", "{{model}} {{instance}}")],
                   "none"), 8, 8)
    add(timeseries("Rejections/s by reason", "Requests dropped before compute: queue_full (503 + Retry-After), "
                   "deadline (expired while queued), cancelled (client went away). Alert DendriteRequestsRejected.",
                   [target(f"sum by (model, reason) (rate(dendrite_rejected_requests_total{{{F}}}[{RATE}]))",
                           "{{model}} {{reason}}")], "reqps", stack=True), 8, 8)

    add(row("Models and instances"), 24, 1)
    add(table("Model states", "The state of every model of the repository, also those without a version: "
              "READY, PENDING (a trainer is producing its version), LOADING, UNAVAILABLE, UNLOADING. The reason is "
              "in GET /v2/repository/index.",
              f"dendrite_model_state{{{F}}} == 1", ["instance", "model", "state"], "in state"), 8, 8)
    add(table("Model versions ready", "1 = the version serves requests, 0 = loaded but not ready.",
              f"dendrite_model_ready{{{F}}}", ["instance", "model", "version"], "ready"), 8, 8)
    add(timeseries("Model loads", "Seconds a model version took to load (sessions, checks, warm-up; the mean when "
                   "it was loaded more than once) and how many of its loads failed since the server started (the "
                   "reason is in the log and the repository index). Loads happen at start and on reload, so these "
                   "are totals, not rates.",
                   [target(f"sum by (model, version) (dendrite_model_load_duration_seconds_sum{{{F}}}) / "
                           f"sum by (model, version) (dendrite_model_load_duration_seconds_count{{{F}}})",
                           "{{model}} v{{version}} seconds"),
                    target(f"sum by (model, version) (dendrite_model_load_failures_total{{{F}}})",
                           "{{model}} v{{version}} failed loads")], "none"), 8, 8)
    add(table("Execution provider per session", "What ONNX Runtime really runs each session on "
              "(session.get_providers()[0]): CUDAExecutionProvider or CPUExecutionProvider. A CPU row in a GPU "
              "deployment means CUDA/cuDNN were not usable and the session fell back to CPU.",
              f"dendrite_instance_info{{{F}}}", ["instance", "model", "version", "graph", "session", "provider"],
              "sessions"), 24, 8)

    add(row("Process"), 24, 1)
    add(timeseries("CPU (cores)", "CPU time used by each server process, in cores.",
                   [target('rate(process_cpu_seconds_total{instance=~"$instance"}[$__rate_interval])',
                           "{{instance}}")], "none"), 8, 8)
    add(timeseries("Resident memory", "Resident set size of each server process (ORT arenas grow with the "
                   "largest batch shape seen).",
                   [target('process_resident_memory_bytes{instance=~"$instance"}', "{{instance}}")], "bytes"), 8, 8)
    add(timeseries("Open file descriptors", "Open fds per process against its limit (sockets included).",
                   [target('process_open_fds{instance=~"$instance"}', "{{instance}} open"),
                    target('process_max_fds{instance=~"$instance"}', "{{instance}} limit")], "none"), 8, 8)
    return p


def layout(items: list[tuple[dict, int, int]]) -> list[dict]:
    out, x, y, row_h, pid = [], 0, 0, 0, 1
    for panel, w, h in items:
        if x + w > 24 or panel["type"] == "row":
            x, y, row_h = 0, y + row_h, 0
        panel = {"id": pid, "gridPos": {"x": x, "y": y, "w": w, "h": h}, **panel}
        if panel["type"] != "row":
            panel["datasource"] = DS
            for i, t in enumerate(panel["targets"]):
                t["refId"] = chr(ord("A") + i)
        out.append(panel)
        pid += 1
        x += w
        row_h = max(row_h, h)
    return out


def variable(name: str, label: str, query: str) -> dict:
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": query, "definition": query,
        "refresh": 2, "sort": 1, "multi": True, "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [],
    }  # fmt: skip


def dashboard() -> dict:
    return {
        "uid": "dendrite-overview",
        "title": "Dendrite",
        "description": "Dendrite inference server: traffic, errors, latency, batching, models, process.",
        "tags": ["dendrite", "inference"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Datasource", "type": "datasource", "query": "prometheus",
             "current": {"text": "Prometheus", "value": "prometheus"}, "hide": 0},
            variable("model", "Model", "label_values(dendrite_model_state, model)"),
            variable("instance", "Instance", 'label_values(dendrite_model_state{model=~"$model"}, instance)'),
        ]},  # fmt: skip
        "panels": layout(panels()),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python deploy/grafana/generate_dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
