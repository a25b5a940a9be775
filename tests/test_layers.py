"""Imports only run down: each part of ``app`` may import only the parts listed before it in ``LAYERS``.

Every ``import`` counts, at module level or inside a function (a deferred import is still a
dependency); only imports under ``if TYPE_CHECKING:`` are exempt, as they never run. Inside one
part (``app.transports``, ``app.tasks``...) modules import each other freely, except where
``SIBLINGS`` keeps two sub-packages apart.

Outside ``app``, the same holds between the checkout's top-level trees (``TREES``): tests and benches
share ``testkit`` instead of importing each other, and ``app`` imports none of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"

# Bottom to top. A part may import the parts before it, never one after it.
LAYERS = (
    "app",  # the package itself: __version__
    "app.errors",
    "app.config",
    "app.logs",
    "app.protocol",  # transfer types, datatypes, tensor conversions, the model-config schema
    "app.metrics",
    "app.batching",
    "app.runtime",
    "app.tasks",
    "app.repository",
    "app.traffic",
    "app.dataplane",
    "app.auth",
    "app.transports",
    "app.server",
    "app.client",
    "app.client_cli",
    "app.workers",
    "app.training",
    "app.cli",
    "app.__main__",
)
# Sub-packages of one part that must not import each other.
SIBLINGS = (("app.transports.rest", "app.transports.grpc"),)
# The top-level trees of the checkout and the ones each may import (besides itself and libraries).
# tests import bench only inside the tests of a bench module (tests/tasks/test_registry.py), never
# for tooling: that is testkit.
TREES = {
    "app": (),
    "testkit": ("app",),
    "bench": ("app", "testkit"),
    "tools": ("app",),
    "tests": ("app", "testkit", "tools", "bench"),
}


def module_name(path: Path, root: Path = APP) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """The entry of LAYERS that ``module`` belongs to."""
    best = ""
    for part in LAYERS:
        if (module == part or module.startswith(part + ".")) and len(part) > len(best):
            best = part
    if not best:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add its part to LAYERS")
    return best


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            return True
    return False


def imports_of(path: Path, root: Path = APP, package: str = "app") -> list[tuple[int, str]]:
    """(line, imported module) for every import of a ``package`` module in the file that can run."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # "from app.x import y" may import the module app.x.y: count the deepest that exists
            names = [f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}", root) else node.module
                     for a in node.names]  # fmt: skip
        else:
            continue
        if not _type_checking_only(node, parents):
            found += [(node.lineno, n) for n in names if n == package or n.startswith(package + ".")]
    return found


def _is_module(name: str, root: Path) -> bool:
    path = root.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(root: Path = APP) -> list[str]:
    rank = {part: i for i, part in enumerate(LAYERS)}
    found = []
    for path in sorted(root.rglob("*.py")):
        if "generated" in path.parts:  # protoc's output imports only itself
            continue
        module = module_name(path, root)
        own = part_of(module)
        for line, imported in imports_of(path, root):
            target = part_of(imported)
            where = f"{path.relative_to(root.parent)}:{line}"
            if rank[target] > rank[own]:
                found.append(f"{where}: {module} imports {imported}, but {own} sits below {target} (LAYERS)")
            for a, b in SIBLINGS:
                for mine, other in ((a, b), (b, a)):
                    if (module + ".").startswith(mine + ".") and (imported + ".").startswith(other + "."):
                        found.append(f"{where}: {module} imports {imported}; {mine} and {other} stay apart")
    return found


def test_no_module_imports_one_above_it():
    assert violations() == []


def test_every_part_of_app_has_a_layer():
    for path in APP.rglob("*.py"):
        if "generated" not in path.parts:
            part_of(module_name(path))


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from app.server import Service\n", "app.protocol.fake imports app.server"),
        ("def later():\n    import app.dataplane\n", "app.protocol.fake imports app.dataplane"),
        ("from app.transports.grpc import codec\n", "app.protocol.fake imports app.transports.grpc.codec"),
    ],
)
def test_an_import_that_runs_up_is_caught(tmp_path, source, expected):
    """The check itself: a module low in the stack importing a higher one, also inside a function."""
    fake_app = tmp_path / "app"
    (fake_app / "protocol").mkdir(parents=True)
    (fake_app / "protocol" / "fake.py").write_text(source)
    for existing in ("server.py", "dataplane.py"):
        (fake_app / existing).write_text("")
    (fake_app / "transports" / "grpc").mkdir(parents=True)
    (fake_app / "transports" / "grpc" / "codec.py").write_text("")
    found = violations(fake_app)
    assert len(found) == 1 and expected in found[0], found


def test_type_checking_imports_are_exempt(tmp_path):
    fake_app = tmp_path / "app"
    (fake_app / "protocol").mkdir(parents=True)
    (fake_app / "server.py").write_text("")
    (fake_app / "protocol" / "fake.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.server import Service\n")
    assert violations(fake_app) == []


def test_rest_and_grpc_stay_apart(tmp_path):
    fake_app = tmp_path / "app"
    (fake_app / "transports" / "rest").mkdir(parents=True)
    (fake_app / "transports" / "grpc").mkdir(parents=True)
    (fake_app / "transports" / "grpc" / "codec.py").write_text("")
    (fake_app / "transports" / "rest" / "oip.py").write_text("from app.transports.grpc import codec\n")
    found = violations(fake_app)
    assert len(found) == 1 and "stay apart" in found[0], found


def tree_violations(root: Path = ROOT) -> list[str]:
    found = []
    for tree, allowed in TREES.items():
        for path in sorted((root / tree).rglob("*.py")):
            if "generated" in path.parts:
                continue
            for other in TREES:
                if other == tree or other in allowed:
                    continue
                for line, imported in imports_of(path, root / other, package=other):
                    found.append(f"{path.relative_to(root)}:{line}: {tree} imports {imported} ({tree} may import "
                                 f"{', '.join(allowed) or 'no other tree'}: TREES)")
    return found


def test_trees_import_only_what_they_may():
    assert tree_violations() == []


def test_a_bench_importing_tests_is_caught(tmp_path):
    for tree in TREES:
        (tmp_path / tree).mkdir()
    (tmp_path / "tests" / "support.py").write_text("")
    (tmp_path / "bench" / "soak.py").write_text("def later():\n    from tests.support import live_server\n")
    found = tree_violations(tmp_path)
    assert len(found) == 1 and "bench/soak.py:2: bench imports tests.support" in found[0], found
