"""The helpers the observability test relies on: if the signal splitter returned the whole
condition (or nothing), the "signals return series" check would prove nothing."""

from __future__ import annotations

import pytest

from tests.deploy import promql


@pytest.mark.parametrize("expr,expected", [
    ('up{job="dendrite"} == 0', ['up{job="dendrite"}']),
    ('absent(up{job="dendrite"})', ['up{job="dendrite"}']),
    ("(sum by (m) (rate(a[5m])) / sum by (m) (rate(b[5m]))) > 0.05\nand\nsum by (m) (rate(b[5m])) > 0.1",
     ["sum by (m) (rate(a[5m])) / sum by (m) (rate(b[5m]))", "sum by (m) (rate(b[5m]))"]),
    ('x{a!="b", c=~"d|e"} >= bool 1e-3 unless on(i) group_left y', ['x{a!="b", c=~"d|e"}', "y"]),
    ('histogram_quantile(0.99, sum by (le) (rate(h_bucket{s="a>b"}[1m]))) > 0.5',
     ['histogram_quantile(0.99, sum by (le) (rate(h_bucket{s="a>b"}[1m])))']),
    ("brand_new_total > 1 or standby", ["brand_new_total", "standby"]),
])  # fmt: skip
def test_signals(expr, expected):
    assert promql.signals(expr) == expected


def test_substitute_and_label_values():
    expr = 'rate(x{m=~"$model", i=~"${instance}", mm="$models"}[$__rate_interval])'
    values = {"model": "tiny", "instance": "h:1", "__rate_interval": "1m"}
    assert promql.substitute(expr, values) == 'rate(x{m=~"tiny", i=~"h:1", mm="$models"}[1m])'
    assert promql.label_values_query('label_values(up{job="d"}, instance)') == ('group by (instance) (up{job="d"})',
                                                                               "instance")  # fmt: skip
    with pytest.raises(ValueError):
        promql.label_values_query("query_result(up)")


def test_every_shipped_alert_has_signals():
    rules = promql.alert_rules(promql.Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules")
    assert rules
    for rule in rules:
        parts = promql.signals(rule.expr)
        assert parts and all(p != " ".join(rule.expr.split()) for p in parts), rule.name
