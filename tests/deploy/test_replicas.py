"""Three Dendrite replicas behind a real HAProxy (Debian's package) on the shipped
deploy/haproxy/haproxy.cfg, under steady load from a few client threads, every request's
outcome counted.

- Replicas: `python -m app serve` child processes on fixed 127.0.0.1 ports (a restarted replica
  comes back on the same address), repository: one tiny ONNX model built here.
- HAProxy: the shipped file with only its two DNS server-template lines replaced by the three
  static replicas, listening on free ports; its stats CSV is polled every few milliseconds to see
  what the balancer routes where and when.
- SIGKILL of one replica: the only failed requests are those that were in flight on it at the
  kill, and the balancer stops sending to it within its health-check interval.
- Rolling restart with SIGTERM, one replica at a time, each back in the pool before the next:
  zero failed requests.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, ROOT, compose_env, tool
from testkit.models import affine_model, write_model
from testkit.server import free_port

pytestmark = pytest.mark.timeout(120)

CONFIG = DEPLOY / "haproxy" / "haproxy.cfg"
MODEL = "affine"
CLIENTS = 4
PACE_S = 0.01  # each client sends at most one request per 10 ms: steady load that leaves CPU to the servers
CHECK_INTERVAL_S = 0.2  # `inter` in the shipped config (asserted below)
# SIGTERM -> readiness 503 at once, still serving this long, then stop accepting: three health-check
# intervals, so the balancer has seen the 503 and moved away before the replica stops accepting.
SHUTDOWN_DELAY_S = 0.6
X = [1.0, 2.0, 3.0, 4.0]
BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]}).encode()
EXPECTED_Y = [2 * v + 1 for v in X]  # affine_model(): y = 2x + 1


class Replica:
    """One `python -m app serve` process on fixed ports, restartable on the same ports."""

    def __init__(self, name: str, repo: Path, log: Path):
        self.name, self.repo, self.log = name, repo, log
        self.http_port, self.grpc_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DENDRITE_")}
        env.update(DENDRITE_LOG_LEVEL="warning", DENDRITE_SHUTDOWN_DELAY_SECONDS=str(SHUTDOWN_DELAY_S),
                   DENDRITE_SHUTDOWN_GRACE_SECONDS="10")  # fmt: skip
        cmd = [sys.executable, "-m", "app", "serve", "--repository", str(self.repo), "--host", "127.0.0.1",
               "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)]  # fmt: skip
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        if self.proc:
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _balancer_config(tmp: Path, replicas: list[Replica]) -> Path:
    """The shipped config with its DNS server-templates replaced by the static replicas, each
    keeping the template's options (the check port becomes the replica's REST port)."""
    text = CONFIG.read_text()
    pattern = re.compile(r"^(\s*)server-template\s+\S+\s+\S+\s+\S+:(\d+)(.*)$", re.M)
    assert sorted(m.group(2) for m in pattern.finditer(text)) == ["8000", "8001"], "one REST, one gRPC template"

    def static(match: re.Match) -> str:
        indent, port, options = match.groups()
        options = re.sub(r"\s(resolvers|init-addr)\s+\S+", "", options)
        lines = []
        for r in replicas:
            own = re.sub(r"\bport 8000\b", f"port {r.http_port}", options)
            lines.append(f"{indent}server {r.name} 127.0.0.1:{r.http_port if port == '8000' else r.grpc_port}{own}")
        return "\n".join(lines)

    path = tmp / "haproxy.cfg"
    path.write_text(pattern.sub(static, text))
    return path


class Balancer:
    def __init__(self, tmp: Path, replicas: list[Replica]):
        self.http_port, self.grpc_port, self.stats_port = free_port(), free_port(), free_port()
        self.log = tmp / "haproxy.log"
        env = {**os.environ, "BALANCER_HTTP_BIND": f"127.0.0.1:{self.http_port}",
               "BALANCER_GRPC_BIND": f"127.0.0.1:{self.grpc_port}",
               "BALANCER_STATS_BIND": f"127.0.0.1:{self.stats_port}"}  # fmt: skip
        config = _balancer_config(tmp, replicas)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([tool("haproxy"), "-db", "-f", str(config)], cwd=tmp, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        self._stats = None
        self._stats_lock = threading.Lock()  # one keep-alive connection, shared with RoutingWatch's thread

    def servers(self, backend: str = "dendrite_rest") -> dict[str, dict[str, str]]:
        """HAProxy's stats CSV rows of one backend's servers, by server name."""
        with self._stats_lock:
            if self._stats is None:
                self._stats = http.client.HTTPConnection("127.0.0.1", self.stats_port, timeout=5)
            try:
                self._stats.request("GET", "/stats;csv")
                text = self._stats.getresponse().read().decode()
            except (OSError, http.client.HTTPException):
                self._stats.close()
                self._stats = None
                raise
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {r["svname"]: r for r in rows if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}

    def failed(self) -> dict[str, int]:
        """Per server: requests routed to it that did not end in a 2xx there, less those whose
        connection failed and were redispatched to another replica (`wredis`)."""
        return {n: int(r["stot"]) - int(r["hrsp_2xx"]) - int(r["wredis"]) for n, r in self.servers().items()}

    def redispatched(self) -> dict[str, int]:
        return {n: int(r["wredis"]) for n, r in self.servers().items()}

    def wait_up(self, names: list[str], timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"haproxy exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if all(self.servers(backend)[n]["status"] == "UP" for n in names
                       for backend in ("dendrite_rest", "dendrite_grpc")):  # fmt: skip
                    return
            except (OSError, http.client.HTTPException, KeyError):
                pass
            time.sleep(0.05)
        pytest.fail(f"replicas {names} not UP in haproxy after {timeout}s: {self.servers()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class Outcome:
    start: float
    end: float
    status: int | None  # None: the connection to the balancer itself failed
    replica: str
    problem: str = ""


class Load:
    """CLIENTS threads sending back-to-back infer requests through the balancer (keep-alive),
    recording every request's outcome and which replica answered."""

    def __init__(self, port: int):
        self.port = port
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                conn.request("POST", f"/v2/models/{MODEL}/infer", body=BODY,
                             headers={"Content-Type": "application/json"})  # fmt: skip
                r = conn.getresponse()
                data = r.read()
                outcome = Outcome(start, time.monotonic(), r.status, r.getheader("X-Dendrite-Replica", ""))
                if r.status == 200:
                    y = next(o["data"] for o in json.loads(data)["outputs"] if o["name"] == "y")
                    if y != EXPECTED_Y:
                        outcome.problem = f"wrong answer {y}"
                else:
                    outcome.problem = data[:200].decode(errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                outcome = Outcome(start, time.monotonic(), None, "", f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.outcomes.append(outcome)
            time.sleep(max(0.0, start + PACE_S - time.monotonic()))
        conn.close()

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200 or o.problem]

    def summary(self) -> str:
        by: dict[str, int] = {}
        for o in self.outcomes:
            key = f"{o.status or 'conn-error'}:{o.replica or '-'}"
            by[key] = by.get(key, 0) + 1
        return f"{len(self.outcomes)} requests {dict(sorted(by.items()))}"


class RoutingWatch:
    """Polls the balancer's stats for one server: when its session counter (requests routed to it,
    connection attempts included) last rose, and when HAProxy first showed it DOWN."""

    def __init__(self, balancer: Balancer, name: str):
        self.balancer, self.name = balancer, name
        self.last_routed = 0.0
        self.down_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        last = None
        while not self._stop.is_set():
            row = self.balancer.servers()[self.name]
            now = time.monotonic()
            routed = int(row["stot"]) + int(row["econ"] or 0)
            if last is not None and routed > last:
                self.last_routed = now
            last = routed
            if self.down_at is None and row["status"].startswith("DOWN"):
                self.down_at = now
            time.sleep(0.005)

    def __enter__(self) -> "RoutingWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def _wait_exit(replica: Replica, timeout: float = 30) -> int:
    try:
        return replica.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{replica.name} did not exit {timeout}s after SIGTERM:\n{replica.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tool("haproxy")
    tmp = tmp_path_factory.mktemp("replicas")
    repo = tmp / "models"
    write_model(repo, MODEL, affine_model(), {"max_batch_size": 8,
                                              "dynamic_batching": {"max_queue_delay_microseconds": 1000}})  # fmt: skip
    replicas = [Replica(f"r{i}", repo, tmp / f"r{i}.log") for i in (1, 2, 3)]
    balancer = None
    try:
        for r in replicas:
            r.start()
        balancer = Balancer(tmp, replicas)
        balancer.wait_up([r.name for r in replicas])
        yield balancer, replicas
    finally:
        if balancer:
            balancer.stop()
        for r in replicas:  # all at once: each takes its shutdown delay
            if r.proc and r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        for r in replicas:
            r.stop()


def test_shipped_config_detects_failure_fast():
    text = CONFIG.read_text()
    assert re.search(r"option httpchk GET /v2/health/ready", text)
    checks = re.findall(r"^\s*default-server\b.*\bcheck inter (\d+)ms fall (\d+) rise (\d+)", text, re.M)
    assert checks and all(int(i) / 1000 == CHECK_INTERVAL_S and f == "1" for i, f, _ in checks), checks
    assert re.search(r"^\s*option redispatch\b", text, re.M) and re.search(r"^\s*retries [1-9]", text, re.M)
    # replaying a request that already reached a replica is not safe in general: connection failures only
    assert re.findall(r"^\s*retry-on .*$", text, re.M) == ["    retry-on conn-failure"]


def test_sigkill_fails_only_the_requests_in_flight_on_the_killed_replica(cluster):
    balancer, replicas = cluster
    victim = replicas[1]
    failed, redispatched = balancer.failed(), balancer.redispatched()
    with Load(balancer.http_port) as load, RoutingWatch(balancer, victim.name) as watch:
        time.sleep(1.0)
        served_before = {o.replica for o in load.outcomes if o.status == 200}
        killed_at = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        dead_at = time.monotonic()  # reaped: its sockets are closed from here on
        time.sleep(1.0)
    failures = load.failures()
    lost = {n: v - failed[n] for n, v in balancer.failed().items()}
    moved = balancer.redispatched()[victim.name] - redispatched[victim.name]
    stopped_after = watch.last_routed - killed_at
    down_after = (watch.down_at - killed_at) if watch.down_at else float("nan")
    print(f"\nSIGKILL {victim.name}: {load.summary()}; failed {len(failures)}; failed per replica {lost}; "
          f"{moved} connection attempts to it redispatched; the balancer last routed to it "
          f"{stopped_after * 1000:.0f} ms after the kill and showed it DOWN after {down_after * 1000:.0f} ms")  # fmt: skip
    assert served_before == {r.name for r in replicas}, f"load did not reach every replica: {served_before}"
    # HAProxy answers 502, or closes a keep-alive client connection without a response (unlogged,
    # so that the client may retry); its per-server counters say where each failed request went
    for f in failures:
        assert f.status is None or (f.status == 502 and f.replica == victim.name), f
        assert f.start <= dead_at and f.end >= killed_at, f"a request that was not in flight at the kill failed: {f}"
    assert lost == {r.name: (len(failures) if r is victim else 0) for r in replicas}, lost
    assert len(failures) <= CLIENTS, "more failures than requests can be in flight"
    assert watch.down_at is not None, "the balancer never marked the killed replica DOWN"
    # within one health-check interval (plus what this busy machine adds to the poll and check timing)
    assert stopped_after <= CHECK_INTERVAL_S + 0.3, f"still routed to the killed replica {stopped_after:.3f}s later"
    late = [o for o in load.outcomes if o.start > watch.down_at and o.replica == victim.name]
    assert not late, late[:3]
    # bring it back for the other tests
    victim.start()
    balancer.wait_up([victim.name])


def test_rolling_restart_with_sigterm_fails_no_request(cluster):
    balancer, replicas = cluster
    redispatched = sum(balancer.redispatched().values())
    with Load(balancer.http_port) as load:
        time.sleep(0.5)
        for r in replicas:
            r.proc.send_signal(signal.SIGTERM)
            assert _wait_exit(r) == 0, f"{r.name} did not exit cleanly after SIGTERM"
            r.start()
            balancer.wait_up([r.name])
            restarted_at = time.monotonic()
        time.sleep(0.5)
    failures = load.failures()
    redispatched = sum(balancer.redispatched().values()) - redispatched
    print(f"\nrolling restart: {load.summary()}; failed {len(failures)}; {redispatched} redispatched")
    assert not failures, f"{len(failures)} failed: {failures[:5]}"
    # the balancer had taken each replica out before it stopped accepting: nothing met a closed port
    assert redispatched == 0, f"{redispatched} requests reached a stopped replica (shutdown delay too short?)"
    # the last restarted replica took traffic again before the load stopped
    assert any(o.replica == replicas[-1].name and o.start > restarted_at for o in load.outcomes)
    assert len(load.outcomes) > 50 * len(replicas), load.summary()


def test_grpc_calls_are_balanced_over_h2c(cluster):
    """The gRPC frontend (h2 on both sides) balances each call, over one client connection."""
    import grpc

    from app.transports.grpc.generated.inference import open_inference_grpc_pb2 as pb
    from app.transports.grpc.generated.inference import open_inference_grpc_pb2_grpc as pb_grpc

    balancer, replicas = cluster
    before = {n: int(row["stot"]) for n, row in balancer.servers("dendrite_grpc").items()}
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP32", shape=[1, 4], contents=pb.InferTensorContents(fp32_contents=X))
    with grpc.insecure_channel(f"127.0.0.1:{balancer.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(12):
            reply = stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL, inputs=[tensor]), timeout=10)
            assert reply.model_name == MODEL
    after = {n: int(row["stot"]) for n, row in balancer.servers("dendrite_grpc").items()}
    served = {n for n in after if after[n] > before.get(n, 0)}
    assert served == {r.name for r in replicas}, (before, after)


def test_compose_replicas_profile_matches_the_config():
    """docker-compose.yml's `balancer` serves this config to the `replica` service's replicas."""
    import yaml

    compose_file = ROOT / "docker-compose.yml"
    r = subprocess.run([tool("docker-compose"), "-f", str(compose_file), "--profile", "replicas", "config", "-q"],
                       capture_output=True, text=True, timeout=60, env=compose_env())  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    services = yaml.safe_load(compose_file.read_text())["services"]
    replica, balancer = services["replica"], services["balancer"]
    assert replica["profiles"] == balancer["profiles"] == ["replicas"]
    assert "ports" not in replica, "published replica ports would clash under --scale"
    assert "./deploy/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in balancer["volumes"]
    text = CONFIG.read_text()
    templates = dict(re.findall(r"^\s*server-template\s+\S+\s+\S+\s+([\w-]+):(\d+)", text, re.M)[:1])
    assert templates == {"replica": replica["environment"]["DENDRITE_HTTP_PORT"]}, templates
    grpc_port = replica["environment"]["DENDRITE_GRPC_PORT"]
    assert re.search(rf"^\s*server-template\s+.*\breplica:{grpc_port}\b.*\bproto h2\b", text, re.M)
    binds = re.findall(r'^\s*bind "\$\{BALANCER_\w+_BIND-:(\d+)\}"', text, re.M)
    published = {tuple(p.split(":")[-2:]) for p in balancer["ports"]}  # (host port, container port)
    assert published == {(p, p) for p in binds}, (binds, balancer["ports"])
    delay = float(replica["environment"]["DENDRITE_SHUTDOWN_DELAY_SECONDS"])
    assert delay >= 3 * CHECK_INTERVAL_S, "the balancer needs a few check intervals to take a stopping replica out"
