"""The status panel's numbers (``app.traffic``): Prometheus' histogram_quantile and a sliding
window of request rates over the in-process metrics."""

from __future__ import annotations

import math

import pytest

from app.metrics import Metrics
from app.traffic import TrafficWindow, model_status, quantile


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def observe(metrics: Metrics, seconds: float, n: int = 1, outcome: str = "success", protocol: str = "rest"):
    for _ in range(n):
        metrics.requests.labels("m", "1", protocol, outcome).inc()
        metrics.request_duration.labels("m", "1", protocol).observe(seconds)


def test_quantile_interpolates_like_prometheus():
    # 100 observations: 50 in (0, 0.1], 49 in (0.1, 0.2], 1 in (0.2, 0.4]
    buckets = {0.1: 50, 0.2: 99, 0.4: 100, math.inf: 100}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.99, buckets) == pytest.approx(0.2)
    assert quantile(0.995, buckets) == pytest.approx(0.3)
    assert quantile(0.25, buckets) == pytest.approx(0.05)
    assert quantile(0.99, {0.1: 0, math.inf: 0}) is None
    assert quantile(0.99, {0.1: 1, 0.2: 1, math.inf: 5}) == 0.2  # in +Inf: the highest finite bound


def test_window_rates_error_ratios_and_p99():
    metrics, clock = Metrics(), Clock()
    window = TrafficWindow(metrics, window_seconds=60, clock=clock)
    observe(metrics, 0.004, n=8)
    observe(metrics, 0.004, n=1, protocol="grpc")
    observe(metrics, 0.3, n=1, outcome="client_error")
    for outcome in ("not_found", "training", "server_error", "cancelled"):
        observe(metrics, 0.001, n=1, outcome=outcome)
    clock.now += 14
    seconds, traffic = window.traffic()
    assert seconds == 14
    t = traffic[("m", "1")]
    assert t.requests_per_second == pytest.approx(1.0)
    assert t.client_error_ratio == pytest.approx(2 / 14) and t.server_error_ratio == pytest.approx(2 / 14)
    assert 0.25 < t.p99_seconds <= 0.5  # the slow request is in the top 1%

    # more than a minute later with no traffic, the old requests have left the window
    clock.now += 65
    window.traffic()
    clock.now += 5
    seconds, traffic = window.traffic()
    assert seconds == pytest.approx(70) and traffic  # baseline: the newest snapshot >= 60 s old
    assert traffic[("m", "1")].requests_per_second == 0
    assert traffic[("m", "1")].p99_seconds is None and traffic[("m", "1")].client_error_ratio is None

    observe(metrics, 0.002, n=30)
    clock.now += 30
    seconds, traffic = window.traffic()
    assert traffic[("m", "1")].requests_per_second == pytest.approx(30 / seconds)
    assert traffic[("m", "1")].p99_seconds <= 0.0025 and len(window.history) < 10


def test_model_status_rows_cover_models_without_traffic():
    index = [{"name": "m", "version": "1", "state": "READY", "reason": ""},
             {"name": "idle", "version": "2", "state": "LOADING", "reason": ""},
             {"name": "bad", "state": "UNAVAILABLE", "reason": "no versions"}]
    metrics, clock = Metrics(), Clock()
    window = TrafficWindow(metrics, clock=clock)
    observe(metrics, 0.01, n=4)
    clock.now += 2
    seconds, traffic = window.traffic()
    rows = model_status(index, {"m": "sentiment", "idle": "image"}, traffic, seconds)
    assert rows[0]["task"] == "sentiment" and rows[0]["requests_per_second"] == pytest.approx(2.0)
    assert rows[1] == {**index[1], "task": "image", "requests_per_second": 0.0, "client_error_ratio": None,
                       "server_error_ratio": None,
                       "p99_seconds": None, "window_seconds": 2.0}
    assert rows[2]["task"] is None and rows[2]["state"] == "UNAVAILABLE"


def test_requests_refused_before_a_version_was_chosen_count_in_the_models_newest_row():
    """A body that does not decode is counted with version="" (no version was chosen): the panel puts
    it in the model's newest version's row, so its client-error ratio sees every refused request."""
    index = [{"name": "m", "version": "1", "state": "READY", "reason": ""},
             {"name": "m", "version": "2", "state": "READY", "reason": ""}]  # fmt: skip
    metrics, clock = Metrics(), Clock()
    window = TrafficWindow(metrics, clock=clock)
    for _ in range(2):
        metrics.requests.labels("m", "2", "rest", "success").inc()
    metrics.requests.labels("m", "2", "rest", "client_error").inc()
    for _ in range(7):
        metrics.requests.labels("m", "", "rest", "client_error").inc()
    clock.now += 2
    seconds, traffic = window.traffic()
    rows = model_status(index, {"m": "generic"}, traffic, seconds)
    assert rows[0]["requests_per_second"] == 0.0 and rows[0]["client_error_ratio"] is None
    assert rows[1]["requests_per_second"] == pytest.approx(5.0)  # 10 requests in 2 s
    assert rows[1]["client_error_ratio"] == pytest.approx(0.8) and rows[1]["server_error_ratio"] == 0
