"""The kustomize overlays of deploy/k8s (keda/: scaling on queueing, gpu/: NVIDIA nodes) and the
shutdown budget of the base Deployment.

There is no kustomize here, so `render` applies the few kustomize features the overlays use
(resources, images, strategic-merge patches) and refuses any other; the rendered core objects
are validated against the Kubernetes schemas like the base manifests. KEDA's ScaledObject is a
CRD without a schema in kubernetes-validate: its fields are checked by hand, its PromQL by
promtool, and the HPA KEDA derives from it (behavior, metrics) against the HPA schema. The
queries themselves run against a real Prometheus scraping a real server in test_observability.py.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy import promql
from tests.deploy.tools import DEPLOY, python_module, run, tool

K8S = DEPLOY / "k8s"
K8S_VERSIONS = ("1.30.0", None)  # as test_static.py: an older supported cluster and the newest schemas
SUPPORTED = {"apiVersion", "kind", "resources", "images", "patches", "labels"}
PROMETHEUS_TRIGGER_KEYS = {"serverAddress", "query", "threshold", "activationThreshold", "namespace",
                           "ignoreNullValues", "unsafeSsl", "customHeaders", "queryParameters", "authModes"}  # fmt: skip


def _merge(base, patch):
    """Strategic merge as kustomize applies it to these objects: maps merge, lists of named
    items merge by name, other lists are replaced; `$patch: delete` removes the object."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i
                                                                  for i in base + patch):  # fmt: skip
        out = [copy.deepcopy(i) for i in base]
        for item in patch:
            match = next((i for i, b in enumerate(out) if b["name"] == item["name"]), None)
            if match is None:
                out.append(copy.deepcopy(item))
            else:
                out[match] = _merge(out[match], item)
        return out
    return copy.deepcopy(patch)


def _key(doc: dict) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def render(folder: Path) -> dict[tuple[str, str], dict]:
    """(kind, name) -> object, as `kubectl kustomize folder` would build it (for these overlays)."""
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(k) <= SUPPORTED, f"{folder}: render() does not know {set(k) - SUPPORTED}"
    objects: dict[tuple[str, str], dict] = {}
    for resource in k.get("resources", []):
        path = (folder / resource).resolve()
        if path.is_dir():
            objects.update(render(path))
        else:
            objects.update({_key(d): d for d in yaml.safe_load_all(path.read_text()) if d})
    for image in k.get("images", []):
        for obj in objects.values():
            for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if c["image"].split(":")[0] == image["name"]:
                    c["image"] = f"{image['name']}:{image['newTag']}"
    for p in k.get("patches", []):
        assert set(p) <= {"path", "patch"}, f"{folder}: unsupported patch form {p}"
        patch = yaml.safe_load(p["patch"] if "patch" in p else (folder / p["path"]).read_text())
        key = _key(patch)
        assert key in objects, f"{folder}: patch for {key}, which no resource defines"
        if patch.get("$patch") == "delete":
            del objects[key]
        else:
            objects[key] = _merge(objects[key], patch)
    return objects


def _validate(obj: dict, version: str | None) -> None:
    python_module("kubernetes_validate")
    import kubernetes_validate

    kubernetes_validate.validate(obj, version or kubernetes_validate.latest_version(), strict=True)


def _container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_render_applies_patches_and_images_like_kustomize():
    base = render(K8S)
    assert _container(base[("Deployment", "dendrite")])["image"] == "dendrite:cpu"
    merged = _merge({"a": [{"name": "x", "v": 1}, {"name": "y"}], "b": [1, 2]},
                    {"a": [{"name": "x", "w": 2}, {"name": "z"}], "b": [3]})  # fmt: skip
    assert merged == {"a": [{"name": "x", "v": 1, "w": 2}, {"name": "y"}, {"name": "z"}], "b": [3]}


# ----------------------------------------------------------------------------- KEDA
def _scaled_object() -> dict:
    return render(K8S / "keda")[("ScaledObject", "dendrite")]


def _prometheus_triggers() -> list[dict]:
    return [t for t in _scaled_object()["spec"]["triggers"] if t["type"] == "prometheus"]


def scaling_queries() -> dict[str, str]:
    return promql.scaling_queries(K8S / "keda" / "scaledobject.yaml")


def test_keda_overlay_replaces_the_hpa_with_a_scaled_object():
    objects = render(K8S / "keda")
    assert ("HorizontalPodAutoscaler", "dendrite") not in objects, "KEDA's HPA and the CPU HPA would fight"
    assert set(render(K8S)) - {("HorizontalPodAutoscaler", "dendrite")} <= set(objects)
    so = objects[("ScaledObject", "dendrite")]
    deployment = objects[("Deployment", "dendrite")]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": deployment["metadata"]["name"]}  # fmt: skip
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
    names = [t.get("name") for t in so["spec"]["triggers"]]
    assert len(names) == len(set(names))
    assert {t["type"] for t in so["spec"]["triggers"]} == {"prometheus", "cpu"}
    for t in _prometheus_triggers():
        meta = t["metadata"]
        assert set(meta) <= PROMETHEUS_TRIGGER_KEYS, f"{t['name']}: unknown keys {set(meta) - PROMETHEUS_TRIGGER_KEYS}"
        assert meta["serverAddress"].startswith("http") and float(meta["threshold"]) > 0
        assert 'job="dendrite"' in meta["query"], "the job the ServiceMonitor and the alert rules use"
    # the queue depth and in-flight signals, from the server's own metrics
    text = " ".join(scaling_queries().values())
    assert "dendrite_pending_requests" in text and "dendrite_request_duration_seconds_sum" in text
    assert _container(deployment)["resources"]["requests"]["cpu"], "KEDA's cpu trigger needs a CPU request"


def test_keda_queries_parse(tmp_path):
    promtool = tool("promtool")
    rules = {"groups": [{"name": "keda", "rules": [{"record": f"keda:{n}", "expr": q}
                                                    for n, q in scaling_queries().items()]}]}  # fmt: skip
    path = tmp_path / "keda.yml"
    path.write_text(yaml.safe_dump(rules))
    r = run([promtool, "check", "rules", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "latest")
def test_keda_derived_hpa_is_valid(version):
    """The HPA KEDA creates from the ScaledObject: behavior as written, one External metric per
    Prometheus trigger (AverageValue = threshold), the CPU Resource metric."""
    spec = _scaled_object()["spec"]
    metrics = []
    for t in spec["triggers"]:
        if t["type"] == "prometheus":
            metrics.append({"type": "External", "external": {
                "metric": {"name": f"s{len(metrics)}-prometheus"},
                "target": {"type": "AverageValue", "averageValue": t["metadata"]["threshold"]}}})  # fmt: skip
        else:
            target = {"type": t["metricType"], "averageUtilization": int(t["metadata"]["value"])}
            metrics.append({"type": "Resource", "resource": {"name": t["type"], "target": target}})
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "keda-hpa-dendrite"},
           "spec": {"scaleTargetRef": spec["scaleTargetRef"], "minReplicas": spec["minReplicaCount"],
                    "maxReplicas": spec["maxReplicaCount"], "metrics": metrics,
                    "behavior": spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]}}  # fmt: skip
    _validate(hpa, version)


# ----------------------------------------------------------------------------- GPU
@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "latest")
def test_gpu_overlay_is_valid(version):
    for obj in render(K8S / "gpu").values():
        _validate(obj, version)


def test_gpu_overlay_runs_the_cuda_image_on_a_gpu_node():
    from app.config import Settings

    base = render(K8S)[("Deployment", "dendrite")]
    gpu = render(K8S / "gpu")[("Deployment", "dendrite")]
    pod, container = gpu["spec"]["template"]["spec"], _container(gpu)
    assert container["image"] == "dendrite:cuda", "the Dockerfile's cuda target"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DENDRITE_INSTANCE_KIND"] == "cuda"
    Settings(instance_kind=env["DENDRITE_INSTANCE_KIND"])  # a value the server accepts
    # the patch adds to the base container instead of replacing it
    base_env = {e["name"]: e["value"] for e in _container(base)["env"]}
    assert base_env.items() <= env.items()
    assert container["readinessProbe"] == _container(base)["readinessProbe"]


# ----------------------------------------------------------------------------- shutdown budget
def test_termination_grace_covers_prestop_delay_and_drain():
    """Kubernetes SIGKILLs a pod terminationGracePeriodSeconds after deletion starts (preStop
    included): preStop + shutdown delay + shutdown grace must fit, with a few seconds to spare."""
    from app.config import Settings

    deployment = render(K8S)[("Deployment", "dendrite")]
    pod, container = deployment["spec"]["template"]["spec"], _container(deployment)
    command = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    prestop = float(re.search(r"sleep\(?\s*(\d+(?:\.\d+)?)", command).group(1))
    env = {e["name"]: e["value"] for e in container["env"]}
    defaults = Settings()
    delay = float(env.get("DENDRITE_SHUTDOWN_DELAY_SECONDS", defaults.shutdown_delay_seconds))
    grace = float(env.get("DENDRITE_SHUTDOWN_GRACE_SECONDS", defaults.shutdown_grace_seconds))
    assert prestop + delay + grace + 5 <= pod["terminationGracePeriodSeconds"], (prestop, delay, grace)
