"""One loaded model version: its graphs, each with a session pool and a dynamic batcher.

Loading (sessions, validation, warm-up) runs on a worker thread; only a fully warmed
version reports READY. Any failure leaves *this* version UNAVAILABLE with the reason.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from app.batching.batcher import BatchResult, DynamicBatcher
from app.protocol import deadlines
from app.protocol.datatypes import OIP_TO_NUMPY
from app.config import Settings
from app.errors import InvalidInput, ModelNotReady
from app.metrics import Metrics
from app.protocol.model_config import ModelConfig, TensorSpec
from app.runtime import workers
from app.runtime.session import RuntimeOptions, SessionPool, graph_specs

log = logging.getLogger(__name__)


class State(str, enum.Enum):
    PENDING = "PENDING"  # no version yet, a trainer is producing one (app.repository.training)
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    UNLOADING = "UNLOADING"


class _Observer:
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


@dataclass
class Graph:
    name: str
    pool: SessionPool
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batcher: DynamicBatcher | None = None


@dataclass(eq=False)
class ModelVersion:
    name: str
    version: int
    config: ModelConfig
    path: Path
    state: State = State.LOADING
    reason: str = ""
    graphs: dict[str, Graph] = field(default_factory=dict)
    pipeline: Any = None  # app.tasks.base.Pipeline for task models
    loaded_at: float = 0.0
    admitted: int = 0  # task requests inside this version's pipeline (see admit)

    @property
    def key(self) -> tuple[str, str]:
        return self.name, str(self.version)

    @property
    def default_graph(self) -> Graph:
        return self.graphs[next(iter(self.config.graphs))]

    @property
    def providers(self) -> list[str]:
        return [p for g in self.graphs.values() for p in g.pool.providers]

    def require_ready(self) -> None:
        if self.state is not State.READY:
            raise ModelNotReady(f"model {self.name!r} version {self.version} is {self.state.value}"
                                + (f": {self.reason}" if self.reason else ""))  # fmt: skip

    @contextmanager
    def admit(self) -> Iterator[None]:
        """A task request's whole pipeline (pre-processing, every graph run of a decode loop,
        post-processing) belongs to the version that admitted it: draining waits for it, and its
        graph runs are not refused once the version is UNLOADING."""
        self.require_ready()
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    def graph(self, name: str | None) -> Graph:
        if name is None:
            return self.default_graph
        try:
            return self.graphs[name]
        except KeyError:
            raise InvalidInput(
                f"model {self.name!r} has no graph {name!r} (graphs: {', '.join(self.graphs)})"
            ) from None

    # ------------------------------------------------------------------ loading
    def load_sync(self, settings: Settings) -> None:
        """Create sessions, check the config against the graphs, warm up. Runs on a worker thread."""
        options = RuntimeOptions(settings.intra_op_threads, settings.allow_spinning, settings.cpu_mem_arena,
                                 settings.intra_op_thread_cap())  # fmt: skip
        cfg = self.config
        batched = cfg.max_batch_size > 0
        group = cfg.instance_group
        if settings.instance_kind != "config":
            group = group.model_copy(update={"kind": settings.instance_kind})
        for i, (gname, file) in enumerate(cfg.graphs.items()):
            path = self.path / file
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing")
            pool = SessionPool(path, group, options, label=f"{self.name}/{self.version}/{gname}")
            g_in, g_out = graph_specs(pool.sessions[0], batched)
            # Explicit inputs/outputs in config.yaml describe the default (first) graph.
            inputs = _reconcile(cfg.inputs, g_in, "inputs", path) if i == 0 and cfg.inputs else g_in
            outputs = _reconcile(cfg.outputs, g_out, "outputs", path) if i == 0 and cfg.outputs else g_out
            self.graphs[gname] = Graph(gname, pool, inputs, outputs)
        if cfg.warmup.enabled:
            self._warm_up()
        # Task files (labels, tokenizer, catalogue) are part of the version: a bad one fails the load.
        from app.tasks.registry import build_pipeline

        self.pipeline = build_pipeline(self.path, cfg, settings,
                                       {n: [s.name for s in g.inputs] for n, g in self.graphs.items()})

    def _warm_up(self) -> None:
        """One run per configured batch size on every instance, so the first real request of
        each shape is not the slow one (ORT allocates and plans on first sight of a shape)."""
        cfg = self.config
        sizes = cfg.warmup.batch_sizes or sorted({1, max(1, cfg.max_batch_size)})
        start = time.perf_counter()
        for g in self.graphs.values():
            for size in sizes:
                feeds = {}
                for spec in g.inputs:
                    dims = list(cfg.warmup.dims.get(spec.name, [1 if d == -1 else d for d in spec.shape]))
                    shape = ([size] if cfg.max_batch_size > 0 else []) + dims
                    dtype = OIP_TO_NUMPY[spec.datatype]
                    feeds[spec.name] = np.zeros(shape, dtype=dtype if spec.datatype != "BYTES" else object)
                for instance in range(g.pool.count):
                    g.pool.run_sync(instance, feeds)
        log.info("%s/%s warmed up at batch sizes %s in %.2fs", self.name, self.version, sizes,
                 time.perf_counter() - start)  # fmt: skip

    def start_batchers(self, settings: Settings, metrics: Metrics) -> None:
        cfg = self.config
        db = cfg.dynamic_batching
        observer = _Observer(metrics, *self.key)
        for g in self.graphs.values():
            g.batcher = DynamicBatcher(
                g.pool,
                max_batch_size=cfg.max_batch_size,
                max_queue_delay_s=db.max_queue_delay_microseconds / 1e6,
                delay_policy=db.delay_policy,
                max_queue_size=db.max_queue_size or settings.default_max_queue_size,
                batching=cfg.batching,
                retry_after_s=settings.retry_after_seconds,
                observer=observer,
                name=f"{self.name}/{self.version}" + (f"/{g.name}" if len(self.graphs) > 1 else ""),
            )
            g.batcher.start()
        if self.pipeline is not None:
            self.pipeline.observe(observer)
        for g in self.graphs.values():
            for i, provider in enumerate(g.pool.providers):
                metrics.instance_info.labels(self.name, str(self.version), g.name, str(i), provider).set(1)

    # ------------------------------------------------------------------ serving
    def task_infer(self, deadline: float | None) -> "BatchedInfer":
        # The default deadline bounds the whole task request, not each graph run (app.protocol.deadlines).
        return BatchedInfer(self, self._with_default_deadline(deadline))

    def _with_default_deadline(self, deadline: float | None) -> float | None:
        return deadlines.or_default(deadline, self.config.dynamic_batching.default_timeout_microseconds)

    async def infer(
        self, inputs: dict[str, np.ndarray], *, graph: str | None = None, deadline: float | None = None,
        admitted: bool = False,
    ) -> BatchResult:
        """Run already-validated inputs through a graph's batcher (``admitted``: for a request
        inside ``admit``, which may go on while the version drains)."""
        if not admitted:
            self.require_ready()
        g = self.graph(graph)
        assert g.batcher is not None
        rows = next(iter(inputs.values())).shape[0] if self.config.max_batch_size > 0 else 1
        return await g.batcher.submit(inputs, rows, self._with_default_deadline(deadline))

    @property
    def busy(self) -> bool:
        return any(g.batcher is not None and g.batcher.busy for g in self.graphs.values())

    async def drain(self, timeout_s: float) -> bool:
        """Wait for admitted task requests, then for queued and running batches."""
        deadline = time.monotonic() + timeout_s
        while self.admitted and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        timeout_s = max(0.0, deadline - time.monotonic())
        results = await asyncio.gather(*(g.batcher.drain(timeout_s) for g in self.graphs.values() if g.batcher))
        return all(results)

    async def close(self) -> None:
        for g in self.graphs.values():
            if g.batcher:
                await g.batcher.close()
        await workers.load(lambda: [g.pool.close() for g in self.graphs.values()])


class BatchedInfer:
    """The ``Infer`` a task pipeline calls for one request: graph runs through the version's
    batchers under the request's deadline. ``waited`` sums the seconds spent waiting on them;
    the rest of the request's time in the pipeline is pre/post-processing."""

    def __init__(self, version: ModelVersion, deadline: float | None):
        self.version = version
        self.deadline = deadline
        self.waited = 0.0

    async def __call__(self, inputs: dict[str, np.ndarray], graph: str | None = None) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        try:
            return (await self.version.infer(inputs, graph=graph, deadline=self.deadline, admitted=True)).outputs
        finally:
            self.waited += time.perf_counter() - start

    def with_deadline(self, deadline: float | None) -> "BatchedInfer":
        return BatchedInfer(self.version, deadline)


def _reconcile(declared: list[TensorSpec], actual: list[TensorSpec], what: str, path: Path) -> list[TensorSpec]:
    """config.yaml may restate (and narrow) the graph's tensors, but must agree with it."""
    by_name = {t.name: t for t in actual}
    for spec in declared:
        real = by_name.get(spec.name)
        if real is None:
            raise ValueError(f"config {what}: {spec.name!r} is not in {path.name} (it has {', '.join(by_name)})")
        if real.datatype != spec.datatype:
            raise ValueError(f"config {what}: {spec.name!r} is {spec.datatype} but the graph says {real.datatype}")
        if len(real.shape) != len(spec.shape) or any(r not in (-1, s) for r, s in zip(real.shape, spec.shape)):
            raise ValueError(f"config {what}: {spec.name!r} shape {spec.shape} does not fit the graph's {real.shape}")
    if what == "inputs" and {s.name for s in declared} != set(by_name):
        raise ValueError(f"config inputs must list every graph input ({', '.join(by_name)})")
    return declared
