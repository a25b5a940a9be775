"""A model version's graphs as loaded: one session pool per graph file, with its tensors (config.yaml's
``inputs``/``outputs`` reconciled with what the graph declares), and the warm-up runs that make the
first real request of each shape no slower than the rest."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.protocol.datatypes import OIP_TO_NUMPY
from app.protocol.model_config import ModelConfig, TensorSpec
from app.runtime.session import RuntimeOptions, SessionPool, graph_specs

if TYPE_CHECKING:
    from app.batching.batcher import DynamicBatcher

log = logging.getLogger(__name__)


@dataclass
class Graph:
    name: str
    pool: SessionPool
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batcher: "DynamicBatcher | None" = None  # set when the version starts serving


def load_graphs(version_dir: Path, config: ModelConfig, options: RuntimeOptions, label: str,
                optional: frozenset[str] = frozenset()) -> dict[str, Graph]:  # fmt: skip
    """Sessions for every graph of ``config`` in ``version_dir`` (blocking: run on a loader thread);
    an ``optional`` graph whose file is missing is left out."""
    batched = config.max_batch_size > 0
    graphs: dict[str, Graph] = {}
    for i, (name, file) in enumerate(config.graphs.items()):
        path = version_dir / file
        if not path.is_file():
            if name in optional:
                log.info("%s: no %s in this version; graph %r left out", label, file, name)
                continue
            raise FileNotFoundError(f"{path} is missing")
        pool = SessionPool(path, config.instance_group, options, label=f"{label}/{name}")
        g_in, g_out = graph_specs(pool.sessions[0], batched)
        # Explicit inputs/outputs in config.yaml describe the default (first) graph.
        inputs = reconcile(config.inputs, g_in, "inputs", path) if i == 0 and config.inputs else g_in
        outputs = reconcile(config.outputs, g_out, "outputs", path) if i == 0 and config.outputs else g_out
        graphs[name] = Graph(name, pool, inputs, outputs)
    return graphs


def warm_up(graphs: dict[str, Graph], config: ModelConfig, label: str) -> None:
    """One run per configured batch size on every instance, so the first real request of
    each shape is not the slow one (ORT allocates and plans on first sight of a shape)."""
    sizes = config.warmup.batch_sizes  # the effective config's: never None
    start = time.perf_counter()
    for g in graphs.values():
        for size in sizes:
            feeds = {}
            for spec in g.inputs:
                dims = list(config.warmup.dims.get(spec.name, [1 if d == -1 else d for d in spec.shape]))
                shape = ([size] if config.max_batch_size > 0 else []) + dims
                dtype = OIP_TO_NUMPY[spec.datatype]
                feeds[spec.name] = np.zeros(shape, dtype=dtype if spec.datatype != "BYTES" else object)
            for instance in range(g.pool.count):
                g.pool.run_sync(instance, feeds)
    log.info("%s warmed up at batch sizes %s in %.2fs", label, sizes, time.perf_counter() - start)


def reconcile(declared: list[TensorSpec], actual: list[TensorSpec], what: str, path: Path) -> list[TensorSpec]:
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
