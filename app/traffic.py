"""Per-model traffic computed from the server's own Prometheus metrics, for the status panel of
the playground (``GET /status``): request rate, error ratio and p99 latency over a sliding window.

Errors are split as the dashboard splits them: client errors (4xx: bad request, unknown model) and
server errors (everything else but success and cancelled: unavailable, training, timeout, rejected,
server_error). The numbers are what Prometheus would compute with ``rate(dendrite_requests_total[1m])`` and
``histogram_quantile(0.99, rate(dendrite_request_duration_seconds_bucket[1m]))`` summed over
protocols, but taken from the server's own metrics (with workers, merged over them all), so the panel
works without a Prometheus server. The window's start is a snapshot of the counters taken by an
earlier call (at most one per second is kept); until the server has been asked for a full window, the
window reaches back to the server's start (with workers, the answering worker's start).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from app.errors import CLIENT_OUTCOMES, NOT_FAILURES
from app.metrics import Metrics

SeriesKey = tuple[str, str]  # (model, version)


@dataclass
class SeriesCounts:
    """Cumulative counts of one model version, summed over protocols."""

    requests: float = 0.0
    client_errors: float = 0.0
    server_errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound (inf included) -> cumulative count

    def minus(self, earlier: "SeriesCounts") -> "SeriesCounts":
        return SeriesCounts(
            self.requests - earlier.requests,
            self.client_errors - earlier.client_errors,
            self.server_errors - earlier.server_errors,
            {le: n - earlier.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )


Snapshot = dict[SeriesKey, SeriesCounts]


@dataclass
class Traffic:
    window_seconds: float
    requests_per_second: float
    client_error_ratio: float | None  # None: no requests in the window
    server_error_ratio: float | None
    p99_seconds: float | None


def snapshot(metrics: Metrics) -> Snapshot:
    """The request counters and latency buckets of every model version now."""
    counts: Snapshot = {}

    def series(labels: dict[str, str]) -> SeriesCounts:
        return counts.setdefault((labels["model"], labels["version"]), SeriesCounts())

    for family in metrics.merged(metrics.requests, metrics.request_duration):
        for sample in family.samples:
            if sample.name.startswith("dendrite_requests") and sample.name.endswith("_total"):
                entry = series(sample.labels)
                entry.requests += sample.value
                outcome = sample.labels.get("outcome")
                if outcome in CLIENT_OUTCOMES:
                    entry.client_errors += sample.value
                elif outcome not in NOT_FAILURES:
                    entry.server_errors += sample.value
            elif sample.name.endswith("_bucket"):
                entry = series(sample.labels)
                le = float(sample.labels["le"])
                entry.buckets[le] = entry.buckets.get(le, 0.0) + sample.value
    return counts


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket that holds rank
    ``q * count``; the highest finite bound when that is the +Inf bucket; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-1] if not math.isinf(bounds[-1]) else lower_bound


class TrafficWindow:
    """Sliding-window rates from successive snapshots of a ``Metrics`` registry."""

    def __init__(self, metrics: Metrics, window_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, min_spacing_seconds: float = 1.0):  # fmt: skip
        self.metrics = metrics
        self.window = window_seconds
        self.clock = clock
        self.min_spacing = min_spacing_seconds
        # the first baseline: the counters now (zero at the server's start; with workers, a restarted
        # worker finds what the others counted)
        self.history: deque[tuple[float, Snapshot]] = deque([(clock(), snapshot(metrics))])

    def traffic(self) -> tuple[float, dict[SeriesKey, Traffic]]:
        """(the window's length in seconds, each model version's traffic in it)."""
        now = self.clock()
        current = snapshot(self.metrics)
        # baseline: the newest snapshot at least a window old, else the oldest one there is
        while len(self.history) > 1 and self.history[1][0] <= now - self.window:
            self.history.popleft()
        start, baseline = self.history[0]
        if now - self.history[-1][0] >= self.min_spacing:
            self.history.append((now, current))
        elapsed = max(now - start, 1e-9)
        out: dict[SeriesKey, Traffic] = {}
        for key, counts in current.items():
            delta = counts.minus(baseline.get(key, SeriesCounts()))
            out[key] = Traffic(
                window_seconds=elapsed,
                requests_per_second=delta.requests / elapsed,
                client_error_ratio=delta.client_errors / delta.requests if delta.requests > 0 else None,
                server_error_ratio=delta.server_errors / delta.requests if delta.requests > 0 else None,
                p99_seconds=quantile(0.99, delta.buckets),
            )
        return elapsed, out


def model_status(index: Iterable[dict], tasks: dict[str, str], traffic: dict[SeriesKey, Traffic],
                 window_seconds: float) -> list[dict]:  # fmt: skip
    """Repository index rows with each model's task and its traffic (zeros when it had none).

    Requests refused before a version was chosen (a body that does not decode) are counted with
    version "": they go into the model's newest version's row, so its error ratios see them."""
    index = list(index)
    newest: dict[str, int] = {}
    for row in index:
        if (row.get("version") or "").isdigit():
            newest[row["name"]] = max(newest.get(row["name"], 0), int(row["version"]))
    rows = []
    for row in index:
        version = row.get("version") or ""
        seen = traffic.get((row["name"], version))
        if version and newest.get(row["name"]) == int(version):
            seen = _combined(seen, traffic.get((row["name"], "")))
        rows.append({
            **row,
            "task": tasks.get(row["name"]),
            "requests_per_second": seen.requests_per_second if seen else 0.0,
            "client_error_ratio": seen.client_error_ratio if seen else None,
            "server_error_ratio": seen.server_error_ratio if seen else None,
            "p99_seconds": seen.p99_seconds if seen else None,
            "window_seconds": seen.window_seconds if seen else window_seconds,
        })  # fmt: skip
    return rows


def _combined(a: Traffic | None, b: Traffic | None) -> Traffic | None:
    """Two series' traffic in one window as one: rates add, ratios weighted by requests."""
    if a is None or b is None:
        return a or b
    weights = (a.requests_per_second, b.requests_per_second)
    total = sum(weights)

    def ratio(x: float | None, y: float | None) -> float | None:
        parts = [(r, w) for r, w in zip((x, y), weights) if r is not None and w > 0]
        return sum(r * w for r, w in parts) / sum(w for _, w in parts) if parts else None

    return Traffic(window_seconds=a.window_seconds, requests_per_second=total,
                   client_error_ratio=ratio(a.client_error_ratio, b.client_error_ratio),
                   server_error_ratio=ratio(a.server_error_ratio, b.server_error_ratio),
                   p99_seconds=a.p99_seconds if a.p99_seconds is not None else b.p99_seconds)  # fmt: skip
