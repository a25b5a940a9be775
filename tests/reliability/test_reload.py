"""Hot reload under continuous REST traffic: a new version dropped into the repository (poll
mode), the load API (explicit mode: new version, then a config change reloading the same
version) and a bad deploy: zero failed requests, every answer right for the version it names."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import aiohttp
import httpx
import yaml

from testkit.models import affine_model, save, write_model
from tests.support import live_server

SCALES = {1: 2.0, 2: 3.0, 3: 4.0, 4: 5.0}
X = [1.0, 2.0, 3.0, 4.0]
BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]}
CONFIG = {"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 500}}


def drop_version(repo: Path, version: int, content: bytes | None = None) -> None:
    """Write <repo>/m/<version>/ elsewhere, then rename it in: what a deploy tool does."""
    staging = repo.parent / f"staging-{version}-{time.monotonic_ns()}"
    if content is None:
        save(affine_model(scale=SCALES[version]), staging / "model.onnx")
    else:
        staging.mkdir(parents=True)
        (staging / "model.onnx").write_bytes(content)
    os.rename(staging, repo / "m" / str(version))


class Traffic:
    """Clients sending back to back until stopped; records every outcome."""

    def __init__(self, url: str, clients: int = 4):
        self.url, self.clients = f"{url}/v2/models/m/infer", clients
        self.versions: dict[str, int] = {}
        self.failures: list[str] = []
        self._stop = asyncio.Event()

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            try:
                async with session.post(self.url, json=BODY) as r:
                    body = await r.json(content_type=None)
                    if r.status != 200:
                        self.failures.append(f"{r.status}: {body}")
                        continue
                    v = int(body["model_version"])
                    y = next(o for o in body["outputs"] if o["name"] == "y")["data"]
                    if y != [x * SCALES[v] + 1.0 for x in X]:
                        self.failures.append(f"version {v} answered {y}")
                    self.versions[str(v)] = self.versions.get(str(v), 0) + 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self.failures.append(repr(exc))

    async def __aenter__(self) -> "Traffic":
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._tasks = [asyncio.create_task(self._client(self._session)) for _ in range(self.clients)]
        return self

    async def __aexit__(self, *exc) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._session.close()

    async def until_version(self, version: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        start = self.versions.get(str(version), 0)
        while self.versions.get(str(version), 0) < start + 50:
            assert time.monotonic() < deadline, f"version {version} never served: {self.versions} {self.failures[:3]}"
            await asyncio.sleep(0.05)


def test_poll_mode_new_version_and_bad_deploy_under_traffic(tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "m", affine_model(scale=SCALES[1]), CONFIG)
    with live_server(repo, model_control_mode="poll", repository_poll_seconds=0.2, unload_drain_seconds=10) as s:

        async def scenario() -> Traffic:
            async with Traffic(s.url) as traffic:
                await traffic.until_version(1)
                drop_version(repo, 2)
                await traffic.until_version(2)
                drop_version(repo, 3, b"\x00not an onnx file")  # a bad deploy: v2 keeps serving
                await asyncio.sleep(1.0)
                await traffic.until_version(2)
                shutil.rmtree(repo / "m" / "3")
                drop_version(repo, 4)
                await traffic.until_version(4)
            return traffic

        traffic = asyncio.run(scenario())
        index = httpx.get(f"{s.url}/v2/repository/index").json()
    print(f"\nreload (poll): answers per version {traffic.versions}, failures {len(traffic.failures)}")
    assert not traffic.failures, traffic.failures[:5]
    assert [(r["version"], r["state"]) for r in index] == [("4", "READY")]


def test_load_api_new_version_and_config_change_under_traffic(tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "m", affine_model(scale=SCALES[1]), CONFIG)
    with live_server(repo, model_control_mode="explicit", startup_models=["m"], repository_api_enabled=True,
                     unload_drain_seconds=10) as s:  # fmt: skip

        async def scenario() -> tuple[Traffic, list[int]]:
            codes = []
            async with Traffic(s.url) as traffic, httpx.AsyncClient(base_url=s.url, timeout=60) as api:
                await traffic.until_version(1)
                drop_version(repo, 2)
                codes.append((await api.post("/v2/repository/models/m/load")).status_code)
                await traffic.until_version(2)
                # A config change reloads version 2 in place: the new instance warms beside the old one.
                (repo / "m" / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "max_batch_size": 4}))
                codes.append((await api.post("/v2/repository/models/m/load")).status_code)
                await traffic.until_version(2)
            return traffic, codes

        traffic, codes = asyncio.run(scenario())
        meta = httpx.get(f"{s.url}/v2/models/m").json()
    print(f"\nreload (load API): answers per version {traffic.versions}, failures {len(traffic.failures)}")
    assert codes == [200, 200]
    assert not traffic.failures, traffic.failures[:5]
    assert meta["versions"] == ["2"] and meta["max_batch_size"] == 4


def test_task_route_reload_under_traffic_never_fails_a_request_mid_pipeline(smoke_repository, tmp_path):
    """/predict requests spend time outside the batcher (tokenizing, a multi-step decode loop):
    a version being replaced must finish the ones it admitted, not refuse their next step."""
    repo = tmp_path / "repo"
    shutil.copytree(smoke_repository / "translation-de-en", repo / "translation-de-en")
    config_path = repo / "translation-de-en" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    body = {"texts": ["Das Haus ist klein.", "Ich habe einen Hund und eine Katze."], "beam_size": 2}
    with live_server(repo, model_control_mode="explicit", startup_models=["translation-de-en"],
                     repository_api_enabled=True, unload_drain_seconds=20) as s:  # fmt: skip

        async def scenario() -> tuple[int, list[str], list[int]]:
            answered, failures, codes = 0, [], []
            stop = asyncio.Event()

            async def client(http: httpx.AsyncClient) -> None:
                nonlocal answered
                while not stop.is_set():
                    r = await http.post("/predict/translation", json=body)
                    if r.status_code == 200 and len(r.json()["translations"]) == 2:
                        answered += 1
                    else:
                        failures.append(f"{r.status_code}: {r.text[:200]}")

            async with httpx.AsyncClient(base_url=s.url, timeout=60) as http:
                clients = [asyncio.create_task(client(http)) for _ in range(4)]
                await asyncio.sleep(1.0)
                for delay_us in (2000, 3000, 4000):  # each config change reloads version 1 beside itself
                    config["dynamic_batching"]["max_queue_delay_microseconds"] = delay_us
                    config_path.write_text(yaml.safe_dump(config))
                    codes.append((await http.post("/v2/repository/models/translation-de-en/load")).status_code)
                    await asyncio.sleep(0.5)
                stop.set()
                await asyncio.gather(*clients)
            return answered, failures, codes

        answered, failures, codes = asyncio.run(scenario())
    print(f"\nreload (/predict/translation, 3 reloads): {answered} answered, {len(failures)} failed")
    assert codes == [200, 200, 200]
    assert answered > 0 and not failures, failures[:3]
