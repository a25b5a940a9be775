"""How a model version's graphs get their batchers: the batching settings of its config.yaml, and the
batcher's metric hooks bound to the version's labels."""

from __future__ import annotations

from app.batching.batcher import DynamicBatcher, Runner
from app.config import Settings
from app.metrics import Metrics
from app.protocol.model_config import ModelConfig


class MetricsObserver:
    """Batcher hooks bound to one model version's metric children (label lookups done once)."""

    def __init__(self, metrics: Metrics, model: str, version: str):
        self._m = metrics
        self._labels = (model, version)
        self._pending = metrics.pending.labels(model, version)
        self._queue = metrics.queue_duration.labels(model, version)
        self._compute = metrics.compute_duration.labels(model, version)
        self._batch = metrics.batch_size.labels(model, version)
        self._inferences = metrics.inference_count.labels(model, version)
        self._executions = metrics.execution_count.labels(model, version)

    def queued(self, delta: int) -> None:
        self._pending.inc(delta)

    def dropped(self, reason: str) -> None:
        self._m.rejected.labels(*self._labels, reason).inc()

    def executed(self, rows: int, compute_s: float, queue_waits: list[float]) -> None:
        self._compute.observe(compute_s)
        self._batch.observe(rows)
        self._inferences.inc(rows)
        self._executions.inc()
        for w in queue_waits:
            self._queue.observe(w)


def graph_batcher(runner: Runner, config: ModelConfig, settings: Settings, observer: MetricsObserver,
                  name: str) -> DynamicBatcher:  # fmt: skip
    """A started batcher for one graph of a model version, as its config.yaml asks."""
    db = config.dynamic_batching
    batcher = DynamicBatcher(
        runner,
        max_batch_size=config.max_batch_size,
        max_queue_delay_s=db.max_queue_delay_microseconds / 1e6,
        delay_policy=db.delay_policy,
        max_queue_size=db.max_queue_size,  # effective: never None
        batching=config.batching,
        retry_after_s=settings.retry_after_seconds,
        observer=observer,
        name=name,
    )
    batcher.start()
    return batcher
