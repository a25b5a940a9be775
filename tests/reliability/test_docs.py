"""docs/reliability.md states what the overload tests do: each test's DENDRITE_TEST_OVERLOAD_SECONDS
default, as its code and its docstring have it (they once disagreed: the docs said 20 s, the code 30)."""

from __future__ import annotations

import re

import pytest

from testkit.server import ROOT

DOC = ROOT / "docs" / "reliability.md"


def default_in(text: str) -> str | None:
    """The first ``default N s`` after the setting's name (in its sentence)."""
    found = re.search(r"DENDRITE_TEST_OVERLOAD_SECONDS`?[^.]*?default (\d+) s", text, re.S)
    return found and found.group(1)


@pytest.mark.parametrize("test", ["test_overload.py", "test_translation.py"])
def test_the_documented_overload_duration_is_the_tests(test):
    source = (ROOT / "tests" / "reliability" / test).read_text()
    code = re.search(r'os\.environ\.get\("DENDRITE_TEST_OVERLOAD_SECONDS", "(\d+)"\)', source).group(1)
    assert default_in(source) == code  # the module's docstring
    stated = {default_in(p) for p in DOC.read_text().split("\n\n") if f"tests/reliability/{test}" in p} - {None}
    assert stated == {code}, f"docs/reliability.md states {stated or 'no'} default for {test}, the code {code}"
