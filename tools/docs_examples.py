"""Request/response examples in README.md and docs/*.md, run against a live server.

An example is a fenced ``console`` block right after a marker line ``<!-- example: NAME -->``; in it,
each ``$ command`` (continued over lines ending in ``\\`` or inside open quotes) is followed by its
output. Commands run in bash in a scratch folder holding scikit-learn's sample photos ``china.jpg`` and
``flower.jpg``; ``localhost:8000`` / ``localhost:8001`` in them mean the server's REST and gRPC ports;
``dendrite`` is this checkout's CLI (pointed at the server), ``grpcurl`` is ``tools/grpcurl.py`` and
``curl`` is curl (``make system-deps``). The line after ``<!-- examples-source -->`` says which models
the shown outputs came from.

    python tools/docs_examples.py            # render: rewrite every shown output with the real one (make docs)
    python tools/docs_examples.py --check    # fail, naming the example, when an output drifted in structure

``--check`` compares structure, not values: JSON by field names, types and list lengths; other text by
its number of lines, their indentation and the lines that are structure themselves (table headers,
``HTTP 404``, ``exit 1``, grpcurl's ``Code: NotFound``, the ``dendrite: error (HTTP 404)`` prefix). A
console block without a marker is reported too, so no example escapes the check.

Without ``--url``, a server is started on ``--repository`` (default ``models/``); a model without a
version there is served from smoke-profile models trained into ``--smoke-dir`` (reused on later runs),
and the examples-source line says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: this tree's app
MARKER = re.compile(r"^<!-- example: ([\w.-]+) -->$")
SOURCE_MARKER = "<!-- examples-source -->"
FENCE = re.compile(r"^(`{3,})(\w*)\s*$")
REST, GRPC = "localhost:8000", "localhost:8001"
# lines that are structure in themselves, compared with their whitespace collapsed
STRUCTURAL = re.compile(r"^(HTTP/[\d.]+ \d{3}.*|HTTP \d{3}|exit \d+|Code: \w+|[A-Z][A-Z_]+( +[A-Z][A-Z_]+)+)$")
CLI_ERROR = re.compile(r"^(dendrite: error[^:]*):")
# output no example should show: the command itself failed, not the request
BROKEN = re.compile(r"^(bash: |.*: command not found$|Traceback \(most recent call last\):$)", re.MULTILINE)


# ------------------------------------------------------------------------------------------ parsing
@dataclass
class Command:
    text: str  # as shown, without the "$ " prompt; continuation lines included
    output: list[str] = field(default_factory=list)


@dataclass
class Example:
    name: str
    line: int  # 1-based line of the opening fence
    commands: list[Command]
    start: int  # index of the first line inside the fence
    end: int  # index of the closing fence


@dataclass
class Doc:
    path: Path
    lines: list[str]
    examples: list[Example]
    unmarked: list[int]  # 1-based lines of console blocks without a marker
    source_line: int | None  # index of the line after <!-- examples-source -->


def complete(command: str) -> bool:
    if command.endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:  # an open quote: the command goes on
        return False
    return True


def parse_commands(body: list[str]) -> list[Command]:
    commands: list[Command] = []
    pending: list[str] | None = None
    for line in body:
        if pending is not None:
            pending.append(line)
            if complete("\n".join(pending)):
                commands[-1].text, pending = "\n".join(pending), None
        elif line.startswith("$ "):
            commands.append(Command(line[2:]))
            if not complete(line[2:]):
                pending = [line[2:]]
        elif commands:
            commands[-1].output.append(line)
    for c in commands:
        while c.output and not c.output[-1].strip():
            c.output.pop()
    return commands


def parse(path: Path) -> Doc:
    lines = path.read_text().split("\n")
    examples, unmarked, source_line = [], [], None
    i = 0
    while i < len(lines):
        if lines[i].strip() == SOURCE_MARKER:
            source_line = i + 1
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == fence.group(1)), len(lines))
        marker = next((MARKER.match(lines[j].strip()) for j in range(i - 1, -1, -1) if lines[j].strip()), None)
        if marker:
            examples.append(Example(marker.group(1), i + 1, parse_commands(lines[i + 1:end]), i + 1, end))
        elif fence.group(2) == "console":
            unmarked.append(i + 1)
        i = end + 1
    return Doc(path, lines, examples, unmarked, source_line)


def default_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# ------------------------------------------------------------------------------------------ structure
def segments(output: list[str]) -> list[tuple[str, Any]]:
    """The output as JSON documents (one a line, or spread over lines as grpcurl prints) and text lines."""
    text = "\n".join(output)
    decoder = json.JSONDecoder()
    found: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        eol = text.find("\n", pos)
        eol = len(text) if eol < 0 else eol
        line = text[pos:eol]
        if line.lstrip().startswith(("{", "[")):
            try:
                value, end = decoder.raw_decode(text, pos + len(line) - len(line.lstrip()))
                if text[end:].split("\n", 1)[0].strip() == "":
                    found.append(("json", value))
                    nxt = text.find("\n", end)
                    pos = len(text) if nxt < 0 else nxt + 1
                    continue
            except ValueError:
                pass
        found.append(("text", line))
        pos = eol + 1
    return found


def kind(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "null" if value is None else "bool"
    return {int: "number", float: "number", str: "string", list: "list", dict: "object"}[type(value)]


def json_shape(value: Any, where: str, other: Any, problems: list[str]) -> None:
    if kind(value) != kind(other):
        problems.append(f"{where or 'the answer'}: shown as {kind(value)}, the server answers {kind(other)}")
    elif isinstance(value, dict):
        for key in value.keys() - other.keys():
            problems.append(f"{where}{'.' if where else ''}{key}: shown, but the server no longer answers it")
        for key in other.keys() - value.keys():
            problems.append(f"{where}{'.' if where else ''}{key}: answered by the server, not shown")
        for key in value.keys() & other.keys():
            json_shape(value[key], f"{where}{'.' if where else ''}{key}", other[key], problems)
    elif isinstance(value, list):
        if len(value) != len(other):
            problems.append(f"{where}: {len(value)} items shown, the server answers {len(other)}")
        for i, (a, b) in enumerate(zip(value, other)):
            json_shape(a, f"{where}[{i}]", b, problems)


def text_shape(line: str) -> str:
    stripped = line.strip()
    if STRUCTURAL.match(stripped):
        return " ".join(stripped.split())
    error = CLI_ERROR.match(stripped)
    indent = len(line) - len(line.lstrip())
    return f"indent {indent}" + (f", {error.group(1)}" if error else "")


def compare(shown: list[str], actual: list[str]) -> list[str]:
    """What differs in structure between the shown output and the server's real one (empty: nothing)."""
    a, b = segments(shown), segments(actual)
    if [k for k, _ in a] != [k for k, _ in b]:
        return [f"shown as {describe(a)}, the server's output is {describe(b)}"]
    problems: list[str] = []
    for n, ((kind, x), (_, y)) in enumerate(zip(a, b), 1):
        if kind == "json":
            json_shape(x, "", y, problems)
        elif text_shape(x) != text_shape(y):
            problems.append(f"line {n}: shown {x.strip()!r}, the server's output has {y.strip()!r}")
    return problems


def describe(segs: list[tuple[str, Any]]) -> str:
    texts = sum(k == "text" for k, _ in segs)
    return f"{len(segs) - texts} JSON document(s) and {texts} text line(s)"


# ------------------------------------------------------------------------------------------ running
@dataclass
class Target:
    url: str  # http://host:port
    grpc: str  # host:port
    source: str  # what the models are, for the examples-source line
    repository: str | None = None  # shown as models/ in outputs


def run_command(command: Command, target: Target, workdir: Path, env: dict[str, str]) -> list[str]:
    host = target.url.split("://", 1)[1]
    text = command.text.replace(REST, host).replace(GRPC, target.grpc)
    done = subprocess.run(["bash", "-c", text], cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=180)  # fmt: skip
    out = done.stdout.replace(target.url, f"http://{REST}").replace(host, REST).replace(target.grpc, GRPC)
    out = out.replace(str(workdir) + "/", "")
    if target.repository:
        out = out.replace(target.repository, "models")
    return out.rstrip("\n").split("\n") if out.strip() else []


@contextmanager
def scratch(target: Target) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working folder with the sample photos, and an environment whose PATH has ``dendrite`` and
    ``grpcurl`` from this checkout."""
    if shutil.which("curl") is None:
        sys.exit("curl is needed (make system-deps installs it)")
    from importlib import resources

    with tempfile.TemporaryDirectory(prefix="docs-examples-") as tmp:
        work, bin_dir = Path(tmp) / "work", Path(tmp) / "bin"
        work.mkdir()
        bin_dir.mkdir()
        for photo in ("china.jpg", "flower.jpg"):
            (work / photo).write_bytes(resources.files("sklearn.datasets.images").joinpath(photo).read_bytes())
        for name, cmd in (("dendrite", "-m app"), ("grpcurl", shlex.quote(str(ROOT / "tools" / "grpcurl.py")))):
            shim = bin_dir / name
            shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {cmd} "$@"\n')
            shim.chmod(0o755)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
               "DENDRITE_URL": target.url, "DENDRITE_GRPC_TARGET": target.grpc}  # fmt: skip
        env.pop("DENDRITE_API_KEY", None)
        yield work, env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serving_repository(repository: Path, smoke_dir: Path, into: Path) -> tuple[Path, str]:
    """``repository`` when every default model has a version there; else a folder (``into``) linking each
    model to its trained version where there is one and to a smoke-profile one otherwise. Returns it and
    what it holds, in words."""
    from app.training.recipes import RECIPES
    from app.training.runner import has_version

    names = sorted(recipe.name for recipe in RECIPES.values())
    smoke = [n for n in names if not has_version(repository, n)]
    trained = [n for n in names if n not in smoke]
    if not smoke:
        return repository, f"the trained models in `{repository.name}/`"
    if not all(has_version(smoke_dir, n) for n in smoke):
        print(f"training smoke-profile models into {smoke_dir} for: {', '.join(smoke)}", flush=True)
        subprocess.run([sys.executable, "-m", "app.training", "all", "--profile", "smoke", "--repository",
                        str(smoke_dir)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)  # fmt: skip
    for name in names:  # the repository refuses a model folder that is a link (it resolves outside it)
        (into / name).mkdir()
        for entry in ((repository if name in trained else smoke_dir) / name).iterdir():
            (into / name / entry.name).symlink_to(entry)
    source = f"smoke-profile models (seconds of training on data subsets) for {', '.join(f'`{n}`' for n in smoke)}"
    if trained:
        source = f"the trained models in `{repository.name}/` for {', '.join(f'`{n}`' for n in trained)} and " + source
    return into, source


@contextmanager
def started_server(repository: Path, smoke_dir: Path) -> Iterator[Target]:
    """``dendrite serve`` as a child process on free ports, until every model is ready."""
    with tempfile.TemporaryDirectory(prefix="docs-models-") as tmp:
        models, source = serving_repository(repository, smoke_dir, Path(tmp))
        with serving(models, source) as target:
            yield target


@contextmanager
def serving(models: Path, source: str) -> Iterator[Target]:
    http, grpc = free_port(), free_port()
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen([sys.executable, "-m", "app", "serve", "--repository", str(models), "--host",
                                   "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc)],
                                  cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        target = Target(f"http://127.0.0.1:{http}", f"127.0.0.1:{grpc}", source, str(models))
        try:
            if problem := wait_ready(target, server):
                log.seek(0)
                sys.exit(f"{problem}; its log ends:\n" + "".join(log.readlines()[-15:]))
            yield target
        finally:
            server.terminate()
            server.wait(60)


def wait_ready(target: Target, server: subprocess.Popen, limit: float = 300) -> str | None:
    """None once every model is READY, else what went wrong."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return f"the server exited with {server.returncode} before it was ready"
        try:
            index = json.loads(urllib.request.urlopen(target.url + "/v2/repository/index", timeout=5).read())
            if index and all(m["state"] == "READY" for m in index):
                return None
        except OSError:
            pass
        time.sleep(0.5)
    return f"the server was not ready within {limit:g} s"


# ------------------------------------------------------------------------------------------ main
def source_sentence(target: Target) -> str:
    return f"Outputs shown here are real: rendered by `make docs` (`tools/docs_examples.py`) from {target.source}."


def process(docs: list[Doc], target: Target, check: bool, only: set[str] | None) -> list[str]:
    """Run every example; render rewrites the docs, check returns the drifts (each naming its example).
    Examples run a few at a time (their commands in order): most of the time is spent starting clients."""
    chosen = [(doc, ex) for doc in docs for ex in doc.examples if not only or ex.name in only]
    failures: list[str] = []
    with scratch(target) as (work, env), ThreadPoolExecutor(4) as pool:
        run = lambda example: [run_command(c, target, work, env) for c in example.commands]  # noqa: E731
        outputs = dict(zip((id(ex) for _, ex in chosen), pool.map(run, (ex for _, ex in chosen))))
    for doc in docs:
        rel = doc.path.relative_to(ROOT) if doc.path.is_relative_to(ROOT) else doc.path
        changed, failed_before = False, len(failures)
        if not check and doc.source_line is not None:  # first: one line for one, so no example shifts
            doc.lines[doc.source_line] = source_sentence(target)
            changed = True
        for example in reversed(doc.examples):  # from the end, so earlier line numbers stay valid
            if id(example) not in outputs:
                continue
            body: list[str] = []
            for command, actual in zip(example.commands, outputs[id(example)]):
                if broken := BROKEN.search("\n".join(actual)):
                    failures.append(f"{rel}:{example.line}: example '{example.name}', `$ {command.text.splitlines()[0]}`"
                                    f": the command failed: {broken.string[broken.start():].splitlines()[0]}")
                    continue
                if check:
                    failures += [f"{rel}:{example.line}: example '{example.name}', `$ {command.text.splitlines()[0]}`"
                                 f": {p}" for p in compare(command.output, actual)]  # fmt: skip
                body += ["$ " + line if i == 0 else line for i, line in enumerate(command.text.split("\n"))]
                body += actual + [""]
            if not check:
                doc.lines[example.start:example.end] = body[:-1]
                changed = True
        if changed and len(failures) == failed_before:  # a doc with a broken example is left as it was
            doc.path.write_text("\n".join(doc.lines))
    print(f"{len(chosen)} examples run against {target.url} and {target.grpc}", flush=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/docs_examples.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of rewriting; exit 1 on drift")
    parser.add_argument("--files", nargs="+", type=Path, help="docs to process (default: README.md, docs/*.md)")
    parser.add_argument("--only", nargs="+", help="only these examples")
    parser.add_argument("--url", help="a running server's REST URL (default: start one)")
    parser.add_argument("--grpc-target", help="that server's gRPC host:port")
    parser.add_argument("--models-source", default="the models of the given server",
                        help="with --url: what the examples-source line says the models are")  # fmt: skip
    parser.add_argument("--repository", type=Path, default=ROOT / "models")
    parser.add_argument("--smoke-dir", type=Path, default=Path(tempfile.gettempdir()) / "dendrite-docs-smoke")
    args = parser.parse_args(argv)

    docs = [parse(p.resolve()) for p in (args.files or default_files())]
    unmarked = [f"{d.path.name}:{line}: a console block without a <!-- example: NAME --> marker before it"
                for d in docs for line in d.unmarked]  # fmt: skip
    names: dict[str, str] = {}
    for doc in docs:
        for example in doc.examples:
            where = f"{doc.path.name}:{example.line}"
            if example.name in names:
                unmarked.append(f"{where}: example name '{example.name}' already used at {names[example.name]}")
            names[example.name] = where
            if not example.commands:
                unmarked.append(f"{where}: example '{example.name}' has no '$ command' line")
    for problem in unmarked:
        print(problem, file=sys.stderr)

    if args.url:
        if not args.grpc_target:
            parser.error("--url needs --grpc-target too")
        failures = process(docs, Target(args.url.rstrip("/"), args.grpc_target, args.models_source), args.check,
                           set(args.only or ()))  # fmt: skip
    else:
        with started_server(args.repository.resolve(), args.smoke_dir) as target:
            failures = process(docs, target, args.check, set(args.only or ()))
    for failure in failures:
        print(failure, file=sys.stderr)
    if failures or unmarked:
        print(f"{len(failures)} drifted or failed, {len(unmarked)} unmarked or malformed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
