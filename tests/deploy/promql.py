"""Collecting the PromQL of the shipped dashboard, alert rules and KEDA scaling triggers, and splitting an alert
condition into the signals it compares.

An alert expression such as ``rate(errors) / rate(all) > 0.05 and rate(all) > 0.1`` returns
nothing while things are healthy, so "it returned no series" proves nothing about it. Its
*signals* (``rate(errors) / rate(all)`` and ``rate(all)``) must return series whenever traffic
was sent: that is what the observability test checks, beside evaluating the full expression.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPS = ("and", "or", "unless")
_MODIFIER = re.compile(r"^(?:bool\b|(?:on|ignoring|group_left|group_right)\s*\([^)]*\)|(?:group_left|group_right)\b)\s*")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_IDENT = re.compile(r"[A-Za-z0-9_:]")


def _split_top_level(expr: str) -> list[str]:
    """Split on comparison and set operators outside (), [], {} and string literals."""
    parts, depth, start, i, quote = [], 0, 0, 0, ""
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
            i += 1
            continue
        if c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            op = next((o for o in _COMPARISONS if expr.startswith(o, i)), None)
            if op is None:
                for word in _SET_OPS:
                    end = i + len(word)
                    if (expr.startswith(word, i) and (i == 0 or not _IDENT.match(expr[i - 1]))
                            and (end == len(expr) or not _IDENT.match(expr[end]))):  # fmt: skip
                        op = word
                        break
            if op is not None:
                parts.append(expr[start:i])
                i += len(op)
                start = i
                continue
        i += 1
    parts.append(expr[start:])
    return parts


def _strip_outer_parens(expr: str) -> str:
    while expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for i, c in enumerate(expr):
            depth += c == "("
            depth -= c == ")"
            if depth == 0 and i < len(expr) - 1:
                return expr  # "(a) / (b)": the first paren closes early
        expr = expr[1:-1].strip()
    return expr


def signals(expr: str) -> list[str]:
    """The non-literal operands of an alert condition's top-level comparisons and set operators;
    ``absent(x)`` contributes ``x``."""
    out = []
    for part in _split_top_level(" ".join(expr.split())):
        part = part.strip()
        while (m := _MODIFIER.match(part)) and m.end() > 0:
            part = part[m.end():]
        part = _strip_outer_parens(part.strip())
        if not part or _NUMBER.match(part):
            continue
        if part.startswith("absent(") and part.endswith(")"):
            part = part[len("absent("):-1].strip()
        if len(sub := _split_top_level(part)) > 1:  # a parenthesised condition inside
            out.extend(signals(part))
        else:
            out.append(part)
    return out


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref: str
    expr: str
    legend: str
    table_columns: tuple[str, ...]  # labels a table panel shows (organize transformation), else ()


def dashboard_queries(path: Path) -> list[PanelQuery]:
    dash = json.loads(path.read_text())
    out = []
    for panel in dash["panels"]:
        columns: tuple[str, ...] = ()
        for t in panel.get("transformations", []):
            if t["id"] == "organize":
                columns = tuple(c for c in t["options"].get("includeByName", {}) if c != "Value")
        for target in panel.get("targets", []):
            out.append(PanelQuery(panel["title"], target["refId"], target["expr"], target.get("legendFormat", ""),
                                  columns))  # fmt: skip
    return out


def dashboard_variables(path: Path) -> dict[str, str]:
    """name -> query of each query-type template variable."""
    dash = json.loads(path.read_text())
    out = {}
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out[v["name"]] = q["query"] if isinstance(q, dict) else q
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables ($name, ${name}, [[name]]) longest name first."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("[[" + name + "]]", values[name])
        expr = re.sub(r"\$" + re.escape(name) + r"(?![A-Za-z0-9_])", lambda _m, v=values[name]: v, expr)
    return expr


def label_values_query(query: str) -> tuple[str, str]:
    """``label_values(selector, label)`` -> (PromQL returning that label, label)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", query)
    if not m:
        raise ValueError(f"unsupported variable query {query!r}")
    return f"group by ({m.group(2)}) ({m.group(1)})", m.group(2)


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str


def alert_rules(rules_dir: Path) -> list[AlertRule]:
    out = []
    for f in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(f.read_text())["groups"]:
            for rule in group["rules"]:
                out.append(AlertRule(rule.get("alert") or rule["record"], rule["expr"]))
    return out


def scaling_queries(scaled_object: Path) -> dict[str, str]:
    """A KEDA ScaledObject's Prometheus triggers: trigger name -> query."""
    spec = yaml.safe_load(scaled_object.read_text())["spec"]
    return {t["name"]: t["metadata"]["query"] for t in spec["triggers"] if t["type"] == "prometheus"}
