"""Static checks of the deploy files: Dockerfile (hadolint + structure), docker-compose
(docker-compose config for every profile), Prometheus (promtool check/test), Grafana
(generated JSON up to date, layout, variables), Kubernetes and KServe manifests
(kubernetes-validate against the Kubernetes schemas, plus cross-references).

Every tool check is paired with a known-bad input, so a tool that silently accepts anything
fails here instead of passing.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.tools import DEPLOY, ROOT, compose_env, python_module, run, tool

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
PROM = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "dendrite.json"
OIP_READY, OIP_LIVE = "/v2/health/ready", "/v2/health/live"


# ----------------------------------------------------------------------------- Dockerfile
def _stages() -> dict[str, str]:
    """stage name -> its instructions (text)."""
    text = DOCKERFILE.read_text()
    parts = re.split(r"^FROM\s+", text, flags=re.M)[1:]
    return {re.search(r"\bAS\s+(\S+)", p.splitlines()[0], re.I).group(1): p for p in parts}


def test_hadolint_clean():
    hadolint = tool("hadolint")
    r = run([hadolint, "--failure-threshold", "style", str(DOCKERFILE)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    hadolint = tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install flask\nCMD python app.py\n")
    r = run([hadolint, str(bad)])
    assert r.returncode != 0 and "DL3007" in r.stdout and "DL3025" in r.stdout, r.stdout


def test_dockerfile_targets_and_hardening():
    stages = _stages()
    assert {"train", "cpu", "cuda"} <= set(stages), stages.keys()
    assert list(stages)[-1] == "cpu", "the default (last) target should be the CPU image"
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE.read_text(), re.M))
    for name in ("PYTHON_IMAGE", "CUDA_IMAGE"):
        image = args[name]
        assert ":" in image and not image.endswith(":latest") and re.search(r":\d+\.\d+\.\d+", image), image
    assert re.search(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-", args["CUDA_IMAGE"]), args["CUDA_IMAGE"]
    assert "torch==2.13.0" in stages["train"] and "make models" in stages["train"]
    for name in ("cpu", "cuda"):
        stage = stages[name]
        assert "torch" not in stage.replace("without torch", ""), f"{name} image must not install torch"
        assert re.search(r"^USER\s+(?!0\b|root\b)\S+", stage, re.M), f"{name}: no non-root USER"
        assert re.search(r'^ENTRYPOINT\s+\[', stage, re.M), f"{name}: ENTRYPOINT must be exec form"
        health = re.search(r"^HEALTHCHECK(?:[^\n]*\\\n)*[^\n]*", stage, re.M)
        assert health and OIP_READY in health.group(0), f"{name}: HEALTHCHECK must probe {OIP_READY}"
        assert "COPY --from=models" in stage and "/models" in stage, f"{name}: must copy the trained models"
    assert '".[cpu]"' in stages["cpu-venv"] and "onnxruntime-gpu" not in stages["cpu-venv"]
    assert "onnxruntime-gpu==" in stages["cuda"] and ".[cpu" not in stages["cuda"], "gpu and cpu ORT are exclusive"


def test_dockerfile_models_trained_in_the_build_or_on_the_host():
    stages = _stages()
    text = DOCKERFILE.read_text()
    global_args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text.split("\nFROM ", 1)[0], re.M))
    assert global_args["MODELS"] == "train", "the default build trains the models itself"
    assert re.match(r"\$\{MODELS\}\s+AS\s+models\b", stages["models"]), "the models stage is the one MODELS names"
    assert {"train", "host"} <= set(stages)
    assert re.search(r"^COPY --from=host-models \. /src/models$", stages["host"], re.M)
    # both sources leave the repository at /src/models, where the images copy it from
    assert re.search(r"^WORKDIR /src$", stages["train"], re.M) and "COPY models ./models" in stages["train"]
    for name in ("cpu", "cuda"):
        assert "--from=train" not in stages[name], f"{name} must take its models from the models stage"
    # the main context carries no trained version: host models come only through their own context
    assert "models/*/[0-9]*" in (ROOT / ".dockerignore").read_text().splitlines()


def test_images_run_the_same_python_minor():
    stages = _stages()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE.read_text(), re.M))
    cpu = re.match(r"python:(\d+\.\d+)\.\d+-", args["PYTHON_IMAGE"]).group(1)
    cuda = set(re.findall(r"\bpython(\d+\.\d+)\b", stages["cuda"]))
    assert cuda == {cpu}, f"CPU image Python {cpu}, CUDA image {cuda}"
    assert not re.search(r"\bpython3(?!\.)\b", stages["cuda"].split("ENTRYPOINT")[0].replace("python3.", "")), \
        "the CUDA stage should name its Python version, not whatever python3 the base ships"


def test_dockerfile_make_targets_exist():
    code = "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#"))
    used = set(re.findall(r"\bmake\s+([a-z][\w-]*)", code))
    defined = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    assert {"system-deps", "models"} <= used and used <= defined, f"Dockerfile runs undefined targets {used - defined}"


def test_dockerignore_keeps_local_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}  # fmt: skip
    assert {".git", ".venv", "data"} <= ignored, ignored
    copied = re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", DOCKERFILE.read_text(), re.M)
    for line in copied:
        for src in line.split():
            assert (ROOT / src).exists() or src == "README.md", f"Dockerfile copies missing {src}"
            assert src not in ignored, f"Dockerfile copies {src}, which .dockerignore excludes"


# ----------------------------------------------------------------------------- compose
def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.mark.parametrize("profile", [None, "gpu"])
def test_compose_config_valid(profile):
    compose = tool("docker-compose")
    args = [compose, "-f", str(COMPOSE)] + (["--profile", profile] if profile else []) + ["config", "-q"]
    r = run(args, env=compose_env())
    assert r.returncode == 0, r.stdout + r.stderr
    services = set(run(args[:-1] + ["--services"], env=compose_env()).stdout.split())
    assert {"dendrite", "dendrite-gpu", "prometheus", "grafana"} <= services, services


def test_compose_has_no_default_grafana_password():
    compose = tool("docker-compose")
    env = compose_env()
    del env["GRAFANA_ADMIN_PASSWORD"]
    r = run([compose, "-f", str(COMPOSE), "config", "-q"], env=env)
    assert r.returncode != 0 and "set GRAFANA_ADMIN_PASSWORD" in r.stderr, r.stderr
    password = _compose()["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), password


@pytest.mark.parametrize("bind, expected", [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_compose_monitoring_ports_are_loopback_unless_overridden(bind, expected):
    compose = tool("docker-compose")
    env = compose_env(**({"MONITORING_BIND_ADDRESS": bind} if bind else {}))
    r = run([compose, "-f", str(COMPOSE), "config"], env=env)
    assert r.returncode == 0, r.stderr
    svc = yaml.safe_load(r.stdout)["services"]
    assert svc["prometheus"]["ports"] == [f"{expected}:9090:9090/tcp"]
    assert svc["grafana"]["ports"] == [f"{expected}:3000:3000/tcp"]


def test_compose_stop_grace_outlasts_the_shutdown_grace():
    from app.config import Settings

    line = next(line for line in COMPOSE.read_text().splitlines() if "stop_grace_period:" in line)
    assert "DENDRITE_SHUTDOWN_GRACE_SECONDS" in line, line  # the setting shutdown actually uses
    grace = float(_compose()["x-dendrite-common"]["stop_grace_period"].rstrip("s"))
    defaults = Settings()
    assert grace > defaults.shutdown_grace_seconds + defaults.shutdown_delay_seconds


def test_compose_config_rejects_a_bad_file(tmp_path):
    compose = tool("docker-compose")
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  x:\n    image: busybox\n    restart: sometimes\n    ports: 8000\n")
    assert run([compose, "-f", str(bad), "config", "-q"]).returncode != 0


def test_compose_services_wired():
    c = _compose()
    svc = c["services"]
    for name in ("dendrite", "dendrite-gpu", "prometheus", "grafana"):
        assert svc[name].get("restart") == "unless-stopped", name
        assert "healthcheck" in svc[name], name
    for name in ("dendrite", "dendrite-gpu"):
        assert any(v.startswith("models:/models") for v in svc[name]["volumes"]), name
        assert OIP_READY in " ".join(svc[name]["healthcheck"]["test"])
    assert svc["dendrite"]["build"]["target"] == "cpu" and svc["dendrite-gpu"]["build"]["target"] == "cuda"
    assert {"8000:8000", "8001:8001"} <= set(svc["dendrite"]["ports"])
    assert svc["dendrite-gpu"]["profiles"] == ["gpu"] and "profiles" not in svc["dendrite"]
    devices = svc["dendrite-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "models" in c["volumes"]
    # every bind-mounted deploy file exists, and Grafana's provisioning points at the mounted dashboards
    for name in ("prometheus", "grafana"):
        for vol in svc[name]["volumes"]:
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{name} mounts missing {src}"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["grafana"]["volumes"]}
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dendrite.yml").read_text())["providers"][0]
    assert (ROOT / mounts[provider["options"]["path"]]).resolve() == DASHBOARD.parent
    home = svc["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    rules_mount = next(v for v in svc["prometheus"]["volumes"] if v.startswith("./deploy/prometheus/rules"))
    prom_cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert prom_cfg["rule_files"] == [rules_mount.split(":")[1] + "/*.yml"]
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"


# ----------------------------------------------------------------------------- Prometheus
def test_promtool_check_config_and_rules(tmp_path):
    promtool = tool("promtool")
    # The shipped config names the rules by their in-container path; check it with the repo path
    # so `check config` also loads and checks the rule files.
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    cfg["rule_files"] = [str(PROM / "rules" / "*.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(cfg))
    r = run([promtool, "check", "config", str(local)])
    assert r.returncode == 0 and "rules found" in r.stdout, r.stdout + r.stderr
    r = run([promtool, "check", "rules", *map(str, sorted((PROM / "rules").glob("*.yml")))])
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_rejects_a_bad_rule(tmp_path):
    promtool = tool("promtool")
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(foo[5m] > 1\n")
    assert run([promtool, "check", "rules", str(bad)]).returncode != 0


def test_promtool_alert_unit_tests():
    promtool = tool("promtool")
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    r = run([promtool, "test", "rules", *map(str, tests)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_is_unit_tested_and_documented():
    rules = [r for g in yaml.safe_load((PROM / "rules/dendrite.rules.yml").read_text())["groups"] for r in g["rules"]]
    tested = set()
    for f in (PROM / "tests").glob("*.yml"):
        for t in yaml.safe_load(f.read_text())["tests"]:
            for a in t.get("alert_rule_test", []):
                if a.get("exp_alerts"):
                    tested.add(a["alertname"])
    docs = (ROOT / "docs" / "deploy.md").read_text().lower() if (ROOT / "docs" / "deploy.md").exists() else ""
    for rule in rules:
        assert rule["alert"] in tested, f"{rule['alert']} has no promtool test where it fires"
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert {"summary", "description", "runbook"} <= set(rule["annotations"])
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert f"### {anchor}" in docs, f"docs/deploy.md has no runbook section for {rule['alert']}"


# ----------------------------------------------------------------------------- Grafana
def test_dashboard_json_matches_generator():
    r = run([sys.executable, str(GRAFANA / "generate_dashboard.py"), "--check"])
    assert r.returncode == 0, r.stderr


def test_dashboard_layout_and_variables():
    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "model", "instance"} <= variables
    builtin = {"__rate_interval", "__interval", "__range"}
    titles = set()
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["title"] not in titles, f"duplicate title {p['title']}"
        titles.add(p["title"])
        assert p.get("description"), f"panel {p['title']!r} has no description"
        assert p["datasource"]["uid"] == "${datasource}"
        for t in p["targets"]:
            used = set(re.findall(r"\$\{?(\w+)", t["expr"]))
            assert used <= variables | builtin, f"{p['title']}: unknown variables {used - variables - builtin}"
            if t["expr"].startswith(("sum", "rate", "histogram_quantile", "(")) and "dendrite_" in t["expr"]:
                for sel in re.findall(r"dendrite_\w+\{([^}]*)\}", t["expr"]):
                    assert '$model' in sel and '$instance' in sel, f"{p['title']}: selector without filters: {sel}"
    # what the issue asks the dashboard to show
    text = json.dumps(dash)
    for needle in ("dendrite_requests_total", "histogram_quantile(0.5", "histogram_quantile(0.95",
                   "histogram_quantile(0.99", "dendrite_queue_duration_seconds", "dendrite_compute_duration_seconds",
                   "dendrite_inference_count_total", "dendrite_execution_count_total", "dendrite_pending_requests",
                   "dendrite_rejected_requests_total", "dendrite_model_ready", "dendrite_model_state",
                   "dendrite_model_load_duration_seconds", "dendrite_model_load_failures_total",
                   "dendrite_instance_info",
                   "process_cpu_seconds_total", "process_resident_memory_bytes"):  # fmt: skip
        assert needle in text, needle


# ----------------------------------------------------------------------------- Kubernetes
K8S_VERSIONS = ("1.30.0", None)  # an older supported cluster and the newest schemas the tool ships
K8S = DEPLOY / "k8s"
KSERVE = DEPLOY / "kserve"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _core_manifests() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / r for r in kustomization["resources"]]


def _validate(resource: dict, version: str | None) -> None:
    python_module("kubernetes_validate")
    import kubernetes_validate

    kubernetes_validate.validate(resource, version or kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_core_manifest():
    listed = {p.name for p in _core_manifests()}
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "servicemonitor.yaml", "prometheusrule.yaml"}
    assert listed == on_disk
    assert all(p.exists() for p in _core_manifests())


@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "latest")
@pytest.mark.parametrize("path", sorted((DEPLOY / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_k8s_manifest_valid(path: Path, version):
    for doc in _docs(path):
        if doc["apiVersion"].startswith(("kustomize.config.k8s.io", "monitoring.coreos.com")):
            continue  # not core API objects: no schema in kubernetes-validate (checked below)
        _validate(doc, version)


def test_prometheusrule_matches_the_rules_file():
    r = run([sys.executable, str(PROM / "to_prometheusrule.py"), "--check"])
    assert r.returncode == 0, r.stderr
    doc = _docs(K8S / "prometheusrule.yaml")[0]
    assert doc["kind"] == "PrometheusRule" and doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["spec"]["groups"] == yaml.safe_load((PROM / "rules/dendrite.rules.yml").read_text())["groups"]


def test_kubernetes_validate_rejects_a_bad_deployment():
    python_module("kubernetes_validate")
    import kubernetes_validate

    deployment = _docs(K8S / "deployment.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {"no": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment, None)
    deployment = _docs(K8S / "deployment.yaml")[0]
    deployment["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment, None)


def test_k8s_wiring():
    deployment = _docs(K8S / "deployment.yaml")[0]
    service = _docs(K8S / "service.yaml")[0]
    hpa = _docs(K8S / "hpa.yaml")[0]
    monitor = _docs(K8S / "servicemonitor.yaml")[0]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert ports == {"http": int(env["DENDRITE_HTTP_PORT"]), "grpc": int(env["DENDRITE_GRPC_PORT"])}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert container["readinessProbe"]["httpGet"]["path"] == OIP_READY
    assert container["livenessProbe"]["httpGet"]["path"] == OIP_LIVE
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}  # fmt: skip
    # ServiceMonitor (CRD, no schema in kubernetes-validate): required fields and references
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert service["metadata"]["name"] == "dendrite", "the alert rules select job=\"dendrite\" (the Service name)"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["http"]) and annotations["prometheus.io/path"] == "/metrics"


# ----------------------------------------------------------------------------- KServe
@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "latest")
def test_kserve_runtime_containers_are_valid_containers(version):
    """ServingRuntime/InferenceService are CRDs (no schema in kubernetes-validate); their
    container specs are core Containers, validated as such inside a Pod."""
    runtime = _docs(KSERVE / "servingruntime.yaml")[0]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "servingruntime-check"},
           "spec": {"containers": runtime["spec"]["containers"]}}  # fmt: skip
    _validate(pod, version)


def test_kserve_wiring():
    runtime = _docs(KSERVE / "servingruntime.yaml")[0]
    isvc = _docs(KSERVE / "inferenceservice.yaml")[0]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1" and runtime["kind"] == "ServingRuntime"
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    spec = runtime["spec"]
    assert {"v2", "grpc-v2"} <= set(spec["protocolVersions"])
    container = spec["containers"][0]
    assert container["name"] == "kserve-container"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["DENDRITE_HTTP_PORT"]) == container["ports"][0]["containerPort"] == 8080
    # every port the server listens on is declared, under the names KServe routes by
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http1": int(env["DENDRITE_HTTP_PORT"]), "h2c": int(env["DENDRITE_GRPC_PORT"])} == {
        "http1": 8080, "h2c": 9000}, ports
    assert container["args"][:1] == ["serve"] and "/mnt/models" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == OIP_READY
    assert container["livenessProbe"]["httpGet"]["path"] == OIP_LIVE
    assert spec["annotations"]["prometheus.kserve.io/port"] == env["DENDRITE_HTTP_PORT"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in spec["protocolVersions"]
    assert model["modelFormat"]["name"] in {f["name"] for f in spec["supportedModelFormats"]}
    assert model["storageUri"]


def test_runtime_args_are_accepted_by_the_server_cli(monkeypatch):
    """The ServingRuntime's and Deployment's args must parse with `python -m app` (argparse
    exits 2 on an unknown flag) and point the server where KServe puts the models."""
    import app.cli
    import app.server

    seen = []
    monkeypatch.setattr(app.server, "run", lambda settings: seen.append(settings) or 0)  # run returns the exit status
    runtime_args = _docs(KSERVE / "servingruntime.yaml")[0]["spec"]["containers"][0]["args"]
    deployment_args = _docs(K8S / "deployment.yaml")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert app.cli.main(runtime_args) == 0 and app.cli.main(deployment_args) == 0
    assert str(seen[0].model_repository) == "/mnt/models"
