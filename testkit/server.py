"""A real Dendrite server in a child process (``python -m app serve``: SIGTERM, RSS and exit codes are
the real thing), on free ports of 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from testkit.metrics import metric, parse_metrics

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class ServerProcess(Server):
    """The benchmark's server process (``Server`` run from the checkout), plus what reliability tests read."""

    def __init__(self, repo: Path, *, grpc: bool = False, env: dict[str, str] | None = None, timeout: float = 120):
        super().__init__(repo, grpc=grpc, env=env, timeout=timeout, cwd=ROOT)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)


def serve_to_the_end(repo: Path, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m app serve`` on 127.0.0.1 run to its exit: for servers that must fail at start.
    ``env`` is added to this process's environment."""
    return subprocess.run([sys.executable, "-m", "app", "serve", "--repository", str(repo), "--host", "127.0.0.1", *args],
                          env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=timeout)  # fmt: skip
