"""What the benches share: a real server process, a free port, the server's /metrics as numbers,
and the machine's load average (the benches run on shared, busy machines)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text -> {(sample name, frozenset of label pairs): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there is none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


class Server:
    """``python -m app serve`` in a child process, REST (and gRPC unless grpc=False) on free ports."""

    def __init__(self, repo: Path, *, grpc: bool = False, env: dict[str, str] | None = None, timeout: float = 180,
                 cwd: Path | None = None):
        self.port = free_port()
        self.grpc_port = free_port() if grpc else None
        env = {**os.environ, "DENDRITE_GRPC_ENABLED": str(grpc).lower(), "DENDRITE_LOG_LEVEL": "warning", **(env or {})}
        cmd = [sys.executable, "-m", "app", "serve", "--repository", str(repo), "--http-port", str(self.port),
               "--host", "127.0.0.1"]  # fmt: skip
        if grpc:
            cmd += ["--grpc-port", str(self.grpc_port)]
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd)
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}" if grpc else None
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        return parse_metrics(httpx.get(f"{self.url}/metrics", timeout=10).text)

    def counters(self, model: str, version: str = "1") -> tuple[float, float]:
        """Rows computed and batches executed so far (their delta ratio is the mean batch size)."""
        m = self.metrics()
        return (metric(m, "dendrite_inference_count_total", model=model, version=version),
                metric(m, "dendrite_execution_count_total", model=model, version=version))  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)  # longer than the server's own shutdown grace
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
