"""app.auth: which routes need which keys, constant-time matching; and what the serving code
may deserialize (ONNX, YAML via safe_load, JSON, tokenizer JSON: never pickle)."""

from __future__ import annotations

import re
from pathlib import Path

from app import auth
from app.config import Settings

APP = Path(__file__).resolve().parents[1] / "app"


def test_presented_key():
    assert auth.presented_key("Bearer abc", None) == "abc"
    assert auth.presented_key("bearer  abc ", None) == "abc"
    assert auth.presented_key("Basic abc", None) is None
    assert auth.presented_key("Bearer", None) is None
    assert auth.presented_key(None, "k") == "k" and auth.presented_key("Bearer a", "k") == "k"
    assert auth.presented_key(None, None) is None


def test_authorized_compares_every_key():
    assert auth.authorized("b", ["a", "b"]) and not auth.authorized("c", ["a", "b"])
    assert not auth.authorized(None, ["a"]) and not auth.authorized("", ["a"]) and not auth.authorized("a", [])
    assert not auth.authorized("ab", ["a"]) and not auth.authorized("a", ["ab"])
    assert auth.authorized("ключ", ["ключ"])  # non-ASCII keys work (compared as UTF-8 bytes)


def test_required_keys_per_access():
    s = Settings(api_keys=["k"], repository_api_keys=["r"])
    assert auth.required_keys(s, auth.Access.OPEN)[0] == ()
    assert auth.required_keys(s, auth.Access.METRICS)[0] == ()
    assert auth.required_keys(Settings(api_keys=["k"], metrics_require_key=True), auth.Access.METRICS)[0] == ["k"]
    assert auth.required_keys(s, auth.Access.SERVING)[0] == ["k"]
    keys, message = auth.required_keys(s, auth.Access.REPOSITORY)
    assert keys == ["r"] and "DENDRITE_REPOSITORY_API_KEYS" in message
    # no repository keys of their own: load/unload take the inference keys rather than stay open
    keys, message = auth.required_keys(Settings(api_keys=["k"]), auth.Access.REPOSITORY)
    assert keys == ["k"] and "DENDRITE_API_KEYS" in message
    assert auth.required_keys(Settings(), auth.Access.REPOSITORY)[0] == []


def test_serving_code_never_unpickles():
    unsafe = re.compile(r"\bimport pickle\b|\bfrom pickle\b|allow_pickle\s*=\s*True|torch\.load\(|yaml\.load\(|"
                        r"yaml\.unsafe_load|\bmarshal\.loads|\bjoblib\b|\beval\(")  # fmt: skip
    offenders = []
    for path in APP.rglob("*.py"):
        if "training" in path.relative_to(APP).parts or "generated" in path.parts:
            continue  # training reads its own data sets; serving never imports it
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if unsafe.search(line):
                offenders.append(f"{path.relative_to(APP)}:{i}: {line.strip()}")
    assert not offenders, offenders
