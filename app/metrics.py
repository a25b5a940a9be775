"""Prometheus metrics, all prefixed ``dendrite_``, all durations in seconds as histograms
(summaries cannot be aggregated across replicas).

Each server owns one ``Metrics`` (its own registry), so several servers can live in one
process (tests) without clashing. ``GET /metrics`` exposes ``Metrics.registry``.

With several workers (``app.workers``), ``PROMETHEUS_MULTIPROC_DIR`` is set before a worker imports
prometheus_client, so every value lives in a file there, and ``GET /metrics`` of any worker merges
them all: counters and histograms summed, each gauge as its ``multiprocess_mode`` says; ``process_*``
(CPU, memory, open files) sum the supervisor and every worker, so they still mean the server.

Average batch size is ``rate(dendrite_inference_count_total) / rate(dendrite_execution_count_total)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Every counter and histogram would otherwise also export a `*_created` series per label set:
# twice the series for a timestamp no rule or panel reads.
disable_created_metrics()

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MODEL_STATES = ("PENDING", "LOADING", "READY", "UNAVAILABLE", "UNLOADING")

__all__ = ["Metrics", "CONTENT_TYPE"]
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ServerProcessesCollector:
    """``process_cpu_seconds_total``, ``process_resident_memory_bytes`` and ``process_open_fds`` of a
    server of several processes: ``root`` (the supervisor) and its children, summed (Linux /proc)."""

    def __init__(self, root: int):
        self.root = root

    def collect(self):
        try:
            children = Path(f"/proc/{self.root}/task/{self.root}/children").read_text().split()
        except OSError:
            children = []
        cpu = rss = fds = 0.0
        for pid in [self.root, *map(int, children)]:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:  # gone meanwhile
                continue
            cpu += (int(stat[11]) + int(stat[12])) / _TICKS  # utime, stime
            rss += int(stat[21]) * _PAGE
        yield CounterMetricFamily("process_cpu_seconds", "CPU seconds of the server's processes.", value=cpu)
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory of the server's processes.",
                                value=rss)  # fmt: skip
        yield GaugeMetricFamily("process_open_fds", "Open file descriptors of the server's processes.", value=fds)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if self.multiprocess_dir:
            self.exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposed, self.multiprocess_dir)
            self.exposed.register(ServerProcessesCollector(os.getppid()))
        else:
            self.exposed = r
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        req = ("model", "version", "protocol")
        mv = ("model", "version")
        self.requests = Counter(
            "dendrite_requests", "Requests answered, by outcome (success, client_error, not_found, rejected, "
            "timeout, unavailable, training, cancelled (client gone), server_error). A model the server does not "
            "know counts as model=\"\"; a request refused before a version was chosen has version=\"\".",
            (*req, "outcome"), registry=r)  # fmt: skip
        self.request_duration = Histogram(
            "dendrite_request_duration_seconds", "End-to-end request latency inside the server.", req,
            buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.queue_duration = Histogram(
            "dendrite_queue_duration_seconds", "Time a request waited in the batcher queue.", mv,
            buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.compute_duration = Histogram(
            "dendrite_compute_duration_seconds", "ONNX Runtime time per executed batch.", mv,
            buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.batch_size = Histogram(
            "dendrite_batch_size", "Rows per executed batch.", mv, buckets=BATCH_BUCKETS, registry=r)
        self.inference_count = Counter(
            "dendrite_inference_count", "Rows (samples) computed.", mv, registry=r)
        self.execution_count = Counter(
            "dendrite_execution_count", "Batches executed (session runs).", mv, registry=r)
        self.processing_duration = Histogram(
            "dendrite_processing_duration_seconds", "Task pre- and post-processing time per /predict request: "
            "request time inside the task pipeline minus the time spent waiting on batched inference.", mv,
            buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.pending = Gauge(
            "dendrite_pending_requests", "Requests queued and not yet computed.", mv, registry=r,
            multiprocess_mode="livesum")  # fmt: skip
        self.rejected = Counter(
            "dendrite_rejected_requests", "Requests dropped before compute (translation: also a caller withdrawn "
            "mid-decode), by reason (queue_full, deadline, cancelled).", (*mv, "reason"), registry=r)  # fmt: skip
        self.model_ready = Gauge(
            "dendrite_model_ready", "1 when the model version serves requests (in every worker), else 0.", mv,
            registry=r, multiprocess_mode="livemin")  # fmt: skip
        self.load_duration = Histogram(
            "dendrite_model_load_duration_seconds", "Time to load a model version (sessions, checks, warm-up), "
            "successful or not.", mv, buckets=LOAD_BUCKETS, registry=r)  # fmt: skip
        self.load_failures = Counter(
            "dendrite_model_load_failures", "Model version loads that failed (the reason is in the log and the "
            "repository index).", mv, registry=r)  # fmt: skip
        self.instance_info = Gauge(
            "dendrite_instance_info", "One series per ONNX Runtime session; `provider` is what it really runs on "
            "(session.get_providers()[0]). (`session`, not `instance`: Prometheus owns that label.)",
            (*mv, "graph", "session", "provider"), registry=r,
            multiprocess_mode="liveall")  # fmt: skip (sessions are per worker: a `pid` label each)

    def track_model_states(self, states: Callable[[], Iterable[tuple[str, str]]]) -> None:
        """Export ``dendrite_model_state{model, state}`` (1 for the model's state, 0 for the others) for
        every ``(model, state)`` that ``states`` gives at scrape time: every model of the repository,
        including those with no version to put a per-version series on."""
        self.exposed.register(_ModelStates(states))  # per worker: each has loaded the same repository

    def expose(self) -> bytes:
        return generate_latest(self.exposed)

    def merged(self, *metrics) -> list:
        """The families of ``metrics`` as ``/metrics`` shows them: with workers, summed over every worker
        (``metric.collect()`` alone would read this worker's file only). One pass over the workers'
        files for all of them: each pass reads every file."""
        if not self.multiprocess_dir:
            return [family for metric in metrics for family in metric.collect()]
        names = {metric.describe()[0].name for metric in metrics}
        return [family for family in self.exposed.collect() if family.name in names]

    def forget_version(self, model: str, version: str) -> None:
        """Drop per-version gauges of an unloaded version so dashboards do not show ghosts. (With
        workers a series cannot be removed from the files: it is set to 0 instead.)"""
        children = [(g, labels) for g in (self.pending, self.model_ready, self.instance_info)
                    for labels in list(g._metrics)  # noqa: SLF001 - prometheus_client has no public lookup
                    if labels[0] == model and labels[1] == version]  # fmt: skip
        for gauge, labels in children:
            if self.multiprocess_dir:
                gauge.labels(*labels).set(0)
            else:
                gauge.remove(*labels)


class _ModelStates(Collector):
    def __init__(self, states: Callable[[], Iterable[tuple[str, str]]]):
        self.states = states

    def describe(self):  # no samples at registration: the repository is not loaded yet
        return [GaugeMetricFamily("dendrite_model_state", "", labels=("model", "state"))]

    def collect(self):
        family = GaugeMetricFamily(
            "dendrite_model_state", "1 for the state each model of the repository is in (PENDING: its version is "
            "being trained; LOADING; READY; UNAVAILABLE; UNLOADING), 0 for the other states.",
            labels=("model", "state"))
        for model, current in self.states():
            for state in MODEL_STATES:
                family.add_metric([model, state], 1.0 if state == current else 0.0)
        yield family
