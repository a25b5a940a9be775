"""``tools/docs_examples.py`` against one live server on smoke-trained models: the committed docs pass
``--check``; a shown field the server does not answer, a wrong status line and an unmarked console block
are each reported, naming the example; render then check round-trips."""

from __future__ import annotations

import shutil

import pytest

from tests.support import live_server
from tools import docs_examples

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by make system-deps")

DOC = """# A doc

<!-- examples-source -->
old sentence

<!-- example: sentiment -->
```console
$ curl -s localhost:8000/predict/sentiment -H 'Content-Type: application/json' \\
    -d '{"texts": ["fine"]}'
{"model":"sentiment-minilm","version":"1","predictions":[{"label":"neutral","probabilities":{"negative":0.2,"neutral":0.5,"positive":0.3},"truncated":false}]}
```

<!-- example: missing -->
```console
$ curl -s -w '\\nHTTP %{http_code}\\n' localhost:8000/v2/models/nope
{"error":"model 'nope' not found"}
HTTP 404
```

<!-- example: grpc -->
```console
$ grpcurl -plaintext -d '{"user_id": "someone-new", "k": 1}' localhost:8001 dendrite.v1.Predict/Recommendation
{
  "model": "recommendation-neumf",
  "version": "1",
  "userId": "someone-new",
  "coldStart": true,
  "items": [
    {
      "itemId": "50",
      "title": "Star Wars"
    }
  ]
}
```
"""


@pytest.fixture(scope="module")
def server(smoke_repository):
    with live_server(smoke_repository, grpc=True) as s:
        yield s


def check(server, *argv: str) -> int:
    return docs_examples.main(["--url", server.url, "--grpc-target", server.grpc_target, *argv])


def test_the_committed_docs_match_the_server(server, capsys):
    assert check(server, "--check") == 0, capsys.readouterr().err


def test_a_drifted_field_name_is_caught_naming_the_example(server, tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(DOC.replace('"truncated":false', '"cut":false'))
    assert check(server, "--check", "--files", str(doc)) == 1
    err = capsys.readouterr().err
    assert "example 'sentiment'" in err and "predictions[0].cut: shown, but the server no longer answers it" in err
    assert "predictions[0].truncated: answered by the server, not shown" in err
    assert "example 'missing'" not in err and "example 'grpc'" not in err  # values differ, structure does not


def test_a_wrong_status_or_list_length_is_caught(server, tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(DOC.replace("HTTP 404", "HTTP 200").replace('"k": 1', '"k": 2'))
    assert check(server, "--check", "--files", str(doc)) == 1
    err = capsys.readouterr().err
    assert "example 'missing'" in err and "'HTTP 200'" in err and "'HTTP 404'" in err
    assert "example 'grpc'" in err and "items: 1 items shown, the server answers 2" in err


def test_render_then_check_round_trips(server, tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(DOC.replace('"label":"neutral"', '"label":"?"'))
    assert check(server, "--files", str(doc), "--models-source", "smoke models") == 0
    rendered = doc.read_text()
    assert '"label":"?"' not in rendered and "old sentence" not in rendered
    assert "from smoke models." in rendered and '"model": "recommendation-neumf"' in rendered
    assert rendered.count("<!-- example:") == 3
    assert check(server, "--check", "--files", str(doc)) == 0, capsys.readouterr().err
    assert check(server, "--files", str(doc), "--models-source", "smoke models") == 0
    assert doc.read_text() == rendered  # rendering is stable, structure and text alike


def test_an_unmarked_console_block_is_reported(server, tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(DOC + "\n```console\n$ curl -s localhost:8000/v2/health/live\n```\n")
    assert check(server, "--check", "--files", str(doc), "--only", "missing") == 1
    assert f"{doc.name}:{DOC.count(chr(10)) + 2}: a console block without a <!-- example: NAME --> marker" in (
        capsys.readouterr().err)


def test_a_command_that_fails_itself_is_never_rendered(server, tmp_path, capsys):
    """A shell error (here: an argument too long for exec, as a big photo inlined with $(base64) is)
    is a broken example, not an output to show."""
    doc = tmp_path / "doc.md"
    text = DOC.replace("<!-- example: missing -->", "<!-- example: broken -->\n```console\n"
                       "$ grpcurl -plaintext -d \"$(head -c 200000 /dev/zero | base64 -w0)\" localhost:8001 x/Y\n"
                       "```\n\n<!-- example: missing -->")  # fmt: skip
    doc.write_text(text)
    assert check(server, "--files", str(doc)) == 1
    err = capsys.readouterr().err
    assert "example 'broken'" in err and "the command failed: bash: " in err and "Argument list too long" in err
    assert doc.read_text() == text
