"""The data plane: the one core every transport calls.

REST routes and gRPC methods translate their wire format into the dataclasses below, call a
``DataPlane`` method, and translate the result back. Validation, batching, metrics and
errors (``app.errors``) all live behind this line, so both transports behave identically.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator

import numpy as np

from app import __version__
from app.protocol import deadlines
from app.protocol.datatypes import oip_datatype
from app.config import Settings
from app.errors import DendriteError, Forbidden, InvalidInput, ModelNotReady, NotFound, outcome_of
from app.metrics import Metrics
from app.protocol.model_config import ModelConfig, TensorSpec
from app.protocol.types import InferRequest, InferResponse, RequestedOutput, Tensor
from app.repository.version import ModelVersion, State
from app.repository.manager import ModelRepository
from app.tasks.base import TaskRequest

log = logging.getLogger(__name__)

EXTENSIONS = ["binary_tensor_data", "model_repository", "health", "metrics"]


@dataclass
class Observed:
    """The labels of a request being counted: the model named, then the version that served it."""

    model: str
    version: str = ""

    def resolved(self, mv: ModelVersion) -> ModelVersion:
        self.model, self.version = mv.name, str(mv.version)
        return mv


class DataPlane:
    def __init__(self, settings: Settings, repository: ModelRepository, metrics: Metrics):
        self.settings = settings
        self.repository = repository
        self.metrics = metrics
        self.started = False  # the initial repository load finished
        self.shutting_down = False
        # With several workers (app.workers): readiness of the others, and repository load/unload
        # through the supervisor so that every worker applies them in one order.
        self.peers_ready: Callable[[], bool] = lambda: True
        self.control: Callable[[str, str], Awaitable[Any]] = self.apply_control

    # ------------------------------------------------------------------ health and metadata
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return not self.not_ready_because()

    def not_ready_because(self) -> str:
        """Why the server is not ready ("" when it is): starting, shutting down, or the models it
        waits for (DENDRITE_STRICT_READINESS says which)."""
        if self.shutting_down:
            return "server is shutting down"
        if not self.started:
            return "server is starting: loading the model repository"
        s = self.settings
        if s.strict_readiness:
            names = self.repository.expected()
        else:
            names = list(s.startup_models) if s.model_control_mode == "explicit" else []
        waiting = self.repository.waiting(names)
        if waiting:
            return f"waiting for {len(waiting)} of {len(names)} model(s) to be READY: {'; '.join(waiting)}"
        if not self.peers_ready():
            return "waiting for the other workers of this server to be ready"
        return ""

    def server_metadata(self) -> dict[str, Any]:
        return {"name": self.settings.server_name, "version": __version__, "extensions": EXTENSIONS}

    def model(self, name: str, version: str | None = None) -> ModelVersion:
        return self.repository.get(name, version)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """False for a known model that is not READY (training, failed, loading); NotFound only for an unknown one."""
        try:
            return self.repository.get(name, version).state is State.READY
        except ModelNotReady:
            return False

    def model_config(self, name: str, version: str | None = None) -> ModelConfig:
        """The configuration a model version really runs with: its config.yaml with the server settings
        resolved (``effective_config``) and, once loaded, its tensors as the graph and config.yaml agree."""
        mv = self.repository.get(name, version)
        if not mv.graphs:
            return mv.config
        return mv.config.model_copy(update={"inputs": mv.default_graph.inputs, "outputs": mv.default_graph.outputs})

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        mv = self.repository.get(name, version)
        entry = self.repository.models[name]
        meta: dict[str, Any] = {
            "name": name,
            "versions": [str(v) for v in sorted(entry.versions)],
            "platform": mv.config.platform,
            "state": mv.state.value,
            "task": mv.config.task,
            "max_batch_size": mv.config.max_batch_size,
        }
        if mv.reason:
            meta["reason"] = mv.reason
        if mv.graphs:
            g = mv.default_graph
            lead = [-1] if mv.config.max_batch_size > 0 else []
            meta["inputs"] = [_spec_json(s, lead) for s in g.inputs]
            meta["outputs"] = [_spec_json(s, lead) for s in g.outputs]
            meta["providers"] = mv.providers
            if len(mv.graphs) > 1:
                meta["graphs"] = {n: {"inputs": [_spec_json(s, lead) for s in gr.inputs],
                                      "outputs": [_spec_json(s, lead) for s in gr.outputs]}
                                  for n, gr in mv.graphs.items()}  # fmt: skip
        else:
            meta["inputs"], meta["outputs"] = [], []
        return meta

    # ------------------------------------------------------------------ inference
    @contextmanager
    def observe(self, model: str | None, protocol: str) -> Iterator["Observed"]:
        """Count every answered request by outcome and time it end to end (used by every entry point),
        including those refused before a version was found (unknown model, training, unavailable).
        The caller sets the version once it has resolved one; an unknown model counts as model=""
        so garbage names cannot grow the series without bound."""
        seen = Observed(model or "")
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            yield seen
        except BaseException as exc:
            error = exc
            raise
        finally:
            if not isinstance(error, GeneratorExit):
                self._count(seen, protocol, error, time.perf_counter() - start)

    @contextmanager
    def refusals(self, model: str | None, protocol: str) -> Iterator[None]:
        """Count a request its transport refuses before handing it over (a body that does not decode, too
        large): the transport wraps its reading and decoding in this, then calls ``infer`` (which counts)."""
        start = time.perf_counter()
        try:
            yield
        except DendriteError as exc:
            self.refused(model, protocol, exc, time.perf_counter() - start)
            raise

    def refused(self, model: str | None, protocol: str, error: DendriteError, seconds: float) -> None:
        """Count one refusal ``refusals`` cannot wrap (one its transport's framework made before the route ran)."""
        self._count(Observed(model or ""), protocol, error, seconds)

    def _count(self, seen: "Observed", protocol: str, error: BaseException | None, seconds: float) -> None:
        labels = (seen.model if seen.model in self.repository.models else "", seen.version, protocol)
        self.metrics.requests.labels(*labels, outcome_of(error)).inc()
        self.metrics.request_duration.labels(*labels).observe(seconds)

    async def infer(
        self, name: str, version: str | None, request: InferRequest, *, protocol: str, deadline: float | None = None
    ) -> InferResponse:
        with self.observe(name, protocol) as seen:
            mv = seen.resolved(self.repository.get(name, version))
            mv.require_ready()
            graph_name = request.parameters.get("graph")
            graph = mv.graph(graph_name)
            feeds = validate_inputs(mv, graph.inputs, request.inputs)
            wanted = _requested_outputs(graph.outputs, request.outputs)
            deadline = deadlines.earliest(deadline, deadlines.from_timeout_parameter(request.parameters.get("timeout")))
            result = await mv.infer(feeds, graph=graph_name, deadline=deadline)
            outputs = []
            for name, requested in wanted.items():  # in the order the client asked for them
                arr = result.outputs[name]
                outputs.append(Tensor(name, oip_datatype(arr), list(arr.shape), arr, dict(requested.parameters)))
            return InferResponse(mv.name, str(mv.version), outputs, request.id)

    # ------------------------------------------------------------------ task endpoints
    def task_model_name(self, task: str, name: str | None) -> str:
        """The model a /predict request goes to: the one named, else the task's default."""
        if name is not None:
            return name
        name = self.settings.default_models.get(task)
        if name not in self.repository.models:
            candidates = sorted(n for n, e in self.repository.models.items()
                                if e.config is not None and e.config.task == task)  # fmt: skip
            if not candidates:
                raise NotFound(f"no model for task {task!r} in the repository")
            name = candidates[0]
        return name

    async def predict(self, task: str, request: TaskRequest, *, protocol: str,
                      deadline: float | None = None) -> dict[str, Any]:  # fmt: skip
        """Pre-processing -> batched inference -> post-processing for one task request."""
        with self.observe(request.model, protocol) as seen:
            request.check_limits(self.settings)
            seen.model = self.task_model_name(task, request.model)
            mv = seen.resolved(self.repository.get(seen.model, request.version))
            if mv.config.task != task:
                raise InvalidInput(f"model {mv.name!r} serves task {mv.config.task!r}, not {task!r}")
            with mv.admit():
                infer = mv.task_infer(deadline)
                start = time.perf_counter()
                result = await mv.pipeline.predict(request, infer)
                self.metrics.processing_duration.labels(mv.name, str(mv.version)).observe(
                    max(0.0, time.perf_counter() - start - infer.waited))
                return {"model": mv.name, "version": str(mv.version), **result}

    # ------------------------------------------------------------------ repository extension
    def repository_index(self) -> list[dict]:
        return self.repository.index()

    def _control_allowed(self) -> None:
        if not self.settings.repository_api_enabled:
            raise Forbidden("the repository load/unload API is disabled (set DENDRITE_REPOSITORY_API_ENABLED=true)")

    async def apply_control(self, op: str, name: str) -> Any:
        """Repository ``load`` or ``unload`` in this process."""
        return await (self.repository.load(name) if op == "load" else self.repository.unload(name))

    async def load_model(self, name: str) -> dict:
        self._control_allowed()
        entry = await self.control("load", name)
        rows = [r for r in self.repository.index() if r["name"] == name]
        failed = [r for r in rows if r["state"] != "READY"]
        if failed and not entry.ready_versions():
            raise DendriteError(f"model {name!r} failed to load: {failed[0].get('reason') or failed[0]['state']}")
        return {"name": name, "versions": rows}

    async def unload_model(self, name: str) -> None:
        self._control_allowed()
        await self.control("unload", name)


def _spec_json(spec: TensorSpec, lead: list[int]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": lead + spec.shape}
    for bound in ("min", "max"):
        if getattr(spec, bound) is not None:
            meta[bound] = getattr(spec, bound)
    return meta


def validate_inputs(mv: ModelVersion, specs: list[TensorSpec], inputs: list[Tensor]) -> dict[str, np.ndarray]:
    """Check names, datatypes and shapes against the model; errors say what was expected."""
    by_spec = {s.name: s for s in specs}
    feeds: dict[str, np.ndarray] = {}
    batched = mv.config.max_batch_size > 0
    rows: int | None = None
    for t in inputs:
        spec = by_spec.get(t.name)
        if spec is None:
            raise InvalidInput(f"model {mv.name!r} has no input {t.name!r} (inputs: {', '.join(by_spec)})")
        if t.name in feeds:
            raise InvalidInput(f"input {t.name!r} given twice")
        if t.datatype != spec.datatype:
            raise InvalidInput(f"input {t.name!r}: datatype {t.datatype} but model {mv.name!r} expects {spec.datatype}")
        expected = ([-1] if batched else []) + spec.shape
        shape = list(t.data.shape)
        if len(shape) != len(expected) or any(e not in (-1, s) for e, s in zip(expected, shape)):
            raise InvalidInput(f"input {t.name!r}: shape {shape} does not match the model's {expected} (-1 = any)")
        if batched:
            if shape[0] < 1 or shape[0] > mv.config.max_batch_size:
                raise InvalidInput(
                    f"input {t.name!r}: batch dimension {shape[0]} must be between 1 and max_batch_size "
                    f"{mv.config.max_batch_size}"
                )
            if rows is not None and shape[0] != rows:
                raise InvalidInput(f"inputs disagree on the batch dimension ({rows} vs {shape[0]} for {t.name!r})")
            rows = shape[0]
        spec.check_range(t.data)
        feeds[t.name] = t.data
    missing = [n for n in by_spec if n not in feeds]
    if missing:
        raise InvalidInput(f"model {mv.name!r} needs input(s) {', '.join(missing)}")
    return feeds


def _requested_outputs(specs: list[TensorSpec], requested: list[RequestedOutput] | None) -> dict[str, RequestedOutput]:
    if not requested:
        return {s.name: RequestedOutput(s.name) for s in specs}
    names = {s.name for s in specs}
    for r in requested:
        if r.name not in names:
            raise InvalidInput(f"unknown output {r.name!r} (outputs: {', '.join(sorted(names))})")
    return {r.name: r for r in requested}

