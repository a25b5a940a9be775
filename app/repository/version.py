"""One loaded model version: its state, its graphs (each a session pool and a dynamic batcher) and
its task pipeline, and the calls that serve through them.

Loading (sessions and warm-up: ``app.runtime.graphs``; batchers: ``app.batching.wiring``) runs on
a worker thread; only a fully warmed version reports READY. Any failure leaves *this* version
UNAVAILABLE with the reason.
"""

from __future__ import annotations

import asyncio
import enum
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from app.batching.batcher import BatchResult
from app.batching.wiring import MetricsObserver, graph_batcher
from app.protocol import deadlines
from app.config import Settings
from app.errors import InvalidInput, ModelNotReady
from app.metrics import Metrics
from app.protocol.model_config import ModelConfig
from app.runtime import workers
from app.runtime.graphs import Graph, load_graphs, warm_up
from app.runtime.session import RuntimeOptions


class State(str, enum.Enum):
    PENDING = "PENDING"  # no version yet, a trainer is producing one (app.repository.training)
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    UNLOADING = "UNLOADING"


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
        from app.tasks.registry import build_pipeline, optional_graphs

        cfg = self.config  # effective: server settings already resolved into it (effective_config)
        # the intra-op threads (capped for workers) are in cfg.instance_group already: only the rest here
        options = RuntimeOptions(allow_spinning=settings.allow_spinning, cpu_mem_arena=settings.cpu_mem_arena)
        label = f"{self.name}/{self.version}"
        self.graphs = load_graphs(self.path, cfg, options, label, optional_graphs(cfg))
        if cfg.warmup.enabled:
            warm_up(self.graphs, cfg, label)
        # Task files (labels, tokenizer, catalogue) are part of the version: a bad one fails the load.
        self.pipeline = build_pipeline(self.path, cfg, settings,
                                       {n: [s.name for s in g.inputs] for n, g in self.graphs.items()})

    def start_batchers(self, settings: Settings, metrics: Metrics) -> None:
        observer = MetricsObserver(metrics, *self.key)
        for g in self.graphs.values():
            name = f"{self.name}/{self.version}" + (f"/{g.name}" if len(self.graphs) > 1 else "")
            g.batcher = graph_batcher(g.pool, self.config, settings, observer, name)
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
